"""Backbone features as a distribution, heads on them, the pretrained_head experiment and its atlas
entry: layer activations against a hand-written forward pass, weights-only loading, the rule's
prediction against the measured statistic recomputed here."""

import math

import numpy as np
import pytest
import torch

from meanfield.data import get_distribution
from meanfield.data.features import (backbone_for, layer_features, layer_samples, num_layers,
                                     train_backbone)
from meanfield.experiments import run_experiment
from meanfield.heads import HEADS, head_activation, head_overrides, head_spec
from meanfield.models import build_model
from meanfield.study.spec import ModelSpec

TINY = {"per_class": 6, "epochs": 2, "width": (8, 4)}      # a 3-layer MLP backbone, 60 digits


def _mlp(act="tanh"):
    return build_model(ModelSpec("mlp", {"width": (5, 3), "depth": 3, "activation": act}), 4, 2,
                       seed=1, dtype=torch.float64)


def test_layer_features_are_the_forward_pass_written_out():
    net = _mlp("tanh")
    X = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W1, b1 = net.hidden[0].weight, net.hidden[0].bias
    W2, b2 = net.hidden[1].weight, net.hidden[1].bias
    h1 = torch.tanh(X @ W1.T + b1)
    h2 = torch.tanh(h1 @ W2.T + b2)
    assert num_layers(net) == 3
    torch.testing.assert_close(layer_features(net, X, 0), X)
    torch.testing.assert_close(layer_features(net, X, 1), h1.detach())
    torch.testing.assert_close(layer_features(net, X, 2), h2.detach())
    torch.testing.assert_close(layer_features(net, X, 3), net(X).detach())
    torch.testing.assert_close(layer_features(net, X, 2, batch=2), h2.detach())  # batching


def test_convnet_layers_end_in_its_features_and_logits():
    net = build_model(ModelSpec("convnet", {"in_channels": 1, "channels": (2, 3), "feature_dim": 5}),
                      64, 3, seed=0, dtype=torch.float64)
    X = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    img = X.view(4, 1, 8, 8)
    net.eval()                                                 # BatchNorm: running statistics
    assert num_layers(net) == 4
    assert layer_features(net, X, 1, input_shape=(1, 8, 8)).shape == (4, 2 * 4 * 4)
    torch.testing.assert_close(layer_features(net, X, 3, input_shape=(1, 8, 8)),
                               net.features(img).detach())
    torch.testing.assert_close(layer_features(net, X, 4, input_shape=(1, 8, 8)), net(img).detach())
    assert not net.training                                    # the mode is restored


def test_features_distribution_is_exact_and_shared_across_layers():
    d2 = get_distribution("features", layer=2, **TINY)
    a, b = d2.sample(5, seed=1), d2.sample(seed=9)            # n and seed ignored: exact atoms
    torch.testing.assert_close(a.X, b.X)
    assert a.X.shape == (60, 4) and a.num_classes == 10
    assert a.p.sum().item() == pytest.approx(1.0)
    net, src = backbone_for(**TINY)
    assert num_layers(net) == 3
    # the same backbone (cached) gives layer 2; standardise='global' is one affine map
    raw = layer_features(net, src.X, 2).double()
    ref = (raw - raw.mean()) / raw.std(unbiased=False)
    torch.testing.assert_close(a.X, ref, atol=1e-5, rtol=1e-5)
    assert get_distribution("features", layer=0, **TINY).sample().X.shape == (60, 64)
    assert get_distribution("features", layer=3, **TINY).sample().X.shape == (60, 10)


def test_user_weights_load_weights_only(tmp_path):
    net, src = backbone_for(**TINY)
    path = tmp_path / "backbone.pt"
    torch.save(net.state_dict(), path)
    mine = get_distribution("features", layer=1, per_class=6, width=(8, 4),
                            backbone_file=str(path)).sample()
    ref = layer_samples(net, src, 1)
    torch.testing.assert_close(mine.X, ref.X)
    pickled = tmp_path / "object.pt"
    torch.save({"model": net}, pickled)                        # a whole module: refused, not run
    with pytest.raises(ValueError, match="weights-only"):
        get_distribution("features", layer=1, per_class=6, width=(8, 4), backbone_file=str(pickled))
    with pytest.raises(ValueError, match="do not fit"):
        get_distribution("features", layer=1, per_class=6, width=(9, 4), backbone_file=str(path))


@pytest.mark.parametrize("kwargs,match", [
    ({"layer": 4}, "layer must be an integer in 0..3"),
    ({"layer": 1.5}, "layer must be an integer"),
    ({"source": "features"}, "source must name"),
    ({"source": "no_such_data"}, "no_such_data"),
    ({"backbone": "resnet"}, "unknown backbone"),
    ({"per_class": 0}, "per_class"),
    ({"epochs": -1}, "epochs"),
    ({"backbone_file": "/nonexistent/w.pt"}, "not a file"),
])
def test_bad_features_parameters_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_distribution("features", **{**TINY, **kwargs})


def test_convnet_backbone_needs_images():
    s = get_distribution("moons").sample(20)
    with pytest.raises(ValueError, match="image"):
        train_backbone(s, "convnet")


def test_head_presets():
    assert head_spec("w1000").kwargs == {"width": 1000, "activation": "relu"}
    assert head_overrides("meanfield", activation="tanh") == {
        "model": "meanfield", "model.m": 300, "model.activation": "tanh"}
    assert head_activation(ModelSpec("deep", {"depth": 3})) == "relu"
    assert set(HEADS) >= {"meanfield", "w10", "w1000", "w10000", "deep2", "deep3"}
    with pytest.raises(ValueError, match="unknown head"):
        head_spec("w7")


SMALL = {"data.per_class": 6, "data.epochs": 2, "data.width": (8, 4), "model.m": 20,
         "flow.t_end": 4.0, "train.epochs": 10}


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, ov in (("meanfield", {"model": "meanfield"}),
                     ("w10", {k: v for k, v in head_overrides("w10", activation="tanh").items()})):
        ov = {**SMALL, **ov}
        if name != "meanfield":
            ov.pop("model.m")
        out[name] = run_experiment("pretrained_head", {**ov, "data.layer": 2}, write=False)
    return out


def _nc1(h, y, p):
    """Tr(Sigma_W Sigma_B^+) / C with numpy (docs/science.md §1), an independent oracle."""
    h, y, p = (np.asarray(v.detach().cpu() if torch.is_tensor(v) else v, float) for v in (h, y, p))
    y, p = y.astype(int), p / p.sum()
    C = int(y.max()) + 1
    mus = [(p[y == c, None] * h[y == c]).sum(0) / p[y == c].sum() for c in range(C)]
    mu_g = np.mean(mus, 0)
    sb = sum(np.outer(m - mu_g, m - mu_g) for m in mus) / C
    sw = sum(p[j] * np.outer(h[j] - mus[y[j]], h[j] - mus[y[j]]) for j in range(len(y)))
    return float(np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / C)


@pytest.mark.parametrize("head", ["meanfield", "w10"])
def test_prediction_and_measurement_recomputed(runs, head):
    from meanfield.geometry import class_geometry
    from meanfield.predictor import predict_collapse
    r = runs[head]
    s, net, data = r.summary, r.extra["model"], r.extra["samples"]
    assert s["layer"] == 2 and s["feature_dim"] == 4
    g = class_geometry(data.X.numpy(), data.y.numpy(), weights=data.p.numpy())
    act = "relu" if head == "meanfield" else "tanh"
    assert s["predicted_collapse"] == predict_collapse(g, act, "bounded").collapse
    assert s["geometry_enclosed"] == g.enclosed and s["geometry_separable"] == g.separable
    if head == "meanfield":
        f = net.predict(data.X, backend="dense")[0]
    else:
        with torch.no_grad():
            f = net(data.X.to(next(net.parameters()).dtype))
    assert s["output_statistic"] == pytest.approx(_nc1(f, data.y, data.p), rel=1e-6)
    assert s["output_statistic"] == s["nc1_out"]                    # lambda > 0: bounded
    assert s["output_collapsed"] == (s["output_statistic"] < 0.05)
    assert s["predictor_accuracy"] == float(s["predicted_collapse"] == s["output_collapsed"])
    assert s["activation_only_prediction"] == (act != "relu")


def test_pretrained_head_refuses_raw_data():
    with pytest.raises(ValueError, match="features"):
        run_experiment("pretrained_head", {"data": "moons"}, write=False)


def test_geometric_line_is_the_rule():
    from meanfield.experiments.pretrained_head import GeometricLine, geometry_of
    from meanfield.predictor import predict_collapse
    line = GeometricLine("tanh", source="digits", width=(8, 4))
    params = {"data.layer": 1.8, "data.per_class": 6.0, "data.epochs": 2.0, "flow.lam": 1e-3}
    spec = line.spec(params)
    assert spec.kwargs["layer"] == 2 and spec.kwargs["per_class"] == 6
    g, _ = geometry_of(spec)
    assert line(params) == (-1.0 if predict_collapse(g, "tanh", "bounded").collapse else 1.0)


def test_atlas_entry_declares_layer_by_weight_decay():
    from meanfield.atlas import get_atlas
    e = get_atlas("pretrained")
    assert all(p.x == "data.layer" and p.y in ("flow.lam", "data.epochs") for p in e.panels)
    assert sum(p.y == "flow.lam" for p in e.panels) >= 5          # 5 heads per source
    assert all(p.experiment == "pretrained_head" and p.is_claim for p in e.panels)
    assert {p.fixed["default"]["model"] for p in e.panels} == {"meanfield", "two_layer", "mlp"}
    widths = {p.fixed["default"].get("model.width") for p in e.panels
              if p.fixed["default"]["model"] == "two_layer"}
    assert widths == {10, 100, 1000, 10000}                       # and deep heads of depth 2, 3
    assert {p.fixed["default"].get("model.depth") for p in e.panels} >= {2, 3}


def test_validate_counts_a_hand_made_sweep(tmp_path):
    from meanfield.atlas.pretrained import PRETRAINED, validate
    from meanfield.record import write_history
    p = PRETRAINED.panels[0]
    rows = [  # predicted, measured (statistic), baseline
        {"predicted_collapse": True, "output_statistic": 0.01, "output_collapsed": True},
        {"predicted_collapse": True, "output_statistic": 0.30, "output_collapsed": False},
        {"predicted_collapse": False, "output_statistic": 0.40, "output_collapsed": False},
        {"predicted_collapse": False, "output_statistic": math.nan, "output_collapsed": False}]
    rows = [{"id": i, "seed": 0, "status": "ok", "data.layer": i, "flow.lam": 1e-3,
             "activation_only_prediction": False, "accuracy": 1.0, "risk": 0.1,
             "geometry_separable": True, "geometry_enclosed": False, "geometry_max_inside": 0.0,
             **r} for i, r in enumerate(rows)]
    (tmp_path / p.key).mkdir()
    write_history(tmp_path / p.key / "results.csv", rows)
    v = validate(tmp_path)
    assert v["rule"]["n"] == 3 and v["rule"]["undefined"] == 1
    assert v["predictor_accuracy"] == pytest.approx(2 / 3)
    assert v["baseline_accuracy"] == pytest.approx(2 / 3)     # always "no collapse"
    assert len(v["disagreements"]) == 1 and v["disagreements"][0]["layer"] == 1
    assert (tmp_path / "validation.md").exists()
    with pytest.raises(ValueError, match="no finished run"):
        validate(tmp_path / "empty")
