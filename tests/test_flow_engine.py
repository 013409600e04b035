"""Engine pieces: blow-up detection, continuation (t0, stops), stack/select, no hidden global state."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from meanfield import DivergenceError, FlowConfig, Particles, Recorder, Samples, simulate
from meanfield.divergence import DivergenceCheck, EpochMonitor, FlowMonitor
from meanfield.flow import _next_dt


def _data(n=10, d=1, seed=0):
    X = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None].repeat(1, d)
    return Samples.from_masses(X, (X[:, 0] > 0).long())


# ----------------------------------------------------------------------------- B. divergence
def test_mse_with_huge_step_raises_instead_of_returning_a_huge_norm():
    P = Particles.gaussian(50, 1, 1, seed=0)
    with pytest.raises(DivergenceError) as e:
        simulate(P, _data(), FlowConfig(loss="mse", dt=1e3, t_end=1e5, backend="dense"))
    msg = str(e.value)
    for part in ("step 1", "t = 1000", "dt = 1e+03", "reduce flow.dt / dt_max",
                 "stepping='log' with a smaller ds"):
        assert part in msg, msg
    # the same run with the checks off returns the blown-up state (the old behaviour)
    off = FlowConfig(loss="mse", dt=1e3, t_end=1e4, backend="dense",
                     divergence=DivergenceCheck(enabled=False))
    assert float(simulate(P, _data(), off).particles.variation_norm()) > 1e15


def test_a_rising_objective_is_caught_before_nan():
    """A too-large step that oscillates with growing amplitude: caught by the objective check."""
    P = Particles.gaussian(20, 1, 1, seed=1, activation="tanh")
    cfg = FlowConfig(loss="mse", dt=30.0, t_end=3e3, backend="dense",
                     divergence=DivergenceCheck(max_norm=math.inf, noise_factor=math.inf))
    with pytest.raises(DivergenceError, match=r"objective (jumped|rose).*at step \d+|at step \d+.*objective"):
        simulate(P, _data(), cfg)


def test_stable_runs_do_not_alarm():
    P = Particles.gaussian(30, 1, 1, seed=0)
    for cfg in (FlowConfig(loss="mse", dt=0.05, t_end=20.0, backend="dense"),
                FlowConfig(loss="exponential", stepping="log", dt=0.01, ds=0.02, t_end=1e5,
                           backend="dense"),
                FlowConfig(loss="logistic", lam=1e-2, tau=1e-3, dt=0.05, t_end=20.0,
                           backend="dense")):
        for dtype in (torch.float64, torch.float32):
            simulate(P.to(dtype), _data(), cfg)


def test_langevin_norm_bound():
    P = Particles.gaussian(20, 1, 1, seed=0)
    # tau = 1, lam = 1e-2: stationary rms ~ sqrt(tau / lam * 3) = 17; an explicit Euler step of
    # dt = 300 multiplies by |1 - lam dt| = 2 per step: the norm passes 1e3 x that in ~ 10 steps
    cfg = FlowConfig(loss="logistic", lam=1e-2, tau=1.0, integrator="euler", dt=300.0,
                     t_end=3e4, backend="dense")
    with pytest.raises(DivergenceError, match="parameter norm"):
        simulate(P, _data(), cfg)
    mon = FlowMonitor(DivergenceCheck(), taus=[1.0, 0.0], lams=[1e-2, 0.0], rms0=[1.0, 1.0], dim=3,
                      dtype=torch.float64)
    assert mon.bound == [pytest.approx(1e3 * math.sqrt(300.0)), 1e8]


def test_flow_monitor_rules():
    chk = DivergenceCheck(rtol=1e-3, window=3, jump=1.0)
    mon = FlowMonitor(chk, taus=[0.0], lams=[0.0], rms0=[1.0], dim=3, dtype=torch.float64)
    for i, r in enumerate([1.0, 0.9, 0.95, 0.8, 0.81, 0.82]):  # rises of 1%, never 3 in a row
        mon.observe([r], [1.0], t=float(i), step=i, dt=1.0)
    with pytest.raises(DivergenceError, match="rose at 3 consecutive checks"):
        mon.observe([0.83], [1.0], t=6.0, step=6, dt=1.0)
    mon = FlowMonitor(chk, taus=[0.0], lams=[0.0], rms0=[1.0], dim=3, dtype=torch.float64)
    mon.observe([1.0], [1.0], t=0.0, step=0, dt=1.0)
    with pytest.raises(DivergenceError, match="jumped"):
        mon.observe([2.5], [1.0], t=1.0, step=1, dt=1.0)
    # float32 rounding floor: tiny absolute rises once R is small do not count
    mon = FlowMonitor(chk, taus=[0.0], lams=[0.0], rms0=[1.0], dim=3, dtype=torch.float32)
    for i in range(10):
        mon.observe([1.0 if i == 0 else 1e-8 * (1 + i)], [1.0], t=float(i), step=i, dt=1.0)
    with pytest.raises(DivergenceError, match="objective is nan"):
        mon.observe([math.nan], [1.0], t=10.0, step=10, dt=1.0)
    with pytest.raises(ValueError, match="window"):
        DivergenceCheck(window=0)


def _renamed(name, old):
    path = Path(__file__).parent / "fixtures" / "renames" / f"{name}.json"
    ren = json.loads(path.read_text())["renames"] if path.exists() else {}
    return {ren.get(k, k): v for k, v in old.items()}


def test_enclosure_with_a_huge_step_raises():
    from meanfield.study import run_experiment
    with pytest.raises(DivergenceError, match=r"at step \d+, t = .*dt = .*reduce flow.dt"):
        run_experiment("enclosure", _renamed("enclosure", {"dt": 1000}), write=False)


# ----------------------------------------------------------------------------- B. training
def test_epoch_monitor_rules():
    mon = EpochMonitor(DivergenceCheck(window=3, rtol=0.5))
    for e, v in enumerate([1.0, 1.1, 1.2, 1.3, 1.0, 1.05]):  # 3 rises but +30% < 50%: SGD noise
        mon.observe(v, epoch=e, step=e)
    mon.observe(1.2, epoch=6, step=6)
    with pytest.raises(DivergenceError, match="epoch 7.*lower the learning rate"):
        mon.observe(1.6, epoch=7, step=7)
    with pytest.raises(DivergenceError, match="epoch 3.*nan"):
        EpochMonitor(DivergenceCheck(enabled=False)).observe(math.nan, epoch=3, step=9)


def test_training_with_a_huge_lr_raises_naming_the_epoch():
    from meanfield.deep.models import MLP
    from meanfield.deep.train import TrainConfig, train
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g)
    data = Samples.from_masses(X, (X[:, 0] > 0).long(), dtype=torch.float32)
    with pytest.raises(DivergenceError, match=r"epoch \d+.*lower the learning rate"):
        train(MLP(5, 64, 3, 2, seed=0), data, TrainConfig(lr=50.0, epochs=40, loss="mse"))
    ok = train(MLP(5, 64, 3, 2, seed=0), data, TrainConfig(lr=0.05, epochs=40, loss="mse"))
    assert ok.epochs == 40
    assert issubclass(DivergenceError, FloatingPointError)  # what train() raised before


# ----------------------------------------------------------------------------- C.1 stack / select
def test_stack_select_and_system_column():
    P = Particles.gaussian(8, 1, 1, seed=0)
    Q = Particles.gaussian(8, 1, 1, seed=1, batch=2)
    S = Particles.stack([P, Q])
    assert S.batch == 3 and torch.equal(S.a[1:], Q.a) and torch.equal(S.w[:1], P.w)
    with pytest.raises(ValueError, match="element 1 has m = 9"):
        Particles.stack([P, Particles.gaussian(9, 1, 1)])
    with pytest.raises(ValueError, match="activation"):
        Particles.stack([P, Particles.gaussian(8, 1, 1, activation="tanh")])
    with pytest.raises(ValueError, match="dtype"):
        Particles.stack([P, P.to(torch.float32)])
    with pytest.raises(ValueError, match="at least one"):
        Particles.stack([])
    data = _data()
    cfg = FlowConfig(lam=(0.0, 1e-2, 1e-1), dt=0.1, t_end=1.0, backend="dense")
    rec = lambda: Recorder("linear", num=4, snapshot=2)  # noqa: E731
    rb = simulate(S, data, cfg, recorder=rec())
    assert {r["system"] for r in rb.history} == {0, 1, 2}
    one = rb.select(1)
    single = simulate(S.select(1), data, replace(cfg, lam=1e-2), recorder=rec())
    assert one.particles.batch == 1 and one.config.lam == 1e-2
    assert torch.allclose(one.particles.a, single.particles.a, rtol=1e-12, atol=1e-14)
    assert [r["system"] for r in single.history] == [0] * len(single.history)  # also when B = 1
    assert [r["t"] for r in one.history] == [r["t"] for r in single.history]
    assert all(r["system"] == 0 for r in one.history)
    assert one.snapshots[0]["a"].shape[0] == 1


# ----------------------------------------------------------------------------- C.2 continuation
@pytest.mark.parametrize("setup", ["fixed", "log_capped", "langevin"])
def test_one_call_equals_two_stitched_calls(setup):
    P = Particles.gaussian(20, 1, 1, seed=2)
    data = _data()
    if setup == "fixed":
        cfg, t1 = FlowConfig(lam=1e-2, dt=0.1, t_end=3.0, backend="dense"), 1.3
    elif setup == "log_capped":  # log-time, then steps capped at dt_max from t = dt_max / ds
        cfg = FlowConfig(loss="exponential", stepping="log", dt=0.01, ds=0.05, dt_max=2.0,
                         lam=1e-3, t_end=200.0, backend="dense")
        t1 = 2.0 / 0.05
    else:
        cfg, t1 = FlowConfig(lam=1e-2, tau=1e-3, dt=0.1, t_end=3.0, backend="dense"), 1.3
    times = [0.0, 0.5, t1, 2.0, 2.9, 100.0]
    full = simulate(P, data, replace(cfg, stops=(t1,)), recorder=Recorder(times), seed=5)
    first = simulate(P, data, replace(cfg, t_end=t1), recorder=Recorder(times), seed=5)
    assert first.t == t1 or abs(first.t - t1) < 1e-12 * t1
    both = simulate(first, data, cfg, recorder=Recorder(times), seed=5)
    for name in ("a", "w", "b"):
        assert torch.equal(getattr(full.particles, name), getattr(both.particles, name)), name
    assert (full.t, full.steps) == (both.t, both.steps)
    assert full.history == both.history
    # the explicit form: an initial state and t0 (noise-free: no generator state to carry)
    if setup != "langevin":
        again = simulate(first.particles, data, replace(cfg, t0=first.t), recorder=Recorder(times))
        assert torch.equal(again.particles.a, full.particles.a)
        assert again.steps == full.steps - first.steps


def test_t0_and_log_time():
    cfg = FlowConfig(stepping="log", dt=0.01, ds=0.05, dt_max=1.0, t0=10.0, t_end=100.0)
    assert _next_dt(cfg, 10.0) == pytest.approx(0.5)
    assert _next_dt(cfg, 50.0) == 1.0
    assert _next_dt(replace(cfg, stops=(10.2,)), 10.0) == pytest.approx(0.2)
    res = simulate(Particles.gaussian(5, 1, 1), _data(), replace(cfg, backend="dense"))
    assert res.history[0]["t"] == 10.0 and res.t == pytest.approx(100.0)
    with pytest.raises(ValueError, match="t_end .* after t0"):
        FlowConfig(t0=5.0, t_end=5.0)
    with pytest.raises(ValueError, match="stops"):
        FlowConfig(stops=(2.0, 1.0))
    with pytest.raises(ValueError, match="t0"):
        simulate(res, _data(), replace(cfg, t0=3.0, t_end=200.0))


# ----------------------------------------------------------------------------- C.3 global state
def test_simulate_leaves_torch_global_state_alone():
    P = Particles.gaussian(10, 1, 1, seed=0)
    cfg = FlowConfig(tau=1e-3, lam=1e-2, dt=0.1, t_end=0.5, backend="dense")
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    r0 = simulate(P, _data(), cfg)
    r1 = simulate(P, _data(), cfg, seed=None)
    r2 = simulate(P, _data(), cfg, seed=None)
    Particles.gaussian(10, 1, 1, seed=None)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert r0.seed == 0 and r1.seed != r2.seed and r1.seed is not None
    again = simulate(P, _data(), cfg, seed=r1.seed)  # the recorded seed reproduces the run
    assert torch.equal(again.particles.a, r1.particles.a)


def test_thread_count_restored_by_a_numba_backend():
    pytest.importorskip("numba")
    from meanfield.threads import torch_threads as _torch_threads
    before = torch.get_num_threads()
    with _torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with _torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    try:
        simulate(Particles.gaussian(10, 1, 1), _data(), FlowConfig(dt=0.1, t_end=0.3, backend="numba"))
    except ValueError:
        pytest.skip("numba backend unavailable here")
    assert torch.get_num_threads() == before


def test_trajectory_figures_leave_matplotlib_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt  # the figures other tests left open are not this test's
    from meanfield.trajectory import animate_trajectories, plot_trajectories
    backend = matplotlib.rcParams["backend"]
    before = plt.get_fignums()
    res = simulate(Particles.gaussian(6, 1, 1), _data(), FlowConfig(dt=0.1, t_end=0.5, backend="dense"),
                   recorder=Recorder(num=4, snapshot=3))
    fig = plot_trajectories(res.snapshots)
    fig.savefig(tmp_path / "t.png")
    animate_trajectories(res.snapshots, tmp_path / "t.gif", fps=4)
    assert matplotlib.rcParams["backend"] == backend
    assert plt.get_fignums() == before   # no pyplot figure opened (or left open) by these
    assert (tmp_path / "t.png").exists() and (tmp_path / "t.gif").exists()
