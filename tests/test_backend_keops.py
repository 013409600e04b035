"""KeOps backend against the dense reference (and the flow on both).

CI compiles a capped set of nine formulas (each a few seconds with g++, cached in .keops_cache):
relu at (d, k) = (2, 1) and smoothstep at (1, 2) (outputs and velocities, float64 and float32),
plus relu's frozen-inner-weights velocity in float64. Every other
activation, dimension and dtype runs under ``slow``; CUDA tests skip without a GPU.
Agreement is measured as ``|keops - dense| / |dense|`` in the Frobenius norm of the whole tensor.
"""

import pytest
import torch

from meanfield import FlowConfig, Particles, Samples, simulate
from meanfield.activations import LEAKY_SLOPE, get_activation, list_activations, register_activation
from meanfield.backends.dense import DenseBackend
from meanfield.backends.keops import KeOpsBackend, keops_formulas

from cases import activation_cases
from conftest import requires_cuda

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
BUILTINS = activation_cases("keops")
DENSE = DenseBackend()


@pytest.fixture(scope="module")
def ke():
    be = KeOpsBackend()
    if not be.available():
        pytest.skip("pykeops cannot compile here")
    return be


def problem(B, Bx, m, n, d, k, dtype, device="cpu", seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    t = [r(B, m, k), scale * r(B, m, d), scale * r(B, m), r(Bx, n, d), r(B, n, k)]
    return [x.to(dtype=dtype, device=device) for x in t]


def rel(x, ref):
    return ((x - ref).norm() / ref.norm()).item()


def check_agree(be, act_name, dtype, B, Bx, m, n, d, k, device="cpu", scale=1.0):
    act = get_activation(act_name)
    a, w, b, X, g = problem(B, Bx, m, n, d, k, dtype, device, scale=scale)
    f = be.outputs(act, a, w, b, X)
    f_ref = DENSE.outputs(act, a, w, b, X)
    assert f.shape == f_ref.shape == (B, n, k) and f.dtype == dtype and f.device == a.device
    assert rel(f, f_ref) < TOL[dtype], ("outputs", rel(f, f_ref))
    v = be.velocities(act, a, w, b, X, g)
    v_ref = DENSE.velocities(act, a, w, b, X, g)
    for name, x, y in zip(("v_a", "v_w", "v_b"), v, v_ref):
        assert x.shape == y.shape and x.dtype == dtype
        assert rel(x, y) < TOL[dtype], (name, rel(x, y))
    return a, w, b, X


# ------------------------------------------------------------------ CI set (capped compiles)
CI_CASES = [("relu", 2, 1), ("smoothstep", 1, 2)]


@pytest.mark.parametrize("act,d,k", CI_CASES, ids=[f"{a}-d{d}-k{k}" for a, d, k in CI_CASES])
@pytest.mark.parametrize("Bx", [1, 3], ids=["shared_X", "own_X"])
def test_agrees_with_dense_batched(ke, act, d, k, Bx, dtype):
    # m, n are primes: not multiples of any block size
    a, w, b, X = check_agree(ke, act, dtype, B=3, Bx=Bx, m=37, n=23, d=d, k=k)
    if act == "smoothstep":  # the test must see all three pieces of sigma
        z = w @ X.transpose(1, 2) + b[..., None]
        assert (z < 0).any() and ((z > 0) & (z < 1)).any() and (z > 1).any()


def test_unbatched_and_larger(ke, dtype):
    check_agree(ke, "relu", dtype, B=1, Bx=1, m=1031, n=517, d=2, k=1)


def test_inner_false_returns_none(ke):
    act = get_activation("relu")
    a, w, b, X, g = problem(3, 1, 37, 23, 2, 1, torch.float64)
    va, vw, vb = ke.velocities(act, a, w, b, X, g, inner=False)
    assert vw is None and vb is None
    va_ref = DENSE.velocities(act, a, w, b, X, g, inner=False)[0]
    assert rel(va, va_ref) < 1e-10


def exact_zero_problem(dtype):
    """Pre-activations exactly 0 (small integers: exact in both dtypes) for many pairs."""
    X = torch.tensor([[[2.0, 3.0], [1.0, 1.0], [0.0, 2.0], [-1.0, 4.0], [3.0, -2.0]]], dtype=dtype)
    w = torch.tensor([[[1.0, -1.0], [2.0, 1.0], [0.0, 1.0], [-1.0, 2.0], [0.25, 0.25]]], dtype=dtype)
    b = torch.tensor([[1.0, -3.0, -2.0, -9.0, 0.0]], dtype=dtype)  # the last: z in (0, 1)
    a = torch.tensor([[[1.5], [-0.5], [2.0], [1.0], [0.7]]], dtype=dtype)
    g = torch.tensor([[[0.3], [-0.7], [1.1], [0.2], [-0.4]]], dtype=dtype)
    return a, w, b, X, g


@pytest.mark.parametrize("act_name", ["relu", pytest.param("smoothstep", marks=pytest.mark.slow),
                                      pytest.param("leaky_relu", marks=pytest.mark.slow)])
def test_preactivation_exactly_zero(ke, act_name, dtype):
    a, w, b, X, g = exact_zero_problem(dtype)
    z = w @ X.transpose(1, 2) + b[..., None]
    assert (z == 0).sum() >= 4  # the kink is really hit
    act = get_activation(act_name)
    va, vw, vb = ke.velocities(act, a, w, b, X, g)
    ref = DENSE.velocities(act, a, w, b, X, g)
    for x, y in zip((va, vw, vb), ref):
        assert rel(x, y) < TOL[dtype]
    if act_name in ("relu", "leaky_relu"):
        # KeOps's own convention (Step(0) = 1, derivative 1 at the kink) would give this; the
        # problem is built so that the two conventions differ by far more than the tolerance
        slope = 0.0 if act_name == "relu" else LEAKY_SLOPE
        d1 = torch.where(z >= 0, torch.ones_like(z), torch.full_like(z, slope))
        vb_keops_convention = -((a @ g.transpose(1, 2)) * d1).sum(-1)
        assert (vb_keops_convention - ref[2]).abs().max() > 0.1
        assert (vb - ref[2]).abs().max() < 1e-6


def test_simulate_same_trajectory(ke):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(23, 2, generator=gen, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()
    data = Samples.from_masses(X, y, dtype=torch.float64)
    p0 = Particles.gaussian(37, 2, 1, batch=3, seed=1, dtype=torch.float64)
    runs = {}
    for name in ("dense", "keops"):
        cfg = FlowConfig(loss="logistic", lam=0.01, dt=0.05, t_end=1.0, backend=name)
        runs[name] = simulate(p0, data, cfg, seed=0)
    rd, rk = runs["dense"], runs["keops"]
    assert rk.backend == "keops" and rd.backend == "dense" and rk.steps == rd.steps == 20
    for x, y in ((rk.particles.a, rd.particles.a), (rk.particles.w, rd.particles.w),
                 (rk.particles.b, rd.particles.b)):
        assert rel(x, y) < 1e-10
    assert (rd.particles.w - p0.w).norm() > 1e-2  # the particles moved
    assert len(rk.history) == len(rd.history)
    for hk, hd in zip(rk.history, rd.history):
        assert hk["t"] == hd["t"] and abs(hk["risk"] - hd["risk"]) <= 1e-10 * abs(hd["risk"])


def test_supports_and_rejects(ke):
    cpu = torch.device("cpu")
    assert all(ke.supports(get_activation(n), cpu) for n in BUILTINS)
    assert set(BUILTINS) <= set(list_activations())
    user = register_activation("keops_test_cube", lambda z: z ** 3, lambda z: 3 * z ** 2,
                               overwrite=True)
    assert not ke.supports(user, cpu)
    a, w, b, X, g = problem(1, 1, 5, 4, 2, 1, torch.float64)
    with pytest.raises(ValueError, match="dense"):
        ke.outputs(user, a, w, b, X)
    with pytest.raises(ValueError, match="dtype"):
        ke.outputs(get_activation("relu"), a.float(), w, b, X)
    with pytest.raises(ValueError, match="batched"):
        ke.outputs(get_activation("relu"), a[0], w, b, X)
    with pytest.raises(ValueError, match="activation"):
        keops_formulas("cube", "outputs", 1, 2)
    with pytest.raises(ValueError, match="reduction"):
        keops_formulas("relu", "hessian", 1, 2)


def test_kink_formulas_never_use_keops_relu_derivative():
    # sigma' is written out, so KeOps never differentiates ReLU (Step(0) = 1) for us
    for act in BUILTINS:
        f, _ = keops_formulas(act, "velocities", 1, 2)
        assert "Grad" not in f and "Diff" not in f
    assert "IntCst(1)-Step(-(" in keops_formulas("relu", "velocities", 1, 2)[0]


# ------------------------------------------------------------------ slow: everything else
SLOW_CASES = [(a, d, k) for a in BUILTINS for d, k in ((1, 1), (3, 2), (2, 3))]


@pytest.mark.slow
@pytest.mark.parametrize("act,d,k", SLOW_CASES, ids=[f"{a}-d{d}-k{k}" for a, d, k in SLOW_CASES])
def test_agrees_all_activations(ke, act, d, k, dtype):
    # scale 3 spreads z over the saturated tails (tanh, sigmoid, softplus) as well
    check_agree(ke, act, dtype, B=3, Bx=3 if d == 3 else 1, m=37, n=23, d=d, k=k, scale=3.0)


@pytest.mark.slow
def test_inner_false_f32_and_f64(ke, dtype):
    a, w, b, X, g = problem(3, 1, 37, 23, 2, 1, dtype)
    va, vw, vb = ke.velocities(get_activation("relu"), a, w, b, X, g, inner=False)
    assert vw is None and vb is None
    assert rel(va, DENSE.velocities(get_activation("relu"), a, w, b, X, g)[0]) < TOL[dtype]


# ------------------------------------------------------------------ CUDA (skip without a GPU)
@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("act", BUILTINS)
@pytest.mark.parametrize("Bx", [1, 3], ids=["shared_X", "own_X"])
def test_cuda_agrees_with_dense(ke, act, Bx, dtype):
    cuda = torch.device("cuda")
    assert ke.supports(get_activation(act), cuda)
    check_agree(ke, act, dtype, B=3, Bx=Bx, m=37, n=23, d=2, k=2, device=cuda, scale=3.0)
    check_agree(ke, act, dtype, B=1, Bx=1, m=4099, n=1031, d=10, k=1, device=cuda)


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_cuda_preactivation_exactly_zero(ke, act, dtype):
    a, w, b, X, g = (t.cuda() for t in exact_zero_problem(dtype))
    act = get_activation(act)
    for x, y in zip(ke.velocities(act, a, w, b, X, g), DENSE.velocities(act, a, w, b, X, g)):
        assert rel(x, y) < TOL[dtype]


@requires_cuda
@pytest.mark.gpu
def test_cuda_auto_picks_keops_and_simulates(ke):
    from meanfield.backends import resolve_backend
    be = resolve_backend("auto", act=get_activation("relu"), device=torch.device("cuda"),
                         m=10_000, n=1_000, d=2)
    assert be.name == "keops"
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(23, 2, generator=gen, dtype=torch.float64)
    data = Samples.from_masses(X, (X[:, 0] > 0).long(), dtype=torch.float64)
    p0 = Particles.gaussian(37, 2, 1, batch=2, seed=1, dtype=torch.float64)
    cfg = FlowConfig(lam=0.01, dt=0.05, t_end=0.5, backend="dense")
    ref = simulate(p0, data, cfg)
    out = simulate(p0.to("cuda"), data.to(device="cuda"), FlowConfig(lam=0.01, dt=0.05, t_end=0.5,
                                                                   backend="keops"))
    assert rel(out.particles.w.cpu(), ref.particles.w) < 1e-10
