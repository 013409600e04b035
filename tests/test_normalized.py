"""The UFM on spheres and normalised features (docs/science.md §5.4).

Oracles: the ETF value log(1 + (K-1) exp(-tau K/(K-1))) evaluated on an exact simplex ETF (1e-14);
autograd projected on the tangent spaces for the explicit Riemannian gradient (1e-12); the
Riemannian gradient vanishing at an exact ETF (1e-13); every random start of Riemannian GD
reaching the ETF value (1e-10, from the stop at Riemannian gradient norm 1e-8) with unit rows and
columns (1e-12); no start reaching an ETF where none fits (d < K - 1).
"""


import pytest
import torch
from torch.nn import functional as F

from meanfield.deep.ufm_sphere import (NormalizedFeatures, SphereUFMConfig, etf_value, fit_sphere_ufm,
                                       riemannian_gradient, sphere_objective)
from meanfield.metrics import neural_collapse
from meanfield.study import run_experiment


from meanfield.theory.etf import simplex_etf


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("K, tau", [(3, 1.0), (4, 2.5), (10, 0.7)])
def test_etf_value_is_the_objective_at_an_exact_etf(K, tau):
    W = simplex_etf(K, K + 1, rotate=True, seed=3).T          # (K, d) unit rows
    labels = torch.arange(K).repeat_interleave(2)
    H = W[labels].T
    assert abs(float(sphere_objective(W, H, labels, tau)) - etf_value(K, tau)) < 1e-14
    _, gW, gH = riemannian_gradient(W, H, labels, tau)
    assert float(gW.abs().max()) < 1e-13 and float(gH.abs().max()) < 1e-13


def test_explicit_riemannian_gradient_matches_projected_autograd():
    g = torch.Generator().manual_seed(1)
    W = F.normalize(torch.randn(4, 5, generator=g, dtype=torch.float64), dim=1)
    H = F.normalize(torch.randn(5, 12, generator=g, dtype=torch.float64), dim=0)
    labels = torch.arange(4).repeat_interleave(3)
    v, gW, gH = riemannian_gradient(W, H, labels, 3.0)
    Wr, Hr = W.clone().requires_grad_(), H.clone().requires_grad_()
    vv = sphere_objective(Wr, Hr, labels, 3.0)
    a, b = torch.autograd.grad(vv, (Wr, Hr))
    assert abs(float(v) - float(vv.detach())) < 1e-14
    assert torch.allclose(gW, a - (a * W).sum(1, keepdim=True) * W, atol=1e-12)
    assert torch.allclose(gH, b - (b * H).sum(0, keepdim=True) * H, atol=1e-12)
    assert float((gW * W).sum(1).abs().max()) < 1e-14      # tangent


@pytest.mark.parametrize("K, d, tau", [(4, 5, 2.0), (4, 3, 1.0), (6, 6, 3.0)])
def test_every_random_start_reaches_the_etf(K, d, tau):
    for seed in range(3):
        r = fit_sphere_ufm(K, 3, SphereUFMConfig(tau=tau, feature_dim=d, seed=seed, tol_grad=1e-8))
        assert r.converged, (seed, r.grad_norm)
        assert abs(r.value - etf_value(K, tau)) < 1e-10
        assert torch.allclose(r.W.norm(dim=1), torch.ones(K, dtype=r.W.dtype), atol=1e-12)
        assert torch.allclose(r.H.norm(dim=0), torch.ones(r.H.shape[1], dtype=r.H.dtype), atol=1e-12)
        nc = neural_collapse(r.H.T, r.labels, classifier=r.W)
        assert nc.nc2_etf_w < 1e-4 and float((r.H - r.W[r.labels].T).norm(dim=0).max()) < 1e-4


def test_no_etf_where_none_fits():
    """d = 2 < K - 1 = 3: the optimiser converges, but above the ETF value (which is unattainable)."""
    r = fit_sphere_ufm(4, 3, SphereUFMConfig(tau=2.0, feature_dim=2, seed=0, tol_grad=1e-7))
    assert r.value > etf_value(4, 2.0) + 1e-3


@pytest.mark.parametrize("kw, match", [({"tau": 0.0}, "tau"), ({"lr": float("nan")}, "lr"),
                                       ({"feature_dim": 1}, "feature_dim")])
def test_config_refuses_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        SphereUFMConfig(**kw)


def test_fit_refuses_bad_sizes():
    with pytest.raises(ValueError, match="K >= 2"):
        fit_sphere_ufm(1, 3)


def test_normalized_features_wrapper():
    from meanfield.models import build_model
    from meanfield.study.spec import ModelSpec
    base = build_model(ModelSpec("mlp", {"width": 8, "depth": 3}), 5, 3, seed=0, dtype=torch.float64)
    net = NormalizedFeatures(base, 4.0)
    x = torch.randn(7, 5, dtype=torch.float64)
    h = net.features(x)
    assert torch.allclose(h.norm(dim=1), torch.full((7,), 4.0, dtype=h.dtype), atol=1e-12)
    assert torch.allclose(net(x), base.classifier(h))
    assert net.layers() == base.layers() and net.feature_dim == 8 and net.num_classes == 3
    with pytest.raises(ValueError, match="scale"):
        NormalizedFeatures(base, -1.0)
    with pytest.raises(ValueError, match="features"):
        NormalizedFeatures(torch.nn.Linear(2, 2))


def test_experiment_small_agrees_and_draws(tmp_path):
    from meanfield.study.experiment import get_experiment
    small = dict(get_experiment("normalized").small)
    res = run_experiment("normalized", small, out=tmp_path / "run")
    s = res.summary
    assert s["fraction_etf_agrees"] and s["fraction_etf"] == 1.0 and s["fraction_etf_theory"] == 1.0
    assert "speedup_agrees" not in s and "epochs_to_nc1_plain" in s
    assert (tmp_path / "run" / "normalized.png").exists()


def test_experiment_predicts_no_etf_below_k_minus_one():
    res = run_experiment("normalized", {"feature_dim": 2, "starts": 2, "tol_grad": 1e-6, "seeds": 1,
                                        "data.per_class": 5, "model.width": 8, "train.epochs": 2,
                                        "train.log_every": 2, "record_every": 1}, write=False)
    assert res.summary["fraction_etf"] == 0.0 and res.summary["fraction_etf_theory"] == 0.0
    assert res.summary["fraction_etf_agrees"]


@pytest.mark.parametrize("key, value, match", [("tau", -1.0, "tau"), ("starts", 0, "starts"),
                                               ("train.loss", "mse", "cross_entropy")])
def test_experiment_refuses_bad_config(key, value, match):
    with pytest.raises(ValueError, match=match):
        run_experiment("normalized", {key: value}, write=False)
