"""Activations: one object per activation (value, derivative, fast kernels), in a Registry.

The approximation bounds each activation declares for its numba code are pinned here against
float64 torch; a new activation registered in one call runs on every backend it has kernels for.
"""

import numpy as np
import pytest
import torch

import meanfield as mf
from meanfield.activations import (ACTIVATIONS, Activation, KeOpsKernel, NumbaKernel, get_activation,
                                   list_activations, register_activation)
from meanfield.backends import get_backend, resolve_backend
from meanfield.registry import Registry

from cases import activation_cases

EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def test_registry_and_wrappers():
    assert isinstance(ACTIVATIONS, Registry)
    assert set(activation_cases()) <= set(list_activations())
    relu = get_activation("relu")
    assert isinstance(relu, Activation) and relu.builtin and relu.homogeneous
    assert get_activation(relu) is relu
    assert isinstance(relu.keops, KeOpsKernel) and isinstance(relu.numba, NumbaKernel)
    with pytest.raises(ValueError, match="unknown activation 'nope'; valid: .*relu"):
        get_activation("nope")
    with pytest.raises(ValueError, match="built in"):
        register_activation("relu", torch.relu, torch.sign)
    dense_only = register_activation("t_cube", lambda z: z ** 3, lambda z: 3 * z ** 2,
                                     overwrite=True)
    assert dense_only.keops is None and dense_only.numba is None
    with pytest.raises(ValueError, match="already registered"):
        register_activation("t_cube", lambda z: z ** 3, lambda z: 3 * z ** 2)
    with pytest.raises(ValueError, match="keops="):
        register_activation("t_bad", torch.tanh, torch.tanh, keops=3, overwrite=True)
    ACTIVATIONS.unregister("t_cube")
    assert "t_cube" not in list_activations()


def _eval_numba(act, dtype, z):
    numba = pytest.importorskip("numba")
    from meanfield.backends.numba_kernels import jit_scalar, njit
    sig, dsig = jit_scalar(act.numba.make(getattr(np, dtype)))

    @njit(False)
    def apply(z, s, ds):
        for i in range(z.shape[0]):
            s[i] = sig(z[i])
            ds[i] = dsig(z[i])
    s, ds = np.empty_like(z), np.empty_like(z)
    apply(z, s, ds)
    assert numba is not None
    return s, ds


@pytest.mark.parametrize("name", activation_cases("numba"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_code_within_declared_bound(name, dtype):
    """max |sigma~ - sigma| and |sigma~' - sigma'| against float64 torch, at the dtype's inputs."""
    act = get_activation(name)
    z = np.concatenate([np.linspace(-40, 40, 200_001), np.linspace(-1, 2, 30_001),
                        [-1e4, -100, -20.5, -15.9, -7.9, 0.0, 7.9, 15.9, 20.5, 100, 1e4]])
    z = z.astype(dtype)
    s, ds = _eval_numba(act, dtype, z)
    zt = torch.from_numpy(z.astype(np.float64))
    ref_s, ref_ds = act.fn(zt).numpy(), act.deriv(zt).numpy()
    bound = act.numba.error[dtype]
    # rounding of the result itself: a few ulps of the value
    tol_s = bound + 4 * EPS[dtype] * np.maximum(1.0, np.abs(ref_s))
    tol_ds = bound + 4 * EPS[dtype] * np.maximum(1.0, np.abs(ref_ds))
    err_s, err_ds = np.abs(s - ref_s), np.abs(ds - ref_ds)
    assert np.all(err_s <= tol_s), (name, dtype, err_s.max())
    assert np.all(err_ds <= tol_ds), (name, dtype, err_ds.max())
    assert np.isnan(_eval_numba(act, dtype, np.array([np.nan], dtype=dtype))[0][0])


def _softsign_numba(dt):
    one = dt(1)

    def s(z):
        return z / (one + abs(z))

    def ds(z):
        u = one + abs(z)
        return one / (u * u)
    return s, ds


def _backends_for(act):
    out = ["dense"]
    for name in ("numba", "keops"):
        try:
            be = get_backend(name)
        except ValueError:
            continue
        if be.supports(act, torch.device("cpu")):
            out.append(name)
    return out


def test_new_activation_in_one_call_runs_on_every_backend():
    """softsign, registered once with its keops formulas and numba code, on dense, numba and
    keops (CPU) against autograd to 1e-10 in float64."""
    act = register_activation(
        "t_softsign", lambda z: z / (1 + z.abs()), lambda z: (1 + z.abs()) ** -2,
        keops=("Z/(IntCst(1)+Abs(Z))", "Inv(Square(IntCst(1)+Abs(Z)))"), numba=_softsign_numba,
        overwrite=True)
    try:
        names = _backends_for(act)
        g = torch.Generator().manual_seed(5)
        r = lambda *s: 2 * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
        m, n, d, k = 37, 23, 3, 1
        a, w, b, X, p = r(2, m, k), r(2, m, d), r(2, m), r(1, n, d), r(2, n, k).abs()
        # autograd oracle: R = sum_j p_j f_j, so g = p and v = -m grad R
        prm = [t.clone().requires_grad_(True) for t in (a, w, b)]
        z = prm[1] @ X.transpose(1, 2) + prm[2][..., None]
        out = (torch.nn.functional.softsign(z).transpose(1, 2) @ prm[0]) / m
        (p * out).sum().backward()
        for name in names:
            be = get_backend(name)
            f = be.outputs(act, a, w, b, X)
            assert ((f - out.detach()).norm() / out.norm()).item() < 1e-10, name
            for v, t in zip(be.velocities(act, a, w, b, X, p), prm):
                assert ((v + m * t.grad).norm() / (m * t.grad).norm()).item() < 1e-10, name
        assert "numba" in names  # the numba backend is installed in CI
    finally:
        ACTIVATIONS.unregister("t_softsign")


@pytest.mark.parametrize("name", activation_cases())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_never_depends_on_batch(name, dtype):
    act = get_activation(name)
    for m, n, d in ((60, 3, 1), (100, 40, 2), (20_000, 1_000, 2), (20_000, 1_000, 64), (1000, 5000, 784)):
        picks = {resolve_backend("auto", act=act, device=torch.device("cpu"), m=m, n=n, d=d,
                                 batch=B, dtype=dtype).name for B in (1, 64)}
        assert len(picks) == 1, (name, m, n, d, picks)


def test_flow_result_names_backend():
    X = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None]
    data = mf.Samples(X, (X[:, 0] > 0).long(), torch.full((5,), 0.2, dtype=torch.float64), 2)
    p0 = mf.Particles.gaussian(8, 1, seed=0, dtype=torch.float64)
    res = mf.simulate(p0, data, mf.FlowConfig(dt=0.1, t_end=0.2, backend="auto"), progress=False)
    assert res.backend in ("dense", "numba", "keops")


def test_table_choice_reads_nearest_measurement(tmp_path):
    from meanfield.backends.base import TABLE_VERSION, load_table, table_choice
    rows = [dict(act="relu", dtype="float32", d=2, m=1000, n=100, numba_s=1.0, dense_s=2.0,
                 best="numba"),
            dict(act="relu", dtype="float32", d=64, m=1000, n=100, numba_s=3.0, dense_s=1.0,
                 best="dense")]
    tab = {"version": TABLE_VERSION, "date": "2026-01-01", "rows": rows}
    relu = get_activation("relu")
    assert table_choice(relu, torch.float32, 10_000, 1_000, 3, tab)[0] == "numba"
    assert table_choice(relu, torch.float32, 10_000, 1_000, 40, tab)[0] == "dense"
    assert table_choice(relu, torch.float64, 10_000, 1_000, 3, tab)[0] == "dense"  # not measured
    assert table_choice(get_activation("tanh"), torch.float32, 100, 10, 2, tab)[0] == "dense"
    bad = tmp_path / "t.json"
    bad.write_text('{"version": 0, "rows": []}')
    with pytest.raises(ValueError, match="write-table"):
        load_table(bad)
    tab = load_table()  # the shipped table: versioned, with machine and date
    assert tab["version"] == TABLE_VERSION and "date" in tab and "machine" in tab
