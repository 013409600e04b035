"""The mean-field experiments of docs/science.md §3.1-3.3 at small sizes, with their stated tolerances."""

import json
import math

import pytest
import torch

from meanfield.experiments import run_experiment
from meanfield.experiments.maxmargin import MARGIN_TOL, RATIO_TOL
from meanfield.theory.simplex import ce_risk, lp_optimum, optimal_risk, simplex_solution


def _agrees(summary):
    keys = [k for k in summary if k.endswith("_agrees")]
    assert keys, "no theory checks in the summary"
    bad = [k for k in keys if not summary[k]]
    assert not bad, {k[:-7]: (summary[k[:-7]], summary[k[:-7] + "_theory"]) for k in bad}
    return keys


# ---------------------------------------------------------------- §3.1 closed forms
@pytest.mark.parametrize("k", [2, 3, 4, 7])
@pytest.mark.parametrize("R", [0.3, 1.0, 3.0])
def test_simplex_risk_formula_matches_direct_evaluation(k, R):
    Z, A = simplex_solution(k, R)
    assert torch.linalg.matrix_norm(A, ord=2) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(Z.norm(dim=1), torch.full((k,), R, dtype=Z.dtype), atol=1e-12)
    assert float(ce_risk(Z, A)) == pytest.approx(optimal_risk(k, R), rel=1e-12, abs=1e-15)
    # the l2-ball optimum with logits = features is the same simplex (same gap)
    lp = lp_optimum(k, R, 2.0)
    assert lp.alpha == pytest.approx(math.sqrt((k - 1) / k), abs=1e-12)
    assert lp.risk == pytest.approx(optimal_risk(k, R), rel=1e-12)


def test_simplex_optimality_experiment(tmp_path):
    res = run_experiment("simplex_optimality", {"num_classes": "2,3", "radii": "1,2", "starts": 2},
                         out=tmp_path / "run")
    s = res.summary
    keys = _agrees(s)
    assert len(keys) == 2 * 2 * 5                       # (k, R) x (risk + 4 geometry checks)
    assert s["risk_k3_R2_tol"] == 1e-12
    assert s["risk_k3_R2_theory"] == pytest.approx(math.log1p(2 * math.exp(-2 * math.sqrt(1.5))))
    # recompute one number from the history: every start of k = 3, R = 2 at the theory risk
    rows = [r for r in res.history if r["k"] == 3 and r["R"] == 2.0]
    assert len(rows) == 2
    assert all(abs(r["risk"] - optimal_risk(3, 2.0)) < 1e-12 for r in rows)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["risk_k2_R1_agrees"] is True
    assert (tmp_path / "run" / "risk_vs_R.png").stat().st_size > 10_000


# ---------------------------------------------------------------- §3.2 open case
def test_three_atoms_relu_runs_and_reports_the_spread():
    res = run_experiment("three_atoms_relu", {"m": 100, "flow.t_end": 1e3, "flow.lam": 1e-2,
                                               "lam_t": 5, "snapshot": 20}, write=False)
    s = res.summary
    assert not [k for k in s if k.endswith("_agrees")]      # no theory claimed for this case
    assert s["frozen_feature_law"] == pytest.approx(math.log(1 / 2))
    assert s["t_end_lam0"] == pytest.approx(1e3) and s["t_end_lam"] == pytest.approx(500)
    # recompute the final spreads from the returned particles (system 0: lambda = 0)
    X = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    f = res.particles.predict(X, backend="dense")[..., 0]
    assert float(f[0, 1] - f[0, 0]) == pytest.approx(s["gap_lam0"], abs=1e-10)
    assert float(f[1, 1] - f[1, 0]) == pytest.approx(s["gap_lam"], abs=1e-10)
    # the classes are separated and the lambda = 0 outputs grow past the regularised ones
    assert s["f_1_lam0"] > 0 > s["f_0_lam0"] and s["f_1_lam"] > 0 > s["f_0_lam"]
    assert s["norm_l2_lam0"] > s["norm_l2_lam"]
    assert {r["system"] for r in res.history} == {0, 1}


def test_three_atoms_relu_batched_points_equal_their_single_runs():
    """The atlas sweeps this experiment as one batched flow per phase (2 systems per point): each
    point's summary equals its own single run, and its history is numbered 0 (lambda = 0), 1."""
    from meanfield.experiments import RunContext, get_experiment, resolve_config
    exp = get_experiment("three_atoms_relu")
    over = {"m": 40, "flow.t_end": 300.0, "flow.lam": 1e-2, "lam_t": 2.0, "snapshot": 5}
    cfgs = [resolve_config(exp, {**over, "data.p3": p3, "scale_a": sa})
            for p3, sa in ((1.0, 1.0), (3.0, 0.5), (0.5, 1.0))]
    seeds = [0, 1, 2]
    both = exp.run_batch(cfgs, seeds, RunContext())
    assert len(both) == 3
    for c, s, b in zip(cfgs, seeds, both):
        one = exp.run_batch([c], [s], RunContext())[0]
        for k, v in one.summary.items():
            assert b.summary[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
        assert {r["system"] for r in b.history} == {0, 1}
        assert len(b.history) == len(one.history)
        assert torch.allclose(b.particles.a, one.particles.a, rtol=1e-9, atol=1e-12)
    assert both[0].summary["p3"] != both[1].summary["p3"]
    with pytest.raises(ValueError, match="m"):
        exp.run_batch([cfgs[0], resolve_config(exp, {**over, "m": 41})], [0, 0], RunContext())


# ---------------------------------------------------------------- §3.3 regularisation path
def test_maxmargin_path_against_the_lp_oracle():
    res = run_experiment("maxmargin", {"m": 400, "lams": "1e-2,1e-3", "lam_t": 6, "grid": 240,
                                       "snapshot": 20}, write=False)
    s = res.summary
    _agrees(s)
    assert s["ratio_x2_theory"] == pytest.approx(1.5, abs=1e-9)
    assert s["ratio_x3_theory"] == pytest.approx(2.0, abs=1e-9)
    assert s["margin_theory"] == pytest.approx(1 / math.sqrt(2), abs=1e-9)
    assert s["ratio_x2_tol"] == RATIO_TOL and s["margin_tol"] == MARGIN_TOL
    assert s["path_error_decreasing"]
    assert s["ratio_x2_in_l1_face"] and s["ratio_x3_in_l1_face"]
    assert (s["ratio_x2_l1_low"], s["ratio_x2_l1_high"]) == pytest.approx((1.5, 2.0), abs=1e-6)
    # recompute the ratio at x = 2 of the smallest-lambda network from its particles
    net = res.particles.select(1)
    f = net.predict(torch.tensor([[1.0], [2.0]], dtype=torch.float64), backend="dense")[0, :, 0]
    assert float(f[1] / f[0]) == pytest.approx(s["ratio_x2"], rel=1e-10)
    assert abs(float(f[1] / f[0]) / 1.5 - 1) <= RATIO_TOL


# ---------------------------------------------------------------- §3.2 three atoms: one code path
def test_three_atoms_langevin_temperature_reaches_the_flow():
    base = {"m": 30, "flow.t_end": 100.0}
    a = run_experiment("three_atoms", base, write=False).summary
    b = run_experiment("three_atoms", {**base, "flow.tau": 0.05}, write=False).summary
    assert a["gap"] != b["gap"] and a["f_1"] != b["f_1"]


def test_three_atoms_single_run_is_the_batched_path_with_one_system():
    from meanfield.experiments import RunContext, get_experiment, resolve_config
    exp = get_experiment("three_atoms")
    assert exp.run is None and exp.run_batch is not None
    cfgs = [resolve_config(exp, {"m": 30, "flow.t_end": 100.0, "data.p3": p3}) for p3 in (1.0, 2.0)]
    both = exp.run_batch(cfgs, [0, 1], RunContext())
    for i, c in enumerate(cfgs):
        one = exp.run_batch([c], [i], RunContext())[0]
        assert one.summary["gap"] == pytest.approx(both[i].summary["gap"], rel=1e-12, abs=1e-14)
        assert {r["system"] for r in both[i].history} == {i}
        assert {r["system"] for r in one.history} == {0}
    with pytest.raises(ValueError, match="m"):
        exp.run_batch([cfgs[0], resolve_config(exp, {"m": 31, "flow.t_end": 100.0})], [0, 0],
                      RunContext())
