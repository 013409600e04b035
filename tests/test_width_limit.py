"""Finite width converges to mean field: the m^{-1/2} slope at a small size (issue 10)."""

import pytest

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
