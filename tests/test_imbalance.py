"""Minority collapse (docs/science.md §6.1): the threshold against independent computations, the
optimised models against the convex programs, bad input, and the atlas entry at the small size."""

import math

import numpy as np
import pytest

from meanfield.deep.ufm_imbalanced import fit_imbalanced_ufm, fit_lpm, imbalanced_labels
from meanfield.theory.imbalance import (group_counts, lpm_nuclear, lpm_sdp, minority_max_cos,
                                        ufm_convex, ufm_minority_margin, ufm_minority_threshold,
                                        ufm_trivial_threshold)


# ----------------------------------------------------------------------------- the threshold
@pytest.mark.parametrize("K,n", [(4, 1), (4, 3), (6, 2)])
def test_balanced_threshold_is_zhu_et_al(K, n):
    """n_A = n_B: minority collapse, the trivial optimum and K sqrt(n lam_W lam_H) = 1 coincide."""
    from meanfield.theory.ufm import collapse_margin
    lam = ufm_minority_threshold(K // 2, n, K - K // 2, n)
    assert lam == pytest.approx(ufm_trivial_threshold([n] * K), rel=1e-12)
    assert collapse_margin(K, n, lam, lam) == pytest.approx(0.0, abs=1e-12)


def test_threshold_formula_and_sign():
    assert ufm_minority_threshold(2, 10, 3, 2) == pytest.approx(math.sqrt(2) / 26)
    t = ufm_minority_threshold(2, 10, 2, 1)
    assert ufm_minority_margin(2, 10, 2, 1, 1.1 * t, 1.1 * t) < 0 < ufm_minority_margin(2, 10, 2, 1, 0.9 * t, 0.9 * t)
    assert t < ufm_trivial_threshold(group_counts(2, 10, 2, 1))   # a band where only the minority collapses


@pytest.mark.parametrize("counts_args", [(2, 10, 2, 1), (3, 6, 2, 2)])
def test_threshold_against_the_convex_program(counts_args):
    """The convex program (cvxpy, independent of the derivation) switches exactly at sqrt(n_B)/N."""
    k_a = counts_args[0]
    c = group_counts(*counts_args)
    t = ufm_minority_threshold(*counts_args)
    assert ufm_convex(c, 0.9 * t, k_a).max_cos < 0.99
    assert ufm_convex(c, 1.1 * t, k_a).max_cos > 1 - 1e-5
    triv = ufm_convex(c, 1.05 * ufm_trivial_threshold(c), k_a)
    assert np.abs(triv.WWt).max() < 1e-5 and math.isnan(triv.max_cos)


# ----------------------------------------------------------------------------- optimised models
def test_ufm_fit_matches_the_convex_program_below_threshold():
    c = group_counts(2, 4, 2, 1)
    lam = 0.6 * ufm_minority_threshold(2, 4, 2, 1)
    fit = fit_imbalanced_ufm(c, lam, lam, tol_grad=1e-9)
    cvx = ufm_convex(c, lam, 2)
    assert fit.value == pytest.approx(cvx.value, rel=1e-6)
    assert minority_max_cos(fit.W.numpy(), 2) == pytest.approx(cvx.max_cos, abs=1e-3)
    assert minority_max_cos(fit.W.numpy(), 2) < 0.99
    # NC1: features of one class coincide at the optimum
    H = fit.H.numpy()
    assert np.abs(H[:, :4] - H[:, :1]).max() < 1e-4


def test_ufm_fit_collapses_above_threshold():
    c = group_counts(2, 4, 2, 1)
    lam = 1.3 * ufm_minority_threshold(2, 4, 2, 1)
    fit = fit_imbalanced_ufm(c, lam, lam, tol_grad=1e-9)
    assert minority_max_cos(fit.W.numpy(), 2) > 1 - 1e-6


def test_lpm_sdp_equals_the_nuclear_norm_program_and_the_optimised_model():
    c = group_counts(2, 6, 2, 1)
    for E in (0.5, 2.0):
        sdp = lpm_sdp(c, E, E, 2)
        assert sdp.value == pytest.approx(lpm_nuclear(c, E, E), rel=1e-5)
        fit = fit_lpm(c, E, E, tol_grad=1e-9)
        assert fit.value == pytest.approx(sdp.value, rel=1e-5)
        assert minority_max_cos(fit.W.numpy(), 2) == pytest.approx(sdp.max_cos, abs=1e-3)
        # on the constraint spheres
        W, H, y = fit.W.numpy(), fit.H.numpy(), fit.labels.numpy()
        n = np.asarray(c, dtype=float)[y]
        assert (W ** 2).sum() / 4 == pytest.approx(E, rel=1e-10)
        assert ((H ** 2).sum(0) / n).sum() / 4 == pytest.approx(E, rel=1e-10)
    # small budget: collapsed, large: not (Fang et al.'s picture at this ratio)
    assert lpm_sdp(c, 0.5, 0.5, 2).max_cos > 0.999 > lpm_sdp(c, 2.0, 2.0, 2).max_cos


# ----------------------------------------------------------------------------- statistic, bad input
def test_minority_max_cos():
    W = np.array([[1.0, 0], [0, 1], [1, 1], [1, 0.9], [-1, 1]])
    assert minority_max_cos(W, 2) == pytest.approx(1.9 / math.sqrt(2 * 1.81))
    assert math.isnan(minority_max_cos(np.array([[1.0, 0], [0, 0], [1, 1]]), 1))
    with pytest.raises(ValueError, match="two or more minority rows"):
        minority_max_cos(W, 4)


@pytest.mark.parametrize("args,match", [((2, 5, 1, 1), "k_b"), ((2, 5, 2, 0), "n_b"), ((0, 5, 2, 1), "k_a"),
                                        ((2, 2.5, 2, 1), "n_a")])
def test_group_counts_rejects_bad_sizes(args, match):
    with pytest.raises(ValueError, match=match):
        group_counts(*args)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="lam_w"):
        fit_imbalanced_ufm([3, 1, 1], -1.0, 0.1)
    with pytest.raises(ValueError, match="E_H"):
        fit_lpm([3, 1, 1], 1.0, float("nan"))
    with pytest.raises(ValueError, match="each >= 1 sample"):
        imbalanced_labels([3, 0, 1])
    with pytest.raises(ValueError, match="lam"):
        ufm_convex([3, 1, 1], 0.0, 1)
    with pytest.raises(ValueError, match="E_W"):
        lpm_sdp([3, 1, 1], 0.0, 1.0, 1)


def test_experiments_reject_bad_config():
    from meanfield.study.experiment import RunContext, get_experiment, resolve_config
    ufm, lpm = get_experiment("imbalance_ufm"), get_experiment("imbalance_lpm")
    for exp, over, match in ((ufm, {"lam": 0.0}, "lam"), (ufm, {"ratio": float("nan")}, "ratio"),
                             (ufm, {"ratio": 0.1, "n_b": 1}, "rounds to no majority"),
                             (lpm, {"method": "adam"}, "unknown method"), (lpm, {"E": -1.0}, "E must"),
                             (lpm, {"k_b": 1}, "k_b")):
        with pytest.raises(ValueError, match=match):
            exp.run_one(resolve_config(exp, over), RunContext())


def test_experiments_report_theory_and_agreement():
    from meanfield.study.experiment import RunContext, get_experiment, resolve_config
    ufm = get_experiment("imbalance_ufm")
    s = ufm.run_one(resolve_config(ufm, {"ratio": 4.0, "lam": 0.05, "convex_check": True}), RunContext()).summary
    assert s["lam_star"] == pytest.approx(0.1) and s["collapses_theory"] is False
    assert s["max_cos_agrees"] and s["max_cos"] < 0.999
    th = ufm.science.theory
    assert th.predicts_collapse({"k_a": 2, "k_b": 2, "n_b": 1, "ratio": 4.0, "lam": 0.11})
    assert not th.predicts_collapse({"k_a": 2, "k_b": 2, "n_b": 1, "ratio": 4.0, "lam": 0.09})
    lpm = get_experiment("imbalance_lpm")
    s = lpm.run_one(resolve_config(lpm, {"method": "optimised", "sdp_check": True, "ratio": 6.0, "E": 0.5}),
                    RunContext()).summary
    assert s["value_agrees"] and s["max_cos_agrees"] and s["max_cos"] > 0.999


def test_mixture_preset_builds_the_imbalanced_masses_and_rejects_bad_input():
    import torch
    from meanfield.experiments.imbalance_mixture import classifier_rows, to_collapse
    from meanfield.study.experiment import RunContext, get_experiment, resolve_config
    exp = get_experiment("imbalance_mixture")
    cc = to_collapse(resolve_config(exp, {"ratio": 8.0, "n": 400}))
    s = cc.data.build().sample(400, seed=0)
    mass = torch.zeros(4, dtype=s.p.dtype).index_add_(0, s.y, s.p)
    assert mass.tolist() == pytest.approx([8 / 18, 8 / 18, 1 / 18, 1 / 18])
    for over, match in (({"ratio": -1.0}, "ratio"), ({"k_b": 1}, "k_b"), ({"std": 0.0}, "std"),
                        ({"model": "deep"}, "meanfield or two_layer"), ({"n": 3}, "cannot cover")):
        with pytest.raises(ValueError, match=match):
            exp.run_batch([resolve_config(exp, over)], [0], RunContext())
    # the classifier of each model: last-layer rows, or the mean-field outer-weight columns
    r = exp.run_batch([resolve_config(exp, {**exp.small, "ratio": 4.0, "flow.lam": 0.1})], [0],
                      RunContext(progress=False))[0]
    W = classifier_rows(r.extra["model"])
    assert W.shape == (4, 40) and -1 <= r.summary["max_cos"] <= 1


# ----------------------------------------------------------------------------- the atlas entry
def test_imbalance_entry_small_runs_and_agrees_with_theory(tmp_path):
    from meanfield import atlas
    from meanfield.atlas.stats import panel_rows, panel_stats
    assert "imbalance" in atlas.list_atlas()
    e = atlas.get_atlas("imbalance")
    atlas.run_entry(e, tmp_path, size="small")
    png = atlas.plot_entry(e, tmp_path, size="small")
    assert png.exists() and png.stat().st_size > 10_000
    st = [panel_stats(p, panel_rows(p, tmp_path)) for p in e.panels]
    assert st[0]["compared"] == st[0]["n"] > 0 and st[0]["agree"] == st[0]["compared"]
    assert all(s["failed"] == 0 and s["collapsed"] > 0 for s in st[:3])
    # the SDP and the optimised layer-peeled model call the same points collapsed
    assert [c[5] for c in st[1]["cells"]] == [c[5] for c in st[2]["cells"]]
    assert all(s["n"] > 0 and s["failed"] == 0 for s in st[3:])  # the mixtures ran (no claim)
    text = atlas.reading(e, tmp_path, stats=st)
    assert "100 %" in text and "max_cos > 0.999" in text
