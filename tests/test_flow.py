"""The flow: explicit velocity vs autograd, integrator orders, loss decrease, the three-atom law, errors."""

import math

import numpy as np
import pytest
import torch

from cases import THREE_ATOM_CASES, THREE_ATOM_TOL, three_atom_gap
from meanfield import (DivergenceError, FlowConfig, Particles, Recorder, Samples,
                       risk, simulate, velocity)
from meanfield.activations import register_activation
from meanfield.experiments.three_atoms import POSITIONS


def three_atom_samples(p1, p2, p3, *, dtype=torch.float64):
    """The seed geometry: atoms -1, 0, 1, labels 1, 0, 1, masses normalised."""
    return Samples.from_masses(torch.tensor([[-1.0], [0.0], [1.0]]), torch.tensor([1, 0, 1]),
                               [p1, p2, p3], num_classes=2, dtype=dtype)

LOSS_SETUPS = [("exponential", 1, 2), ("logistic", 1, 2), ("mse", 1, 2), ("mse", 3, 3),
               ("cross_entropy", 3, 3)]


def _data(n, d, C, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.arange(n) % C
    p = torch.rand(n, generator=g, dtype=dtype) + 0.1
    return Samples.from_masses(X, y, p, num_classes=C, dtype=dtype)


def _autograd_velocity(P, data, loss_name, lam_a, lam_w):
    from meanfield.losses import get_loss
    a, w, b = (t.clone().requires_grad_(True) for t in (P.a[0], P.w[0], P.b[0]))
    z = data.X @ w.T + b
    f = P.act.fn(z) @ a / P.m
    R = (data.p * get_loss(loss_name).value(f, data.y)).sum()
    R = R + lam_a / (2 * P.m) * (a ** 2).sum() + lam_w / (2 * P.m) * ((w ** 2).sum() + (b ** 2).sum())
    ga, gw, gb = torch.autograd.grad(R, (a, w, b))
    return -P.m * ga, -P.m * gw, -P.m * gb


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "smoothstep", "tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("loss,k,C", LOSS_SETUPS)
def test_velocity_equals_minus_m_autograd_gradient(act, loss, k, C):
    data = _data(n=17, d=3, C=C, seed=1)
    P = Particles.gaussian(29, 3, k, scale_b=0.5, activation=act, seed=2)
    lam_a, lam_w = 0.3, 0.07
    cfg = FlowConfig(loss=loss, lam_a=lam_a, lam_w=lam_w, backend="dense")
    va, vw, vb = velocity(P, data, cfg)
    ga, gw, gb = _autograd_velocity(P, data, loss, lam_a, lam_w)
    explicit = torch.cat([va[0].flatten(), vw[0].flatten(), vb[0].flatten()])
    oracle = torch.cat([ga.flatten(), gw.flatten(), gb.flatten()])
    assert (explicit - oracle).norm() <= 1e-10 * oracle.norm()


def test_velocity_of_user_activation_and_frozen_inner():
    register_activation("cube_test", lambda z: z ** 3, lambda z: 3 * z ** 2, overwrite=True)
    data = _data(n=11, d=2, C=2, seed=3)
    P = Particles.gaussian(13, 2, 1, activation="cube_test", seed=4)
    va, vw, vb = velocity(P, data, FlowConfig(loss="logistic", lam=0.1, backend="dense"))
    ga, gw, gb = _autograd_velocity(P, data, "logistic", 0.1, 0.1)
    assert torch.allclose(va[0], ga, rtol=1e-10, atol=1e-12)
    assert torch.allclose(vw[0], gw, rtol=1e-10, atol=1e-12)
    va2, vw2, vb2 = velocity(P, data, FlowConfig(loss="logistic", lam=0.1, train_inner=False, backend="dense"))
    assert vw2 is None and vb2 is None and torch.allclose(va2, va)


def test_risk_decreases_along_the_flow():
    X = torch.randn(20, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    data = Samples.from_masses(X, (X[:, 0] > 0).long(), dtype=torch.float64)  # learnable labels
    P = Particles.gaussian(50, 2, 1, seed=6)
    cfg = FlowConfig(loss="logistic", lam=1e-2, dt=2e-2, t_end=20.0, integrator="heun", backend="dense")
    res = simulate(P, data, cfg, recorder=Recorder("linear", num=30))
    r = np.array([row["risk"] for row in res.history])
    assert len(r) >= 30
    assert np.all(np.diff(r) < 0), "risk must decrease monotonically along the gradient flow"
    assert r[-1] < 0.8 * r[0]


@pytest.mark.parametrize("integrator,order", [("euler", 1.0), ("heun", 2.0), ("rk4", 4.0)])
def test_integrator_orders(integrator, order):
    data = _data(n=10, d=2, C=2, seed=7)
    P = Particles.gaussian(20, 2, 1, activation="tanh", seed=8)
    T = 0.5
    ref = simulate(P, data, FlowConfig(loss="logistic", lam=0.1, integrator="rk4", dt=T / 2048,
                                       t_end=T, backend="dense")).particles
    dts, errs = [T / 8, T / 16, T / 32, T / 64], []
    for dt in dts:
        out = simulate(P, data, FlowConfig(loss="logistic", lam=0.1, integrator=integrator, dt=dt,
                                           t_end=T, backend="dense")).particles
        errs.append(float(torch.cat([(out.a - ref.a).flatten(), (out.w - ref.w).flatten(),
                                     (out.b - ref.b).flatten()]).norm()))
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.2, f"{integrator}: fitted order {slope:.3f}, expected {order}"


@pytest.mark.parametrize("p1,p2,p3,q1,q2,q3", THREE_ATOM_CASES)
def test_three_atom_law(p1, p2, p3, q1, q2, q3):
    data = three_atom_samples(p1, p2, p3)
    P = Particles.at_positions(POSITIONS, m=60, fractions=(q1, q2, q3), activation="smoothstep",
                               scale_a=2.0, seed=int(100 * p1 + 10 * q2))
    cfg = FlowConfig(loss="exponential", train_inner=False, stepping="log", dt=0.01, ds=0.02,
                     t_end=1e6, backend="dense")
    res = simulate(P, data, cfg)
    f = res.particles.predict(data.X)[0, :, 0]
    gap = float(f[2] - f[0])
    pn = data.p
    assert abs(gap - three_atom_gap(float(pn[0]), float(pn[2]), q1 / (q1 + q2 + q3),
                                    q3 / (q1 + q2 + q3))) < THREE_ATOM_TOL
    # the flow does not depend on the initial outer weights: another seed, same limit
    P2 = Particles.at_positions(POSITIONS, m=60, fractions=(q1, q2, q3), activation="smoothstep",
                                scale_a=2.0, seed=12345)
    f2 = simulate(P2, data, cfg).particles.predict(data.X)[0, :, 0]
    assert abs(float(f2[2] - f2[0]) - gap) < THREE_ATOM_TOL


def test_log_time_reaches_large_times_in_few_steps():
    data = three_atom_samples(1, 1, 1)
    P = Particles.at_positions(POSITIONS, m=3, activation="smoothstep")
    res = simulate(P, data, FlowConfig(loss="exponential", train_inner=False, stepping="log",
                                       dt=0.01, ds=0.05, t_end=1e8, backend="dense"))
    assert res.t == pytest.approx(1e8)
    # ~ 1/ds steps to t = dt/ds, then log(t_end / (dt/ds)) / log(1 + ds)
    assert res.steps < 20 + math.log(1e8 / 0.2) / math.log(1.05) + 5


def test_divergence_is_reported_with_time():
    data = _data(n=10, d=2, C=2)
    P = Particles.gaussian(10, 2, 1, scale_a=10.0, seed=0)
    with pytest.raises(DivergenceError, match=r"diverged .* t = .*smaller step"):
        simulate(P, data, FlowConfig(loss="exponential", dt=50.0, t_end=1e4, backend="dense"))


def test_bad_inputs_have_clear_errors():
    data = _data(n=10, d=2, C=2)
    P = Particles.gaussian(10, 2, 1)
    with pytest.raises(ValueError, match="unknown activation 'nope'.*relu"):
        Particles.gaussian(10, 2, 1, activation="nope")
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*logistic"):
        FlowConfig(loss="hinge")
    with pytest.raises(ValueError, match="unknown integrator 'rk45'.*euler"):
        FlowConfig(integrator="rk45")
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*dense"):
        simulate(P, data, FlowConfig(backend="cuda"))
    with pytest.raises(ValueError, match="dt must be a positive"):
        FlowConfig(dt=-1.0)
    with pytest.raises(ValueError, match="d = 3 but particles have d = 2"):
        simulate(P, _data(n=10, d=3, C=2), FlowConfig(t_end=0.1))
    with pytest.raises(ValueError, match="NaN/inf"):
        Particles.from_tensors(torch.tensor([1.0, float("nan")]), torch.ones(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="NaN/inf"):
        Samples.from_masses(torch.tensor([[0.0], [float("nan")]]), [0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        Samples.from_masses(torch.zeros(2, 1), [0, 1], [1.0, -1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        Samples.from_masses(torch.zeros(2, 1), [0, 1], [0.0, 0.0])
    with pytest.raises(ValueError, match="binary"):
        simulate(Particles.gaussian(5, 2, 1), _data(n=9, d=2, C=3), FlowConfig(loss="logistic"))
    with pytest.raises(ValueError, match="mismatched lengths"):
        Samples.from_masses(torch.zeros(3, 1), [0, 1])
    with pytest.raises(ValueError, match="w must be"):
        Particles.from_tensors(torch.ones(3), torch.ones(3), torch.zeros(3))


def test_risk_matches_definition():
    data = _data(n=8, d=2, C=2)
    P = Particles.gaussian(6, 2, 1, seed=1)
    cfg = FlowConfig(loss="logistic", lam=0.4)
    f = P.features(data.X)[0] @ P.a[0] / P.m
    direct = (data.p * torch.nn.functional.softplus(-(2 * data.y - 1) * f[:, 0])).sum()
    direct += 0.2 * ((P.a ** 2).sum() + (P.w ** 2).sum() + (P.b ** 2).sum()) / P.m
    assert torch.allclose(risk(P, data, cfg)[0], direct, rtol=1e-12)


def test_log_stepping_respects_dt_max():
    from meanfield.flow import _next_dt
    cfg = FlowConfig(stepping="log", dt=0.01, ds=0.1, dt_max=2.0, t_end=1e6)
    assert _next_dt(cfg, 0.0) == 0.01 and _next_dt(cfg, 5.0) == pytest.approx(0.5)
    assert _next_dt(cfg, 1e3) == 2.0
    with pytest.raises(ValueError, match="dt_max"):
        FlowConfig(dt_max=0.0)


@pytest.mark.parametrize("k", [1, 3])
def test_dense_chunking_does_not_change_results(k):
    """Tiny budgets force many chunks over particles and samples (sizes not multiples of them)."""
    from meanfield.activations import get_activation
    from meanfield.backends.dense import DenseBackend
    g = torch.Generator().manual_seed(0)
    B, m, n, d = 3, 37, 23, 2
    a, w = torch.randn(B, m, k, generator=g, dtype=torch.float64), torch.randn(B, m, d, generator=g, dtype=torch.float64)
    b, X = torch.randn(B, m, generator=g, dtype=torch.float64), torch.randn(1, n, d, generator=g, dtype=torch.float64)
    gg = torch.randn(B, n, k, generator=g, dtype=torch.float64)
    act = get_activation("tanh")
    small, big = DenseBackend(budget=40), DenseBackend(budget=2 ** 30)
    assert small._chunks(B, m, n, d) != big._chunks(B, m, n, d)
    assert torch.allclose(small.outputs(act, a, w, b, X), big.outputs(act, a, w, b, X), rtol=1e-12, atol=1e-14)
    for u, v in zip(small.velocities(act, a, w, b, X, gg), big.velocities(act, a, w, b, X, gg)):
        assert torch.allclose(u, v, rtol=1e-12, atol=1e-14)


def test_dense_large_d_uses_its_own_chunk_budget_with_the_same_results():
    """At d >= large_d the chunks follow budget_large_d (larger row blocks for the two matrix
    products); below it, budget. The numbers do not depend on the chunking."""
    from meanfield.activations import get_activation
    from meanfield.backends.dense import DenseBackend
    be = DenseBackend(budget=64, budget_large_d=512, large_d=16)
    assert be._chunks(1, 100, 10, 15) == (6, 10)      # budget 64: 6 rows of 10 samples
    assert be._chunks(1, 100, 10, 16) == (51, 10)     # budget_large_d 512: 51 rows
    g = torch.Generator().manual_seed(2)
    B, m, n, d = 2, 57, 13, 20
    a, w = torch.randn(B, m, 1, generator=g, dtype=torch.float64), torch.randn(B, m, d, generator=g, dtype=torch.float64)
    b, X = torch.randn(B, m, generator=g, dtype=torch.float64), torch.randn(1, n, d, generator=g, dtype=torch.float64)
    weights = lambda f: torch.cos(2 * f)  # noqa: E731
    act = get_activation("relu")
    ref = DenseBackend(budget=2 ** 30)
    f0, v0 = ref.outputs_velocities(act, a, w, b, X, weights)
    for be2 in (be, DenseBackend(budget=64, budget_large_d=64, large_d=16)):
        f, v = be2.outputs_velocities(act, a, w, b, X, weights)
        assert torch.allclose(f, f0, rtol=1e-12, atol=1e-14)
        for u, u0 in zip(v, v0):
            assert torch.allclose(u, u0, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k,inner,budget", [(1, True, 2 ** 20), (3, True, 40), (2, False, 2 ** 20)])
def test_dense_one_pass_step_equals_outputs_then_velocities(k, inner, budget):
    """outputs_velocities keeps the pre-activations of the first pass (d >= hold_min_d, within
    hold_bytes) and must give the same numbers, bit for bit, as computing them twice; when they
    do not fit (or samples are chunked) it computes them again, with the same result."""
    from meanfield.activations import get_activation
    from meanfield.backends.dense import DenseBackend
    g = torch.Generator().manual_seed(1)
    B, m, n, d = 2, 41, 29, 9
    a, w = torch.randn(B, m, k, generator=g, dtype=torch.float64), torch.randn(B, m, d, generator=g, dtype=torch.float64)
    b, X = torch.randn(B, m, generator=g, dtype=torch.float64), torch.randn(1, n, d, generator=g, dtype=torch.float64)
    weights = lambda f: torch.sin(3 * f) - 0.2  # noqa: E731  (any function of the outputs)
    for act in map(get_activation, ("relu", "tanh")):
        for hold in (2 ** 30, 0):
            be = DenseBackend(budget=budget, hold_bytes=hold)
            f, v = be.outputs_velocities(act, a, w, b, X, weights, inner=inner)
            f2 = be.outputs(act, a, w, b, X)
            v2 = be.velocities(act, a, w, b, X, weights(f2), inner=inner)
            assert torch.equal(f, f2)
            for u, u2 in zip(v, v2):
                assert (u is None and u2 is None) or torch.equal(u, u2)
    with pytest.raises(ValueError):   # the weights' shape is checked like velocities' g
        DenseBackend().outputs_velocities(act, a, w, b, X, lambda f: f[:, :-1])


def test_flow_velocity_on_dense_uses_one_pass_and_matches_the_reference():
    """The flow's velocity through the dense backend (one pass) equals autograd's gradient of the
    risk (float64), so the one-pass path is the flow's, not only the backend's."""
    import meanfield as mf
    from meanfield.backends.dense import DenseBackend
    torch.manual_seed(0)
    X = torch.randn(50, 12, dtype=torch.float64)
    data = mf.Samples(X, (X[:, 0] > 0).long(), torch.full((50,), 0.02, dtype=torch.float64), 2)
    P = mf.Particles.gaussian(30, 12, activation="tanh", seed=2, dtype=torch.float64)
    cfg = mf.FlowConfig(loss="logistic", backend="dense")
    calls = []

    class Spy(DenseBackend):
        def outputs_velocities(self, *args, **kw):
            calls.append(1)
            return super().outputs_velocities(*args, **kw)

    va, vw, vb = mf.velocity(P, data, cfg, backend=Spy())
    assert calls
    a, w, b = (t.clone().requires_grad_() for t in (P.a, P.w, P.b))
    f = (torch.tanh(w[0] @ X.T + b[0][:, None]).T @ a[0])[:, 0] / P.m
    xi = 2.0 * data.y - 1
    R = (data.p * torch.nn.functional.softplus(-xi * f)).sum()
    ga, gw, gb = torch.autograd.grad(R, (a, w, b))
    for v, gr in ((va, ga), (vw, gw), (vb, gb)):
        assert torch.allclose(v, -P.m * gr, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["logistic", "exponential", "cross_entropy", "mse"])
def test_loss_of_systems_sharing_labels_is_each_systems_own(name):
    """Labels shared by B systems (leading size 1, as BatchedData keeps them) score every system
    with its own outputs (cross-entropy once scored all with system 0's: a wrong batched risk
    that tripped the divergence check)."""
    from meanfield.losses import get_loss
    g = torch.Generator().manual_seed(3)
    k = 1 if name in ("logistic", "exponential") else 3
    f = torch.randn(4, 7, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2 if k == 1 else 3, (7,), generator=g)
    loss = get_loss(name)
    shared = loss.value(f, y[None])
    for b in range(4):
        torch.testing.assert_close(shared[b], loss.value(f[b:b + 1], y[None])[0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("which", ["label_smoothing", "focal"])
def test_ufm_losses_of_systems_sharing_labels_are_each_systems_own(which):
    """The UFM's label-smoothing and focal losses read each system's own logits (shared labels)."""
    from meanfield.deep.ufm import focal_loss, label_smoothing_loss
    fn = (lambda f, y: label_smoothing_loss(f, y, 0.1)) if which == "label_smoothing" \
        else (lambda f, y: focal_loss(f, y, 2.0))
    g = torch.Generator().manual_seed(4)
    f = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    shared = fn(f, y[None])
    for b in range(3):
        torch.testing.assert_close(shared[b], fn(f[b:b + 1], y[None])[0], rtol=1e-14, atol=0)


def test_batched_risk_equals_each_systems_single_risk():
    """Two systems with their own weight decays on shared labels: the recorded risk of each equals
    its single run's (cross-entropy, 3 classes)."""
    from dataclasses import replace
    from meanfield.data import get_distribution
    data = get_distribution("gaussian_mixture", means=[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]],
                            stds=0.5).sample(30, seed=0, dtype=torch.float64)
    parts = [Particles.gaussian(20, 2, 3, seed=s, dtype=torch.float64) for s in (0, 1)]
    P = Particles.stack(parts)
    cfg = FlowConfig(loss="cross_entropy", lam=1e-2, dt=0.05, t_end=0.5)
    batched = simulate(P, data, replace(cfg, lam=(1e-2, 3e-2)), recorder=Recorder(num=2))
    for i, lam in enumerate((1e-2, 3e-2)):
        single = simulate(parts[i], data, replace(cfg, lam=lam), recorder=Recorder(num=2))
        want = [r["risk"] for r in single.history]
        got = [r["risk"] for r in batched.history if r["system"] == i]
        assert got == pytest.approx(want, rel=1e-12)
