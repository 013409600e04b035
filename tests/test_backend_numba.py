"""The numba backend agrees with dense and with autograd (all activations, losses, dtypes, batch)."""

import pytest
import torch

import meanfield as mf
from meanfield.activations import get_activation, register_activation
from meanfield.backends import get_backend
from meanfield.flow import FlowConfig
from meanfield.losses import get_loss

from cases import activation_cases

numba = pytest.importorskip("numba")

ACTS = activation_cases("numba")
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def rel(x, y):
    x, y = x.double(), y.double()   # float64 norms: an all-zero float32 y gives 0, not 0/0
    return ((x - y).norm() / y.norm().clamp_min(1e-300)).item()


def operands(B, Bx, m, n, d, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return r(B, m, k), r(B, m, d), r(B, m), r(Bx, n, d), r(B, n, k)


@pytest.fixture(scope="module")
def nb():
    return get_backend("numba")


@pytest.mark.parametrize("act", ACTS)
def test_agrees_with_dense_odd_sizes_and_batch(nb, act, dtype):
    """m=37, n=23, d=3, k=2; B=3 with shared (Bx=1) and per-system (Bx=B) samples."""
    de, a_ = get_backend("dense"), get_activation(act)
    for Bx in (1, 3):
        a, w, b, X, g = operands(3, Bx, 37, 23, 3, 2, dtype, seed=Bx)
        assert rel(nb.outputs(a_, a, w, b, X), de.outputs(a_, a, w, b, X)) < TOL[dtype]
        for inner in (True, False):
            got = nb.velocities(a_, a, w, b, X, g, inner=inner)
            ref = de.velocities(a_, a, w, b, X, g, inner=inner)
            for x, y in zip(got, ref):
                if y is None:
                    assert x is None
                else:
                    assert x.dtype == dtype and x.shape == y.shape
                    assert rel(x, y) < TOL[dtype]


def test_blocks_never_4k_apart_and_padding_is_harmless(nb):
    """Cache blocks whose rows would be a multiple of 4 KB apart get one cache line more (zero
    padding); the results stay dense's at exactly those sizes (m = 1024 and n = 2048 in float32,
    m = 512 in float64) and across several blocks (m = 4100)."""
    from meanfield.backends.numba_cpu import _BLOCK, _block_len
    assert _block_len(1024, 4) == 1040 and _block_len(512, 8) == 520 and _block_len(1000, 4) == 1000
    assert _block_len(10 ** 6, 4) == _BLOCK and (_BLOCK * 4) % 4096 and (_BLOCK * 8) % 4096
    de, act = get_backend("dense"), get_activation("relu")
    for m, n, d, dtype in ((1024, 2048, 10, torch.float32), (512, 100, 12, torch.float64),
                           (4100, 64, 3, torch.float32)):
        a, w, b, X, g = operands(1, 1, m, n, d, 1, dtype, seed=m)
        assert rel(nb.outputs(act, a, w, b, X), de.outputs(act, a, w, b, X)) < TOL[dtype]
        for x, y in zip(nb.velocities(act, a, w, b, X, g), de.velocities(act, a, w, b, X, g)):
            assert rel(x, y) < TOL[dtype]


@pytest.mark.parametrize("loss,k,d", [("logistic", 1, 2), ("exponential", 1, 1),
                                      ("cross_entropy", 3, 3), ("mse", 2, 5)])
def test_velocity_is_minus_m_times_autograd(nb, loss, k, d):
    """The fused velocities (via g = p dl/df) equal -m grad R from autograd, float64, to 1e-10."""
    torch.manual_seed(1)
    m, n = 29, 17
    act = get_activation("tanh" if loss == "mse" else "relu")
    a, w, b, X, _ = operands(1, 1, m, n, d, k, torch.float64, seed=7)
    y = torch.randint(0, 2 if k == 1 else k, (1, n))
    p = torch.rand(1, n, dtype=torch.float64)
    L = get_loss(loss)
    f = nb.outputs(act, a, w, b, X)
    g = p[..., None] * L.grad(f, y)
    va, vw, vb = nb.velocities(act, a, w, b, X, g)
    params = [t.clone().requires_grad_(True) for t in (a, w, b)]
    z = params[1] @ X.transpose(1, 2) + params[2][..., None]           # (1, m, n)
    fo = (act.fn(z).transpose(1, 2) @ params[0]) / m                    # (1, n, k)
    (p * L.value(fo, y)).sum().backward()
    for v, prm in zip((va, vw, vb), params):
        assert rel(v, -m * prm.grad) < 1e-10


def test_relu_derivative_at_zero_is_zero(nb):
    """A pre-activation exactly at 0: relu'(0) = 0 (and leaky relu's slope below 0), as dense."""
    X = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]], dtype=torch.float64)
    w = torch.tensor([[[1.0, 0.0], [0.5, -0.5]]], dtype=torch.float64)
    b = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)   # z = 0 at x0 (neuron 0), x2 (neuron 1)
    a = torch.tensor([[[2.0], [-1.0]]], dtype=torch.float64)
    g = torch.tensor([[[1.0], [0.5], [-2.0]]], dtype=torch.float64)
    for name in ("relu", "leaky_relu"):
        act = get_activation(name)
        got = nb.velocities(act, a, w, b, X, g)
        ref = get_backend("dense").velocities(act, a, w, b, X, g)
        for x, y in zip(got, ref):
            assert torch.equal(x, y) or rel(x, y) < 1e-15
    # by hand for relu, neuron 0: z = (0, -1, 1); only sample 2 is active
    vw = nb.velocities(get_activation("relu"), a, w, b, X, g)[1]
    assert torch.allclose(vw[0, 0], -(2.0 * -2.0) * X[0, 2], atol=0, rtol=1e-15)


def test_large_blocks_and_tiles(nb, dtype):
    """Sizes that span several cache blocks and tasks (m, n > 2048), d = 2 and d = 7; and wide
    inputs (d = 40 > WIDE_OUT, WIDE_VEL: w . x one coordinate at a time), k = 1 and 3."""
    de, act = get_backend("dense"), get_activation("smoothstep")
    for d, k in ((2, 1), (7, 1), (40, 1), (40, 3)):
        a, w, b, X, g = operands(2, 1, 4100, 2500, d, k, dtype, seed=d)
        w = w / d ** 0.5
        assert rel(nb.outputs(act, a, w, b, X), de.outputs(act, a, w, b, X)) < TOL[dtype]
        for inner in (True, False):
            got = nb.velocities(act, a, w, b, X, g, inner=inner)
            for x, y in zip(got, de.velocities(act, a, w, b, X, g, inner=inner)):
                assert (x is None) if y is None else rel(x, y) < TOL[dtype], (d, k, inner)


def _shifted_relu(dt):
    zero, one, c = dt(0), dt(1), dt(0.25)
    return (lambda z: max(z - c, zero)), (lambda z: one if z > c else zero)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "shifted"])
def test_k1_paths_blocked_and_two_pass(nb, act, dtype):
    """k = 1: the register-blocked loops of cheap activations at d <= 3 (four samples per output
    pass, two particles per velocity pass), the two-pass loop at d > 3, relu's sum from
    homogeneity in both, with every tail: an odd particle tile, n not a multiple of 4, several
    cache blocks, B = 2; and the frozen-inner-weights pass."""
    if act == "shifted":   # cheap but not homogeneous: blocking without the homogeneity sum
        from meanfield.activations import NumbaKernel
        register_activation("shifted_relu_test", lambda z: torch.relu(z - 0.25),
                            lambda z: (z > 0.25).to(z.dtype),
                            numba=NumbaKernel(_shifted_relu, cheap=True), overwrite=True)
        act = "shifted_relu_test"
    de, a_ = get_backend("dense"), get_activation(act)
    assert a_.numba.cheap
    cases = ((1, 37, 23), (2, 4099, 2051), (3, 515, 1030), (2, 3, 1), (6, 301, 2050))
    if act == "shifted_relu_test":   # a user activation compiles in every process: d = 2, 3 only
        cases = cases[1:3]
    for d, m, n in cases + (((40, 67, 130),) if act == "relu" else ()):  # wide: homogeneous sum
        a, w, b, X, g = operands(2, 1, m, n, d, 1, dtype, seed=d)
        assert rel(nb.outputs(a_, a, w, b, X), de.outputs(a_, a, w, b, X)) < TOL[dtype], (d, m, n)
        for inner in (True, False):
            got = nb.velocities(a_, a, w, b, X, g, inner=inner)
            for x, y in zip(got, de.velocities(a_, a, w, b, X, g, inner=inner)):
                assert (x is None) if y is None else rel(x, y) < TOL[dtype], (d, m, n, inner)


def test_homogeneous_flag_is_checked_at_registration():
    """homogeneous=True lets the kernels use sigma(z) = z sigma'(z); a false claim is refused."""
    with pytest.raises(ValueError, match="homogeneous"):
        register_activation("not_homog_test", torch.tanh, lambda z: 1 - torch.tanh(z) ** 2,
                            homogeneous=True, overwrite=True)
    ok = register_activation("leaky2_test", lambda z: torch.where(z > 0, z, 0.2 * z),
                             lambda z: torch.where(z > 0, 1.0, 0.2).to(z.dtype),
                             homogeneous=True, overwrite=True)
    assert ok.homogeneous


def test_roofline_kernels_compute_a_relu_step():
    """The fused limit is only a bar if its kernels do the work: outputs and velocities against
    float64 numpy, with odd m and n (the kernels' tails)."""
    import numpy as np
    from meanfield.backends import roofline
    f = np.float32
    for m, n in ((1001, 203), (6, 5)):
        rng = np.random.default_rng(m)
        w0, w1, b, a = (rng.standard_normal(m).astype(f) for _ in range(4))
        x0, x1, g = (rng.standard_normal(n).astype(f) for _ in range(3))
        out = np.zeros(n, f)
        va, vw0, vw1, vb = (np.zeros(m, f) for _ in range(4))
        roofline._outputs(w0, w1, b, a, x0, x1, out, 8)
        roofline._velocities(w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb)
        Z = np.outer(w0, x0).astype(np.float64) + np.outer(w1, x1) + b[:, None]
        U = g[None, :] * (Z > 0)
        ref = [a @ np.maximum(Z, 0), -(U * Z).sum(1), -a * (U @ x0), -a * (U @ x1), -a * U.sum(1)]
        for got, want in zip((out, va, vw0, vw1, vb), ref):
            assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    # the plain kernels of the limit at d > 2
    d, m, n = 5, 2203, 101          # m: two particle blocks, the second one partial
    rng = np.random.default_rng(d)
    W, X = rng.standard_normal((d, m)).astype(f), rng.standard_normal((d, n)).astype(f)
    b, a, g = rng.standard_normal(m).astype(f), rng.standard_normal(m).astype(f), rng.standard_normal(n).astype(f)
    out, va, vb, vw = np.zeros(n, f), np.zeros(m, f), np.zeros(m, f), np.zeros((d, m), f)
    ko, kv = roofline._generic(d)
    ko(*roofline._blocked(W, b, a), X, out, 8)
    kv(W, b, a, X, g, va, vw, vb, 3)
    Z = W.T.astype(np.float64) @ X + b[:, None]
    U = g[None, :] * (Z > 0)
    ref = [a @ np.maximum(Z, 0), -(U * Z).sum(1), -a * (U @ X.T).T, -a * U.sum(1)]
    for got, want in zip((out, va, vw, vb), ref):
        assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


def test_roofline_smooth_kernels_compute_the_activation_step():
    """The fused limit of a smooth activation inlines that activation's float32 code: its outputs
    and velocities against float64 torch (sigma, sigma'), within the activation's error bound."""
    import numpy as np
    from meanfield.activations import get_activation
    from meanfield.backends import roofline
    f, m, n = np.float32, 1001, 203
    rng = np.random.default_rng(7)
    w0, w1, b, a = (rng.standard_normal(m).astype(f) for _ in range(4))
    x0, x1, g = (rng.standard_normal(n).astype(f) for _ in range(3))
    Z = torch.from_numpy(np.outer(w0, x0).astype(np.float64) + np.outer(w1, x1) + b[:, None])
    for name in ("tanh", "softplus", "smoothstep"):
        act = get_activation(name)
        S, dS = act.fn(Z).numpy(), act.deriv(Z).numpy()
        out = np.zeros(n, f)
        va, vw0, vw1, vb = (np.zeros(m, f) for _ in range(4))
        ko, kv = roofline._smooth(name)
        ko(w0, w1, b, a, x0, x1, out, 8)
        kv(w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb)
        U = g[None, :] * dS
        ref = [a @ S, -(g[None, :] * S).sum(1), -a * (U @ x0), -a * (U @ x1), -a * U.sum(1)]
        for got, want in zip((out, va, vw0, vw1, vb), ref):
            assert np.abs(got - want).max() < 1e-5 * np.abs(want).max(), name
    with pytest.raises(ValueError, match="d = 2 only"):
        roofline.fused_limit(10, 10, d=3, act="tanh")


def test_bench_limit_of_each_activation():
    """relu-like rows take the relu fused limit up to d = 16; other activations with numba code
    their own fused limit at d <= 2 and none above; every activation the product limit at d >= 32."""
    from meanfield.bench import _limit_for, _relu_like
    assert _relu_like("relu") and _relu_like("leaky_relu") and not _relu_like("tanh")
    assert _limit_for(16, "relu") == "limit_fused" and _limit_for(20, "relu") is None
    assert _limit_for(2, "tanh") == "limit_fused" and _limit_for(4, "tanh") is None
    assert _limit_for(64, "tanh") == "limit_gemm" == _limit_for(64, "relu")


def test_simulate_numba_equals_dense():
    X = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    y = (X[:, 0] > 0.1).long()
    data = mf.Samples(X, y, torch.full((9,), 1 / 9, dtype=torch.float64), 2)
    p0 = mf.Particles.gaussian(40, 1, batch=2, seed=3, dtype=torch.float64)
    out = {}
    for be in ("dense", "numba"):
        cfg = FlowConfig(loss="logistic", integrator="heun", dt=0.05, t_end=1.0, lam=1e-3,
                         backend=be)
        res = mf.simulate(p0, data, cfg, progress=False)
        assert res.backend == be
        out[be] = res.particles
    for t in ("a", "w", "b"):
        assert rel(getattr(out["numba"], t), getattr(out["dense"], t)) < 1e-10


def test_supports_and_errors(nb):
    user = register_activation("cube_numba_test", lambda z: z ** 3, lambda z: 3 * z ** 2,
                               overwrite=True)
    assert nb.supports(get_activation("relu"), torch.device("cpu"))
    assert not nb.supports(user, torch.device("cpu"))
    assert not nb.supports(get_activation("relu"), torch.device("cuda"))
    a, w, b, X, g = operands(1, 1, 5, 4, 2, 1, torch.float64)
    with pytest.raises(ValueError, match="dense"):
        nb.outputs(user, a, w, b, X)
    with pytest.raises(ValueError, match="dtype"):
        nb.outputs(get_activation("relu"), a, w, b, X.float())
    with pytest.raises(ValueError, match="X must be"):
        nb.outputs(get_activation("relu"), a, w, b, X[..., :1])


def test_bench_step_is_the_flow_step():
    """The bench times simulate's step (velocity closure built once per run): one step of it moves
    the particles exactly as velocity() + an Euler update, and again after the particles moved."""
    from meanfield.bench import DT, _problem, _step_backend
    parts, data = _problem(300, 77, 3, "relu", torch.float64, "cpu")
    ref = parts.select(0)
    ref = type(ref)(**{**ref.__dict__, "a": ref.a.clone(), "w": ref.w.clone(), "b": ref.b.clone()})
    step = _step_backend("numba")
    cfg = FlowConfig(loss="logistic", backend="dense")
    for _ in range(2):
        step(parts, data)
        va, vw, vb = mf.velocity(ref, data, cfg)
        ref.a.add_(va, alpha=DT)
        ref.w.add_(vw, alpha=DT)
        ref.b.add_(vb, alpha=DT)
        for t in ("a", "w", "b"):
            assert rel(getattr(parts, t), getattr(ref, t)) < 1e-12


def test_kernel_cache_corrupt_or_shared_folder(tmp_path):
    """A truncated generated module or numba index in the kernel cache is rebuilt (it gave a
    SyntaxError / UnpicklingError); a folder others can write is not used (numba's cache files
    are pickles), with a warning naming it."""
    import os
    import subprocess
    import sys
    code = ("import torch, meanfield as mf; from meanfield.backends import get_backend; "
            "a = mf.activations.get_activation('relu'); "
            "print(get_backend('numba').outputs(a, torch.ones(1, 3, 1), torch.ones(1, 3, 1), "
            "torch.zeros(1, 3), torch.ones(1, 2, 1)).sum().item())")
    env = {**os.environ, "MEANFIELD_CACHE_DIR": str(tmp_path)}

    def run():
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0 and r.stdout.strip() == "2.0", r.stderr[-1500:]
        return r.stderr

    run()
    k = tmp_path / "numba_kernels"
    mods = list(k.glob("mf_relu_float32_*.py"))
    assert len(mods) == 1
    mods[0].write_text(mods[0].read_text()[:300])
    run()
    assert "def outputs_kernel" in mods[0].read_text()      # rewritten whole
    idx = list((k / "__pycache__").glob("*.nbi"))
    assert idx
    for p in idx:
        p.write_bytes(p.read_bytes()[:20])
    run()
    os.chmod(k, 0o777)
    assert "writable by group or others" in run()
    os.chmod(k, 0o700)
