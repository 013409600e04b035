"""The generic collapse experiment: the same columns for every model, numbers recomputed here."""

import math

import numpy as np
import pytest
import torch

from meanfield.experiments import get_experiment, resolve_config, run_experiment
from meanfield.plotting import CLASS_COLOURS

TINY = {"data": "moons", "data.noise": 0.1, "n": 40, "flow.lam": 1e-2, "flow.t_end": 2.0,
        "model.width": 8, "model.depth": 3, "model.m": 30, "train.epochs": 30}
MODELS = ("meanfield", "two_layer", "deep", "mlp")


def _overrides(model):
    params = {"meanfield": ("m",), "two_layer": ("width",), "deep": ("width", "depth"),
              "mlp": ("width", "depth")}[model]
    ov = {k: v for k, v in TINY.items() if not k.startswith("model.")}
    ov["model"] = model
    ov.update({f"model.{p}": TINY[f"model.{p}"] for p in params})
    return ov


def _nc1(h, y, p):
    """Tr(Sigma_W Sigma_B^+) / C, written out with numpy (docs/science.md §1)."""
    h, y, p = np.asarray(h, float), np.asarray(y), np.asarray(p, float) / np.sum(p)
    C = int(y.max()) + 1
    mus = [(p[y == c, None] * h[y == c]).sum(0) / p[y == c].sum() for c in range(C)]
    mu_g = np.mean(mus, 0)
    sb = sum(np.outer(m - mu_g, m - mu_g) for m in mus) / C
    sw = sum(p[j] * np.outer(h[j] - mus[y[j]], h[j] - mus[y[j]]) for j in range(len(y)))
    return float(np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / C)


@pytest.fixture(scope="module")
def results():
    return {m: run_experiment("collapse", _overrides(m), write=False) for m in MODELS}


def test_same_columns_for_every_model(results):
    cols = {m: set(r.summary) for m, r in results.items()}
    assert all(c == cols["meanfield"] for c in cols.values()), cols
    for k in ("spread", "spread_rel", "nc1_out", "margin", "accuracy", "nc1", "nc3", "nc4",
              "feature_spread", "risk", "loss", "steps", "horizon", "statistic", "collapsed"):
        assert k in cols["meanfield"]
    for m, r in results.items():
        s = r.summary
        assert s["statistic"] == s["nc1"]                      # lambda > 0: bounded regime
        assert s["collapsed"] == (s["nc1"] < 0.05)
        assert all(isinstance(row["system"], int) for row in r.history), m
    assert results["meanfield"].summary["horizon"] == pytest.approx(2.0)
    assert results["deep"].summary["horizon"] == 30


@pytest.mark.parametrize("model", MODELS)
def test_statistics_recomputed_independently(results, model):
    r = results[model]
    s, net, data = r.summary, r.extra["model"], r.extra["samples"]
    if model == "meanfield":
        f = net.predict(data.X, backend="dense")[0, :, 0]
        h = net.features(data.X)[0] / math.sqrt(net.m)
    else:
        X = data.X if model != "deep" else torch.cat([data.X, torch.ones_like(data.X[:, :1])], 1)
        with torch.no_grad():
            net.eval()
            h = net.features(X)
            f = net.classifier(h)[:, 0]
    f, y, p = f.detach().double(), data.y, data.p.double()
    spread = max(float(f[y == c].max() - f[y == c].min()) for c in (0, 1))
    assert s["spread"] == pytest.approx(spread, rel=1e-9)
    acc = float(p[(f > 0).long() == y].sum())
    assert s["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert s["nc1"] == pytest.approx(_nc1(h.detach().double().numpy(), y.numpy(), p.numpy()),
                                     rel=1e-6)


def test_unbounded_regime_and_batched_weight_decays():
    exp = get_experiment("collapse")
    res = run_experiment("collapse", {**_overrides("meanfield"), "flow.lam": 0.0}, write=False)
    assert res.summary["statistic"] == res.summary["spread"]   # lambda = 0: absolute spread
    cfgs = [resolve_config(exp, {**_overrides("meanfield"), "flow.lam": lam}) for lam in (0.0, 1e-2)]
    both = exp.run_batch(cfgs, [0, 0], __import__("meanfield").experiments.RunContext())
    assert both[0].summary["spread"] == pytest.approx(res.summary["spread"], rel=1e-10)
    assert [r["system"] for r in both[1].history][0] == 1
    assert len(CLASS_COLOURS) >= 2
