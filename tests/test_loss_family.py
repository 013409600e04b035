"""loss_family: label smoothing and focal loss in the UFM, the ETF-family optimum, the intervals.

Oracles: the CE UFM closed form of meanfield.theory.ufm (value, |W|), the label-smoothing optimum in
closed form (softmax probability of the true class q_y - (K-1) mu, threshold K mu = 1 - alpha),
the focal threshold where g'(0) = 0, torch's own label-smoothed cross-entropy, scipy's Wilson
interval. Tolerances: 1e-9 on closed forms of a 1-D problem solved by golden section (its bracket
shrinks to 1e-21); UFM geometry 1e-4 at gradient norm 1e-10 (§3.5).
"""

import math

import pytest
import torch
from torch.nn import functional as F

from meanfield.deep.ufm import UFMConfig, fit_ufm, focal_loss, label_smoothing_loss
from meanfield.experiments.loss_family import (deep_loss_name, etf_optimum, paired_interval,
                                               wilson)
from meanfield.experiments.registry import run_experiment
from meanfield.metrics import neural_collapse
from meanfield.theory.ufm import ce_ufm

ETF_GRAM = lambda K: math.sqrt(2 - 2 * math.sqrt((K - 1) / K))  # noqa: E731


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_losses_against_torch_and_their_special_cases():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    ce = F.cross_entropy(f, y, reduction="none")
    torch.testing.assert_close(label_smoothing_loss(f, y, 0.2),
                               F.cross_entropy(f, y, label_smoothing=0.2, reduction="none"))
    torch.testing.assert_close(focal_loss(f, y, 0.0), ce)
    p = torch.softmax(f, -1)[torch.arange(7), y]
    torch.testing.assert_close(focal_loss(f, y, 2.0), -(1 - p) ** 2 * torch.log(p))


@pytest.mark.parametrize("K,n,lam", [(4, 5, 5e-3), (3, 2, 2e-2), (5, 3, 1e-3)])
def test_etf_optimum_matches_closed_forms(K, n, lam):
    mu = math.sqrt(n * lam * lam)
    ce = etf_optimum("cross_entropy", K, n, lam, lam)
    th = ce_ufm(K, n, lam, lam, 1e-2)
    assert abs(ce["value"] - th.value) < 1e-9
    assert abs(ce["normW"] - math.sqrt(th.norm_W2)) < 1e-6
    assert abs(ce["kmu_threshold"] - 1.0) < 1e-9
    a = 0.1
    ls = etf_optimum("label_smoothing", K, n, lam, lam, smoothing=a)
    p = 1 - a + a / K - (K - 1) * mu
    assert abs(ls["t"] - math.log((K - 1) * p / (1 - p))) < 1e-7
    assert abs(ls["kmu_threshold"] - (1 - a)) < 1e-9
    for gm in (0.5, 2.0):
        fl = etf_optimum("focal", K, n, lam, lam, focal_gamma=gm)
        want = ((K - 1) / K) ** gm * (1 + gm * math.log(K) / (K - 1))
        assert abs(fl["kmu_threshold"] - want) < 1e-9
    # alpha = 0 and gamma = 0 are cross-entropy
    for loss, kw in (("label_smoothing", {"smoothing": 0.0}), ("focal", {"focal_gamma": 0.0})):
        assert abs(etf_optimum(loss, K, n, lam, lam, **kw)["value"] - ce["value"]) < 1e-9


def test_etf_optimum_beyond_threshold_is_zero():
    K, n = 4, 2  # LS threshold K mu = 0.9: mu = 0.95 / K is past it, not past CE's
    lam = 0.95 / K / math.sqrt(n)
    assert etf_optimum("label_smoothing", K, n, lam, lam, smoothing=0.1)["normW"] == 0.0
    assert etf_optimum("cross_entropy", K, n, lam, lam)["normW"] > 0.1


@pytest.mark.parametrize("loss", ["label_smoothing", "focal"])
@pytest.mark.parametrize("seed", [0, 1])
def test_ufm_new_losses_reach_the_simplex_etf(loss, seed):
    K, n, lam = 3, 2, 1e-2
    r = fit_ufm(K, n, UFMConfig(loss=loss, bias="regularised", lb=lam, lW=lam, lH=lam,
                                feature_dim=K + 1, tol_grad=1e-10, seed=seed))
    assert r.grad_norm < 1e-7
    nc = neural_collapse(r.H.T, r.labels, classifier=r.W, bias=r.b)
    assert nc.nc1 < 1e-8 and nc.nc2_etf_w < 1e-4 and nc.nc3 < 1e-8
    assert abs(nc.gram_ortho_w - ETF_GRAM(K)) < 1e-6  # a simplex, not an orthogonal frame
    assert abs(float(r.W.norm()) - etf_optimum(loss, K, n, lam, lam)["normW"]) < 1e-4
    assert float(r.b.abs().max()) < 1e-6  # b = 0 with a penalised bias


@pytest.mark.parametrize("bad", [{"loss": "hinge"}, {"smoothing": 1.0}, {"smoothing": float("nan")},
                                 {"focal_gamma": -1.0}])
def test_ufm_config_refuses_bad_loss_options(bad):
    with pytest.raises(ValueError):
        UFMConfig(**bad)


def test_intervals_against_independent_computations():
    from scipy.stats import binomtest
    ci = binomtest(83, 120).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(83, 120)
    assert abs(lo - ci.low) < 1e-4 and abs(hi - ci.high) < 1e-4
    a = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1] * 10)
    b = torch.tensor([1, 0, 0, 1, 1, 1, 0, 1] * 10)
    m, lo, hi = paired_interval(a, b)
    d = (a - b).double()
    half = 1.959963984540054 * float(d.std()) / math.sqrt(80)
    assert abs(m - 0.125) < 1e-12 and abs(hi - lo - 2 * half) < 1e-12


def test_deep_loss_names_register_once_and_train():
    from meanfield.losses import get_loss
    name = deep_loss_name("focal", smoothing=0.1, focal_gamma=1.5)
    assert name == deep_loss_name("focal", smoothing=0.1, focal_gamma=1.5)
    f = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    loss = get_loss(name)
    fr = f.clone().requires_grad_()
    auto = torch.autograd.grad(loss.value(fr, y).sum(), fr)[0]
    torch.testing.assert_close(loss.grad(f, y), auto)
    ls = get_loss(deep_loss_name("label_smoothing", smoothing=0.3, focal_gamma=2.0))
    fr = f.clone().requires_grad_()
    torch.testing.assert_close(ls.grad(f, y), torch.autograd.grad(ls.value(fr, y).sum(), fr)[0])


UFM_ONLY = {"deep": False, "starts": 2, "num_classes": 3, "per_class": 2, "feature_dim": 4}


def test_experiment_ufm_part_every_start_reaches_the_etf():
    s = run_experiment("loss_family", UFM_ONLY, write=False).summary
    for k in ("CE", "LS", "FL", "MSE"):
        assert s[f"frac_etf_{k}"] == 1.0
        assert s[f"normW_{k}_agrees"] and s[f"value_{k}_agrees"]
    assert s["frac_etf_CE_agrees"] and "frac_etf_FL_agrees" not in s  # FL: reported, not claimed
    assert s["gram_err_max_MSE"] < 1e-6  # free bias: a simplex, not the orthogonal frame


@pytest.mark.parametrize("bad", [{"losses": "cross_entropy,hinge"}, {"starts": 0},
                                 {"lam_w": float("nan")}, {"smoothing": 1.5},
                                 {"lam_w": 0.2, "lam_h": 0.2}])  # K mu = 0.98: at CE's threshold
def test_experiment_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        run_experiment("loss_family", {**UFM_ONLY, **bad}, write=False)


DEEP_TINY = {"starts": 1, "losses": "cross_entropy,mse", "num_classes": 3, "per_class": 2,
             "feature_dim": 4, "model.width": 16, "train.epochs": 1}


@pytest.mark.parametrize("per_class,claims", [(30, True), (82, False)])  # 1497 / 977 test images
def test_experiment_deep_part_claims_only_on_1000_test_images(per_class, claims):
    s = run_experiment("loss_family", {**DEEP_TINY, "train_per_class": per_class},
                       write=False).summary
    assert s["n_test"] == 1797 - 10 * per_class
    assert s["test_acc_CE_lo"] <= s["test_acc_CE"] <= s["test_acc_CE_hi"]
    assert ("acc_diff_agrees" in s) is claims
    inside = max(abs(s["diff_CE_MSE_lo"]), abs(s["diff_CE_MSE_hi"])) <= 0.02
    assert s["acc_diff"] == max(abs(s["diff_CE_MSE_lo"]), abs(s["diff_CE_MSE_hi"]))
    if claims:
        assert s["acc_diff_agrees"] is inside
