"""The deep UFM (ReLU, MSE): the closed-form DNC objective (meanfield.theory.deep_ufm) against the
plain UFM (L = 1), a direct evaluation of the DUFM objective at the constructed DNC point, and a
1-D numerical minimisation; the ``deep_ufm`` experiment at K = 2 (DNC optimal, the 2023 theorem)."""

import math

import pytest
import torch

from meanfield.experiments.deep_ufm import dnc_point, objective
from meanfield.study.experiment import RunContext, get_experiment, resolve_config
from meanfield.theory.deep_ufm import dnc_objective, dnc_reference, dnc_threshold
from meanfield.theory.ufm import mse_ufm


@pytest.mark.parametrize("K,n,lam", [(3, 2, 0.01), (5, 1, 0.05), (4, 3, 0.3)])
def test_one_layer_is_the_mse_ufm(K, n, lam):
    assert dnc_objective(K, n, 1, lam, lam).value == pytest.approx(mse_ufm(K, n, lam, lam).value, abs=1e-14)


@pytest.mark.parametrize("K,n,L,frac", [(3, 2, 1, 0.5), (4, 2, 3, 0.4), (5, 1, 2, 0.9), (2, 3, 4, 0.2)])
def test_dnc_value_is_the_objective_at_the_dnc_point(K, n, L, frac):
    lam = frac * dnc_threshold(K, n, L)
    v = dnc_objective(K, n, L, lam, lam)
    H1, Ws = dnc_point(K, n, L, K + 2, v.t)
    Y = torch.eye(K, dtype=torch.float64).repeat_interleave(n, 1)
    assert float(objective(H1, Ws, Y, lam)[0]) == pytest.approx(v.value, rel=1e-12)


@pytest.mark.parametrize("L", [2, 3, 5])
def test_dnc_scalar_problem_by_brute_force(L):
    K, n, lam = 3, 2, 0.02
    v = dnc_objective(K, n, L, lam, lam)
    # optimise the per-layer scales (s_1..s_L, h) directly, without the AM-GM balancing
    x = torch.full((L + 1,), -0.1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=500, tolerance_grad=1e-14, line_search_fn="strong_wolfe")

    def f():
        opt.zero_grad()
        e = x.exp()
        t = e.prod()
        val = 0.5 * (1 - t) ** 2 + 0.5 * lam * K * (e[:-1] ** 2).sum() + 0.5 * lam * K * n * e[-1] ** 2
        val.backward()
        return val

    for _ in range(5):
        opt.step(f)
    assert float(f().detach()) == pytest.approx(v.value, rel=1e-9)


def test_threshold_switches_to_zero():
    K, n, L = 4, 2, 3
    lam = dnc_threshold(K, n, L)
    assert not dnc_objective(K, n, L, 0.99 * lam, 0.99 * lam).trivial
    assert dnc_objective(K, n, L, 1.01 * lam, 1.01 * lam).trivial
    assert dnc_threshold(K, n, 1) == pytest.approx(1 / (K * math.sqrt(n)))   # K mu = 1 for L = 1


def test_reference_line():
    assert dnc_reference(2, 5) < 0 and dnc_reference(7, 1) < 0 and dnc_reference(3, 3) > 0


@pytest.mark.parametrize("bad", [dict(K=1), dict(n=0), dict(L=0), dict(lam_w=0.0), dict(lam_h=float("nan"))])
def test_theory_bad_input(bad):
    args = {**dict(K=3, n=2, L=2, lam_w=0.01, lam_h=0.01), **bad}
    with pytest.raises(ValueError):
        dnc_objective(args["K"], args["n"], args["L"], args["lam_w"], args["lam_h"])


def _run(**over):
    exp = get_experiment("deep_ufm")
    cfg = resolve_config(exp, {**exp.small, **over})
    return exp.run(cfg, RunContext(seed=1, figures=False)).summary


def test_two_classes_reach_dnc():
    s = _run(num_classes=2, layers=3, lam_frac=0.5)
    assert s["converged"]
    assert abs(s["rel_gap"]) < 1e-6                 # DNC is optimal for K = 2 (2023 theorem)
    assert s["min_rank"] == 2 and s["rank_deficit"] == 0


def test_one_layer_matches_ufm_closed_form():
    s = _run(num_classes=4, layers=1, lam_frac=0.5)
    assert s["converged"] and abs(s["rel_gap"]) < 1e-6 and s["rank_1"] == 4


@pytest.mark.parametrize("key,val", [("num_classes", 1), ("layers", 0), ("lam_frac", -1.0),
                                     ("width", 3), ("init", float("nan"))])
def test_experiment_bad_input(key, val):
    with pytest.raises(ValueError, match=key):
        _run(num_classes=4, **{key: val}) if key != "num_classes" else _run(**{key: val})


@pytest.mark.slow   # tests/test_atlas.py runs every entry at size small in the default suite
def test_atlas_entry_small(tmp_path):
    from meanfield import atlas
    assert "deep_ufm" in atlas.list_atlas()
    page = atlas.run_atlas(tmp_path, size="small", only=["deep_ufm"], width_limit=False)
    assert (tmp_path / "deep_ufm" / "deep_ufm.png").stat().st_size > 0
    text = (tmp_path / "atlas.md").read_text()
    assert "grid points" in text and "a reference, not a claim" in text and page.exists()
