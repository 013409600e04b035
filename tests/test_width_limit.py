"""Finite width converges to mean field: the m^{-1/2} slope at a small size (issue 10)."""

import pytest
import torch

from meanfield.experiments import run_experiment


def test_finite_width_distance_falls_like_inverse_sqrt_m():
    res = run_experiment("width_limit", {"widths": "10,30,100,300", "seeds": 10,
                                         "reference_m": 40000, "long_t": 0.2, "tracking_m": 30,
                                         "steps_tested": "0.025,0.05,0.1"}, write=False)
    s = res.summary
    assert s["slope_tol"] == 0.1 and s["slope_theory"] == -0.5
    assert abs(s["slope"] + 0.5) < 0.1 and s["slope_agrees"]
    d = res.extra["distances"]
    assert all(a > b for a, b in zip(d, d[1:])), "distance must fall with width"
    # Euler's first order in the step while the step is small
    assert s["step_error_order"] == pytest.approx(1.0, abs=0.2)


def _hessian_oracle(P, data, lam):
    """lambda_max of the Hessian of sum_j p_j softplus(-xi_j f(x_j)) + lam/(2m) |theta|^2,
    written out by hand (tanh neurons, d = 1), independent of the trainer's objective."""
    m = P.m
    X, xi, p = data.X[:, 0], 2.0 * data.y.double() - 1.0, data.p

    def L(v):
        a, w, b = v[:m], v[m:2 * m], v[2 * m:]
        f = (a[None, :] * torch.tanh(X[:, None] * w[None, :] + b[None, :])).sum(1) / m
        return (p * torch.nn.functional.softplus(-xi * f)).sum() + lam / (2 * m) * (v ** 2).sum()

    v = torch.cat([P.a[0, :, 0], P.w[0, :, 0], P.b[0]])
    H = torch.autograd.functional.hessian(L, v)
    return float(torch.linalg.eigvalsh(H)[-1])


def test_stability_limit_is_two_over_m_times_the_hessian_top_eigenvalue():
    import torch
    from meanfield.experiments.width_limit import _init, gapped_line, stable_step
    from meanfield.flow import FlowConfig
    data = gapped_line(16).sample(dtype=torch.float64)
    P = _init(12, 3, "tanh", torch.float64, "cpu")
    flow = FlowConfig(loss="logistic", lam=0.03, integrator="euler", dt=0.05, t_end=1.0)
    want = 2.0 / (P.m * _hessian_oracle(P, data, 0.03))
    assert stable_step(P, data, flow) == pytest.approx(want, rel=1e-10)


def test_steps_must_divide_the_comparison_time():
    with pytest.raises(ValueError, match="does not divide step_t"):
        run_experiment("width_limit", {"steps_tested": "0.3,0.5,1", "step_t": 1.0}, write=False)


def test_tracking_breaks_where_the_step_passes_the_stability_limit():
    """The measured break lies within the computed limits (at t = 0 and at step_t), to one grid step."""
    res = run_experiment("width_limit", {"widths": "5,10", "seeds": 1, "reference_m": 200,
                                         "long_t": 0.2, "tracking_m": 30,
                                         "steps_tested": "0.05,0.1,0.2,0.5,1,2,2.5,5,10"},
                         write=False)
    s = res.summary
    lo, hi = sorted((s["eta_stable_init"], s["eta_stable_end"]))
    steps = (0.05, 0.1, 0.2, 0.5, 1, 2, 2.5, 5, 10)
    below = max(e for e in steps if e < lo)          # the last tested step under both limits
    assert below < s["step_breaks_at"] <= min(e for e in steps if e >= hi)
