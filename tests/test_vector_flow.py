"""The vector-output engine (meanfield.vector): velocities against autograd, backends against
dense, the NC1 bound as an inequality at arbitrary states, the flow loop, bad input."""

import pytest
import torch

from meanfield import Samples
from meanfield.activations import get_activation
from meanfield.metrics import neural_collapse
from meanfield.vector import (HeadedNetwork, VectorFlowConfig, class_stats, forward, grad_norms,
                              nc1_bound, objective, prepare, simulate_vector, velocity)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=23, d=3, C=3, seed=1, B=None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % C
    p = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
    return Samples(X, y, p / p.sum(), C)


def _net(m=17, d=3, p=4, K=3, batch=2, act="tanh", seed=2):
    return HeadedNetwork.gaussian(m, d, p, K, scale_b=0.5, batch=batch, activation=act, seed=seed)


def _autograd(net, data, cfg):
    """-m dF/dtheta_i and -rate_W dF/dW from one plain formula of F, and F itself."""
    P = net.particles
    a, w, b, W = (t.detach().clone().requires_grad_(True) for t in (P.a, P.w, P.b, net.W))
    sig = get_activation(P.activation).fn
    X, y, p = data.X, data.y, data.p / data.p.sum()
    h = torch.einsum("bmp,bnm->bnp", a, sig(torch.einsum("bmd,nd->bnm", w, X) + b[:, None, :])) / P.m
    f = torch.einsum("bkp,bnp->bnk", W, h)
    Y = torch.nn.functional.one_hot(y, net.K).to(f.dtype)
    F = (0.5 * (p * ((f - Y) ** 2).sum(-1)).sum(-1)
         + 0.5 * cfg.lam * ((a ** 2).sum((1, 2)) + (w ** 2).sum((1, 2)) + (b ** 2).sum(1)) / P.m
         + 0.5 * cfg.lam_W * (W ** 2).sum((1, 2)))
    ga, gw, gb, gW = torch.autograd.grad(F.sum(), (a, w, b, W))
    return F.detach(), (-P.m * ga, -P.m * gw, -P.m * gb, -cfg.rate_W * gW)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_velocity_is_minus_m_autograd_gradient_and_head_is_minus_rate_gradient(act):
    data = _data()
    net = _net(act=act)
    cfg = VectorFlowConfig(lam=0.3, lam_W=0.07, rate_W=2.5, backend="dense")
    F, oracle = _autograd(net, data, cfg)
    v = velocity(net, data, cfg)
    for name, x, y in zip(("a", "w", "b", "W"), v, oracle):
        assert x.shape == y.shape, name
        assert (x - y).norm() <= 1e-10 * y.norm(), (name, float((x - y).norm() / y.norm()))
    obj = objective(net, data, cfg)
    assert torch.allclose(obj["total"], F, rtol=1e-12, atol=0)
    gn = grad_norms(net, data, cfg)
    m = net.m
    rho2 = sum((t ** 2).flatten(1).sum(1) for t in oracle[:3]) / m
    assert torch.allclose(gn["grad_rho"], rho2.sqrt(), rtol=1e-10)
    assert torch.allclose(gn["grad_W"], oracle[3].flatten(1).norm(dim=1) / cfg.rate_W, rtol=1e-10)


def test_frozen_inner_weights_move_only_a_and_W():
    data, net = _data(), _net()
    cfg = VectorFlowConfig(lam=0.1, train_inner=False, backend="dense")
    va, vw, vb, vW = velocity(net, data, cfg)
    assert vw is None and vb is None
    _, oracle = _autograd(net, data, cfg)
    assert torch.allclose(va, oracle[0], rtol=1e-10, atol=1e-13)
    res = simulate_vector(net, data, VectorFlowConfig(lam=0.1, train_inner=False, dt=0.05, t_end=0.2,
                                                      backend="dense"), num_records=2)
    assert torch.equal(res.network.particles.w, net.particles.w)
    assert not torch.equal(res.network.W, net.W)


def test_numba_backend_agrees_with_dense():
    pytest.importorskip("numba")
    data, net = _data(), _net(act="relu")
    cfg = VectorFlowConfig(lam=0.2, backend="dense")
    ref = velocity(net, data, cfg)
    got = velocity(net, data, VectorFlowConfig(lam=0.2, backend="numba"))
    for x, y in zip(got, ref):
        assert (x - y).norm() <= 1e-10 * y.norm()


def test_keops_backend_agrees_with_dense():
    """smoothstep with d = 1 and p = 2: the formulas the KeOps CI set compiles already."""
    from meanfield.backends.keops import KeOpsBackend
    if not KeOpsBackend().available():
        pytest.skip("pykeops cannot compile here")
    data = _data(n=19, d=1, C=2)
    net = _net(d=1, p=2, K=2, act="smoothstep", m=23)
    ref = velocity(net, data, VectorFlowConfig(lam=0.2, backend="dense"))
    got = velocity(net, data, VectorFlowConfig(lam=0.2, backend="keops"))
    for x, y in zip(got, ref):
        assert (x - y).norm() <= 1e-10 * y.norm()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nc1_bound_holds_at_arbitrary_states_and_its_projection_part_is_exact(seed):
    data = _data(n=31, seed=seed)
    net = HeadedNetwork.gaussian(40, 3, 5, 3, scale_b=0.5, batch=2, activation="relu", seed=seed)
    cfg = VectorFlowConfig(lam=0.05, lam_W=0.01)
    d = prepare(net, data)
    be = net.backend_for("dense", d.X.shape[1])
    h, _, _ = forward(net, d, be)
    st = class_stats(h, d.y, d.p, d.C)
    bd = nc1_bound(net, d, cfg, be)
    # independent: project h on the row space of W and measure both parts directly
    Pm = torch.linalg.pinv(net.W) @ net.W
    hp = h @ Pm.transpose(1, 2)
    wp = class_stats(hp, d.y, d.p, d.C)["within"]
    wo = class_stats(h - hp, d.y, d.p, d.C)["within"]
    assert torch.allclose(wp + wo, st["within"], rtol=1e-10)
    assert torch.allclose(bd["within_P"], wp, rtol=1e-9)
    assert (wo <= bd["orth_bound"]).all()
    assert (st["within"] <= bd["bound"]).all() and (bd["bound"] <= bd["bound_loose"] * (1 + 1e-12)).all()
    no_decay = nc1_bound(net, d, VectorFlowConfig(lam=0.0), be)
    assert torch.isinf(no_decay["bound"]).all()


def test_class_stats_match_the_package_metrics():
    data = _data(n=30, C=3, seed=4)
    h = torch.randn(1, 30, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    st = class_stats(h, data.y[None], data.p[None], 3)
    nc = neural_collapse(h[0], data.y, weights=data.p)
    assert st["nc1_tr"].item() == pytest.approx(nc.nc1_trace, rel=1e-10)


def test_flow_decreases_the_objective_lands_on_record_times_and_fits():
    data = _data(n=24, C=3, seed=5)
    data = Samples(data.X + 3.0 * torch.eye(3, dtype=torch.float64)[data.y], data.y, data.p, 3)
    net = _net(m=60, batch=1, act="relu")
    cfg = VectorFlowConfig(lam=1e-3, lam_W=1e-3, dt=0.1, t_end=3.0, backend="dense")
    res = simulate_vector(net, data, cfg, times=[0.0, 0.5, 1.3, 3.0])
    assert [r["t"] for r in res.history] == pytest.approx([0.0, 0.5, 1.3, 3.0], rel=1e-12)
    tot = [r["total"] for r in res.history]
    assert all(b < a for a, b in zip(tot, tot[1:]))
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]


def test_one_euler_step_is_state_plus_dt_velocity():
    data, net = _data(), _net()
    cfg = VectorFlowConfig(lam=0.1, integrator="euler", dt=0.01, t_end=0.01, backend="dense")
    v = velocity(net, data, cfg)
    res = simulate_vector(net, data, cfg, times=[0.01])
    for x, x0, vx in zip(res.network.state(), net.state(), v):
        assert torch.allclose(x, x0 + 0.01 * vx, rtol=1e-13, atol=1e-15)


def test_bad_input_names_the_problem():
    net = _net()
    with pytest.raises(ValueError, match="W must be"):
        HeadedNetwork(net.particles, net.W[0])
    with pytest.raises(ValueError, match="p = 4"):
        HeadedNetwork(net.particles, torch.zeros(2, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        HeadedNetwork(net.particles, torch.full_like(net.W, float("nan")))
    with pytest.raises(ValueError, match="K = 3"):
        velocity(net, _data(C=2), VectorFlowConfig())
    with pytest.raises(ValueError, match="lam"):
        VectorFlowConfig(lam=-1.0)
    with pytest.raises(ValueError, match="stepping"):
        VectorFlowConfig(stepping="cubic")
    with pytest.raises(ValueError, match="rate_W"):
        VectorFlowConfig(rate_W=0.0)
    with pytest.raises(ValueError, match="K"):
        HeadedNetwork.gaussian(5, 3, 2, 0)
    bad = _data()
    X = bad.X.clone()
    X[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        velocity(net, (X, bad.y), VectorFlowConfig())
