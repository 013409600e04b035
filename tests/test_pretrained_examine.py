"""Examining the disagreements of the geometric rule (meanfield.atlas.pretrained.examine): the
classification of a longer rerun on hand-made numbers, a real rerun of a hand-made disagreement
(written to examine.csv, resumed without rerunning), the theory line read at the panel's grid
values, and the backbone's file cache (the same weights as training)."""

import csv
import math

import pytest
import torch

from meanfield.atlas.pretrained import CLASSES, PRETRAINED, _risk_change, classify, examine


@pytest.mark.parametrize("pred,before,after,risk,expected", [
    (True, 0.30, 0.01, 0.0, "flips"),                 # reaches collapse: was not converged
    (False, 0.01, 0.20, 0.0, "flips"),
    (True, 0.30, 0.06, 0.0, "borderline"),            # within x1.5 of 0.05
    (False, 0.01, 0.04, 0.0, "borderline"),
    (True, 0.50, 0.30, 0.0, "moving_toward"),         # -40 %: toward collapse
    (False, 0.01, 0.012, 0.0, "wrong_converged"),     # < 20 %, risk settled
    (True, 0.30, 0.44, 0.0, "wrong_moving_away"),     # +32 % away from collapse
    (False, 0.03, 0.015, 0.0, "wrong_moving_away"),   # deeper into collapse
    (True, 0.30, 0.32, 0.0, "wrong_converged"),
    (True, 0.30, 0.32, 0.05, "wrong_risk_moving"),
])
def test_classify_by_hand(pred, before, after, risk, expected):
    assert classify(pred, before, after, risk) == expected
    assert expected in CLASSES


@pytest.mark.parametrize("before,after", [(math.nan, 0.1), (0.1, -1.0), (0.1, None)])
def test_classify_refuses_bad_statistics(before, after):
    with pytest.raises(ValueError, match="finite statistic"):
        classify(True, before, after, 0.0)


def test_risk_change_over_the_last_quarter():
    rows = [{"t": t, "objective": 1.0 + (t >= 75) * 0.5, "grad_norm": 0.1 * t} for t in (0, 50, 75, 100)]
    rc, gn = _risk_change(rows)
    assert rc == pytest.approx(0.0) and gn == pytest.approx(10.0)   # 1.5 at t=75 and t=100
    rows[-1]["objective"] = 3.0
    assert _risk_change(rows)[0] == pytest.approx(0.5)             # |3 - 1.5| / 3
    assert math.isnan(_risk_change([{"t": 1.0, "risk": 2.0}])[1])  # no gradient norm (mean field)


def test_examine_reruns_each_disagreement_once(tmp_path, monkeypatch):
    """A hand-made sweep with one disagreement: examine reruns it (small size, 2x) and writes
    examine.csv; a second call reads it back and reruns nothing."""
    from meanfield.record import write_history
    p = next(q for q in PRETRAINED.panels if q.key == "digits_w10_relu")
    rows = [{"id": "a", "seed": 0, "status": "ok", "data.layer": 1, "flow.lam": 1e-3,
             "predicted_collapse": True, "output_statistic": 0.9, "output_collapsed": False,
             "activation_only_prediction": False, "accuracy": 0.5, "risk": 1.0},
            {"id": "b", "seed": 1, "status": "ok", "data.layer": 1, "flow.lam": 1e-3,
             "predicted_collapse": False, "output_statistic": 0.9, "output_collapsed": False,
             "activation_only_prediction": False, "accuracy": 0.5, "risk": 1.0}]
    (tmp_path / p.key).mkdir()
    write_history(tmp_path / p.key / "results.csv", rows)
    v = examine(tmp_path, factor=2, size="small")
    assert v["examined"] == 1 and sum(v["classes"].values()) == 1
    with (tmp_path / "examine.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 1 and table[0]["class"] in CLASSES and float(table[0]["seed"]) == 0
    again = float(table[0]["longer_statistic"])
    assert math.isfinite(again) and again >= 0
    assert "examined 1 of 1" in (tmp_path / "validation.md").read_text().lower()
    monkeypatch.setattr("meanfield.experiments.get_experiment",
                        lambda name: pytest.fail("reran an examined disagreement"))
    assert examine(tmp_path, factor=2, size="small")["examined"] == 1


def test_epochs_line_is_read_at_the_grid_values():
    from meanfield.experiments.pretrained_head import GeometricLine
    line = GeometricLine("relu", snap={"data.epochs": (0, 3, 60)}, source="digits")
    assert line.spec({"data.layer": 1.2, "data.epochs": 40.0}).kwargs["epochs"] == 60
    assert line.spec({"data.layer": 1.2, "data.epochs": 1.0}).kwargs["epochs"] == 0
    assert GeometricLine("relu").spec({"data.epochs": 40.0}).kwargs["epochs"] == 40


def test_backbone_file_cache_gives_the_trained_weights(tmp_path, monkeypatch):
    from meanfield.data import features as F
    monkeypatch.setenv("MEANFIELD_CACHE_DIR", str(tmp_path))
    key = F._key(per_class=4, epochs=2, width=(6, 3))
    F._backbone_cached.cache_clear()
    net, _ = F._backbone_cached(key)
    path = F._disk_path(key)
    assert path.parent.parent == tmp_path and path.is_file()
    F._backbone_cached.cache_clear()
    loaded, _ = F._backbone_cached(key)                         # read back, not retrained
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert F._disk_path(F._key(per_class=4, folder="/data/mnist")) is None   # a user's folder
    monkeypatch.setenv("MEANFIELD_BACKBONE_CACHE", "0")
    assert F._disk_path(key) is None
    F._backbone_cached.cache_clear()


def test_a_diverging_rerun_is_retried_at_half_the_step_then_alone():
    from meanfield.atlas.pretrained import _rerun
    from meanfield.divergence import DivergenceError
    from meanfield.experiments import get_experiment
    p = next(q for q in PRETRAINED.panels if q.key == "digits_meanfield_tanh")
    real = get_experiment("pretrained_head")
    calls = []

    class Fake:                      # diverges unless dt <= 0.25 (lr <= 5e-3); seed 1 always
        config = real.config

        @staticmethod
        def run_batch(cfgs, seeds, ctx):
            calls.append((len(cfgs), cfgs[0].flow.dt, cfgs[0].train.lr))
            if cfgs[0].flow.dt > 0.25 or 1 in seeds:
                raise DivergenceError("diverged")
            return ["ok"] * len(cfgs)

    chunk = [{"layer": 1, "lam": 1e-3, "y": 1e-3, "seed": s} for s in (0, 1)]
    res, dt = _rerun(Fake, p, chunk, "default", 4)
    assert res == ["ok", None] and dt == 0.5                        # the step factor
    assert calls == [(2, 0.5, 1e-2), (2, 0.25, 5e-3), (1, 0.25, 5e-3), (1, 0.25, 5e-3)]
    res, dt = _rerun(Fake, p, chunk[:1], "default", 4)
    assert res == ["ok"] and dt == 0.5


def test_a_diverging_mean_field_head_is_rerun_at_half_the_step(monkeypatch):
    from meanfield.divergence import DivergenceError
    from meanfield.experiments import collapse, pretrained_head as ph
    from meanfield.experiments.registry import ExperimentResult, RunContext
    from meanfield.study.experiment import resolve_config
    seen = []

    def fake(cfgs, seeds, ctx, keys, extra=None):
        seen.append((cfgs[0].flow.dt, ctx.out))
        if cfgs[0].flow.dt > 0.3:
            raise DivergenceError("diverged")
        return [ExperimentResult({}) for _ in cfgs]

    monkeypatch.setattr(collapse, "run_batch_with", fake)
    exp = ph.EXPERIMENT
    mf = [resolve_config(exp, {"flow.dt": 0.5, "flow.lam": lam}) for lam in (1e-3, 1e-2)]
    out = ph.run_batch(mf, [0, 0], RunContext())
    assert [r.summary["flow_dt_used"] for r in out] == [0.25, 0.25]
    assert seen == [(0.5, None), (0.25, None)]
    finite = [resolve_config(exp, {"model": "two_layer", "flow.dt": 0.5})]
    with pytest.raises(DivergenceError):                       # a finite head is not retried
        ph.run_batch(finite, [0], RunContext())
