"""The engine at scale: batched systems, Langevin, checkpoints and resume, the mean-field limit."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meanfield import FlowConfig, Particles, Recorder, Samples, simulate
from meanfield.particles import group_sizes


def _data(seed, n=15, d=2, masses=None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).long()
    return Samples.from_masses(X, y, masses if masses is not None else torch.rand(n, generator=g) + 0.2)


def test_batched_run_equals_separate_runs():
    base = _data(0)
    masses = [torch.rand(base.n, generator=torch.Generator().manual_seed(s)) + 0.1 for s in range(3)]
    datas = [Samples.from_masses(base.X, base.y, m) for m in masses]
    Ps = [Particles.gaussian(23, 2, 1, activation="tanh", seed=10 + s) for s in range(3)]
    lams = (0.0, 0.01, 0.1)
    batch = Particles(torch.cat([P.a for P in Ps]), torch.cat([P.w for P in Ps]),
                      torch.cat([P.b for P in Ps]), "tanh")
    cfg = dict(loss="logistic", dt=0.05, t_end=2.0, integrator="heun", backend="dense")
    rb = simulate(batch, datas, FlowConfig(lam=lams, **cfg))
    for s in range(3):
        rs = simulate(Ps[s], datas[s], FlowConfig(lam=lams[s], **cfg))
        for name in ("a", "w", "b"):
            got, want = getattr(rb.particles, name)[s], getattr(rs.particles, name)[0]
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-14), name
    # the batched history has one row per system and recorded time
    systems = {row["system"] for row in rb.history}
    assert systems == {0, 1, 2}


def test_langevin_stationary_law_is_gaussian_with_variance_tau_over_lambda():
    lam, tau, dt, m = 2.0, 0.3, 0.02, 20000
    P = Particles.gaussian(m, 2, 1, scale_a=3.0, scale_w=3.0, scale_b=3.0, seed=1)
    res = simulate(P, None, FlowConfig(lam=lam, tau=tau, dt=dt, t_end=4.0, integrator="euler",
                                       backend="dense"), seed=7, recorder=Recorder(num=3))
    theta = torch.cat([res.particles.a[0], res.particles.w[0], res.particles.b[0][:, None]], 1)
    cov = torch.cov(theta.T)
    # Euler-Maruyama's exact stationary variance, and the continuous-time one tau/lam
    rho = 1 - lam * dt
    var_discrete = 2 * tau * dt / (1 - rho ** 2)
    assert var_discrete == pytest.approx(tau / lam, rel=0.021)
    se = var_discrete * np.sqrt(2 / m)  # standard error of a sample variance
    assert torch.allclose(torch.diagonal(cov), torch.full((4,), var_discrete, dtype=cov.dtype), atol=5 * se)
    off = cov - torch.diag(torch.diagonal(cov))
    assert off.abs().max() < 5 * var_discrete / np.sqrt(m)
    assert theta.mean(0).abs().max() < 5 * np.sqrt(var_discrete / m)


def test_langevin_noise_freezes_with_inner_frozen():
    P = Particles.gaussian(50, 2, 1, seed=1)
    res = simulate(P, None, FlowConfig(lam=1.0, tau=0.5, dt=0.01, t_end=0.2, train_inner=False,
                                       backend="dense"))
    assert torch.equal(res.particles.w, P.w) and torch.equal(res.particles.b, P.b)
    assert not torch.equal(res.particles.a, P.a)


def test_mean_field_limit_seed_to_seed_std_falls_like_inverse_sqrt_m():
    """At t = 1 the output of i.i.d.-initialised networks fluctuates around the mean-field
    output with standard deviation ~ C m^{-1/2} (law of large numbers over the neurons)."""
    data = _data(3, n=8, d=2)
    seeds, ms, stds = 30, [100, 300, 1000, 3000, 10000], []
    Xg = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None].repeat(1, 2)
    for m in ms:
        P = Particles.gaussian(m, 2, 1, batch=seeds, activation="tanh", scale_b=0.5, seed=m)
        res = simulate(P, data, FlowConfig(loss="logistic", lam=0.01, dt=0.25, t_end=1.0,
                                           integrator="heun", backend="dense"), recorder=Recorder(num=2))
        f = res.particles.predict(Xg)[:, :, 0]          # (seeds, points)
        stds.append(float(f.std(0).pow(2).mean().sqrt()))
    slope = np.polyfit(np.log(ms), np.log(stds), 1)[0]
    assert abs(slope + 0.5) < 0.1, f"fitted slope {slope:.3f}, expected -0.5"


def test_group_sizes_split_exactly():
    assert sorted(group_sizes(torch.tensor([1 / 3] * 3, dtype=torch.float64), 10)) == [3, 3, 4]
    assert sum(group_sizes(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), 7)) == 7
    with pytest.raises(ValueError, match="cannot fill"):
        group_sizes(torch.tensor([0.5, 0.5], dtype=torch.float64), 1)


_SCRIPT = textwrap.dedent("""
    import sys, torch
    from meanfield import FlowConfig, Particles, Samples, simulate, Recorder
    X = torch.linspace(-2, 2, 20, dtype=torch.float64)[:, None]
    data = Samples.from_masses(X, (X[:, 0] > 0.3).long())
    P = Particles.gaussian(200, 1, 1, seed=3)
    cfg = FlowConfig(loss="logistic", lam=1e-3, tau=1e-3, dt=1e-3, t_end=float(sys.argv[2]),
                     backend="dense")
    res = simulate(P, data, cfg, seed=11, checkpoint=sys.argv[1], checkpoint_every=0.02,
                   recorder=Recorder(num=20))
    torch.save({"a": res.particles.a, "w": res.particles.w, "b": res.particles.b,
                "history": res.history, "resumed_from": res.resumed_from}, sys.argv[3])
""")


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    t_end = "8.0"  # 8000 steps: seconds of work, so the kill lands mid-run on any machine
    ref = tmp_path / "ref.pt"
    subprocess.run([sys.executable, str(script), str(tmp_path / "ck_ref.pt"), t_end, str(ref)],
                   check=True, env=env, timeout=300)
    ck = tmp_path / "ck.pt"
    out = tmp_path / "out.pt"
    proc = subprocess.Popen([sys.executable, str(script), str(ck), t_end, str(out)], env=env)
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # at once: the first checkpoint is written ~20 ms into the run
    proc.wait()
    assert ck.exists() and not out.exists(), "the run should have been killed mid-way"
    subprocess.run([sys.executable, str(script), str(ck), t_end, str(out)], check=True, env=env,
                   timeout=300)
    a, b = torch.load(ref), torch.load(out)
    assert b["resumed_from"] is not None and 0 < b["resumed_from"] < 8.0
    for name in ("a", "w", "b"):
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    assert a["history"] == b["history"]


def test_checkpoint_of_another_run_is_refused(tmp_path):
    data = _data(0)
    P = Particles.gaussian(10, 2, 1, seed=0)
    ck = tmp_path / "ck.pt"
    simulate(P, data, FlowConfig(dt=0.1, t_end=0.5, backend="dense"), checkpoint=ck)
    with pytest.raises(ValueError, match="different run"):
        simulate(P, data, FlowConfig(dt=0.1, t_end=0.5, lam=0.5, backend="dense"), checkpoint=ck)
