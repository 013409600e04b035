"""layerwise_collapse and spectra of models: one row per layer, equal to the per-layer call."""

import math

import pytest
import torch

from meanfield import Particles
from meanfield.deep.models import ConvNet, DeepHomogeneousMLP, MLP, TwoLayerMeanField
from meanfield.metrics import (ALL_FIELDS, effective_rank, layerwise_collapse, neural_collapse,
                               numerical_rank, particle_neural_collapse, spectra)

f64 = torch.float64


def _data(n=24, d=5, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    X = torch.randn(n, d, generator=g, dtype=f64) + torch.randn(C, d, generator=g, dtype=f64)[y]
    return X, y, torch.rand(n, generator=g, dtype=f64) + 0.1


def _same(a, b):
    for k in ALL_FIELDS:
        u, v = getattr(a, k), getattr(b, k)
        assert (u is None) == (v is None), k
        assert u is None or abs(u - v) <= 1e-12 * abs(v) + 1e-14, (k, u, v)


@pytest.mark.parametrize("cls", [DeepHomogeneousMLP, MLP])
def test_layerwise_mlp_rows(cls):
    X, y, w = _data()
    model = cls(5, [7, 6], 3, 3, dtype=f64)
    t = layerwise_collapse(model, (X, y, w))
    assert [r.name for r in t] == ["hidden1", "hidden2", "output"] and [r.dim for r in t] == [7, 6, 3]
    b = model.classifier.bias
    _same(t.rows[1].metrics, neural_collapse(model.features(X), y, classifier=model.classifier.weight,
                                             bias=b, weights=w, strict=False))
    assert t.rows[0].metrics.nc3 is None and t.rows[1].metrics.nc3 is not None
    rows = t.to_rows()
    assert rows[2]["layer"] == "output" and set(ALL_FIELDS) <= set(rows[0]) and "reasons" not in rows[0]
    assert t.column("nc1_trace") == [r["nc1_trace"] for r in rows]
    s = spectra(model=model, samples=(X, y, w))
    assert s.layers == ("hidden1", "hidden2", "output")
    assert [tuple(v.shape) for v in s.layer_weights] == [(5,), (6,), (3,)]
    assert torch.allclose(s.layer_weights[0], torch.linalg.svdvals(model.hidden[0].weight))
    assert s.means.shape == (2,) and torch.allclose(s.means, s.layer_means[1])


def test_layerwise_convnet_and_two_layer():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1, 6, 6, generator=g, dtype=f64)
    y = torch.arange(12) % 3
    net = ConvNet(1, 3, channels=(4,), feature_dim=5, dtype=f64)
    t = layerwise_collapse(net, (X, y))
    assert [r.name for r in t] == ["conv1", "pool", "fc", "output"] and t.rows[0].dim == 4 * 6 * 6
    X2, y2, w2 = _data(C=3, d=2)
    tl = TwoLayerMeanField(20, 2, 3)
    t2 = layerwise_collapse(tl, (X2, y2, w2))
    _same(t2.rows[0].metrics, neural_collapse(tl.features(X2), y2, classifier=tl.classifier.weight,
                                              weights=w2, strict=False))


def test_layerwise_particles_and_dead_layer():
    X, y, w = _data(C=3, d=2)
    P = Particles.gaussian(30, 2, 3, seed=1)
    t = layerwise_collapse(P, (X, y, w), backend="dense")
    assert [r.name for r in t] == ["hidden", "output"]
    _same(t.rows[0].metrics, particle_neural_collapse(P, (X, y, w), backend="dense"))
    _same(t.rows[1].metrics, neural_collapse(P.predict(X)[0], y, weights=w))
    model = DeepHomogeneousMLP(2, 6, 3, 3, dtype=f64)
    with torch.no_grad():
        model.hidden[0].weight.zero_()                # dead features: None with reasons, no raise
    rows = layerwise_collapse(model, (X, y)).rows
    assert rows[0].metrics.rank_means == 0 and "coincide" in rows[0].metrics.reasons["nc1"]


def test_rank_helpers():
    s = torch.tensor([4.0, 2.0, 2.0, 1e-9], dtype=f64)
    assert numerical_rank(s, 1e-6) == 3 and numerical_rank(torch.zeros(3), 0.1) == 0
    p = torch.tensor([0.5, 0.25, 0.25], dtype=f64)
    assert abs(effective_rank(s) - math.exp(-(p * p.log()).sum())) < 1e-8
    assert abs(effective_rank(torch.ones(5)) - 5) < 1e-12 and effective_rank(torch.zeros(2)) is None


def test_training_row_with_rank_deficient_means():
    """C - 1 > feature width: the training row keeps NaN NC fields and the flag, plus the new measures."""
    from meanfield.data import Samples
    from meanfield.deep.train import TrainConfig, evaluate
    X, y, _ = _data(n=32, d=4, C=4)
    row = evaluate(DeepHomogeneousMLP(4, 2, 2, 4, dtype=f64), Samples.from_masses(X, y, dtype=f64),
                   TrainConfig(), metrics=True)
    assert row["nc_degenerate"] == 1.0 and math.isnan(row["nc1"]) and math.isnan(row["nc3"])
    assert row["nc1_trace"] > 0 and row["rank_means"] <= 2
