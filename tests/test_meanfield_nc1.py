"""The meanfield_nc1 experiment (docs/science.md §6.4) and its atlas entry at size small."""

import json
import math

import pytest
import torch

from meanfield.experiments.meanfield_nc1 import EXPERIMENT, MeanfieldNC1Config, samples
from meanfield.study.experiment import RunContext, get_experiment


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from meanfield.study.rundir import run_experiment
    out = tmp_path_factory.mktemp("nc1") / "run"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_experiment("meanfield_nc1", dict(EXPERIMENT.small), out=out, progress=False)
    finally:
        torch.set_num_threads(old)
    return res, out


def test_registered_with_its_science():
    exp = get_experiment("meanfield_nc1")
    sc = exp.science
    assert sc.statistic == "nc1_final" and sc.threshold == 0.05 and sc.theory is None
    assert "2501.19104" in sc.source and "§6.4" in sc.source


def test_small_run_collapses_along_the_flow_and_the_bound_holds(small_run):
    res, out = small_run
    s = res.summary
    assert s["runs"] == 2 and not any(k.endswith("_agrees") for k in s)
    assert 0 < s["bound_ratio_max"] <= 1.0                 # within <= bound at every record
    for m in (16, 48):
        rows = [r for r in res.history if r["m"] == m]
        first, last = rows[0], rows[-1]
        assert first["t"] == 0.0 and last["t"] == pytest.approx(20.0)
        assert last["loss"] < 0.2 * first["loss"]          # the flow fits
        assert last["nc1_tr"] < 0.5 * first["nc1_tr"]      # and NC1 falls with it
        totals = [r["total"] for r in rows]
        assert all(b <= a for a, b in zip(totals, totals[1:]))
        ratio = last["nc1_tr"] / (last["loss"] + last["grad"])
        assert s[f"ratio_gaussian_mixture_m{m}"] == pytest.approx(ratio, rel=1e-12)
    assert s["ratio_max"] >= s["ratio_end"] > 0
    assert s["nc1_final"] == max(s["nc1_gaussian_mixture_m16"], s["nc1_gaussian_mixture_m48"])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["nc1_final"] == pytest.approx(s["nc1_final"])
    assert (out / "nc1_vs_loss_grad.png").stat().st_size > 10_000


def test_package_nc1_and_trace_nc1_both_recorded(small_run):
    res, _ = small_run
    for r in res.history:
        assert math.isfinite(r["nc1"]) and math.isfinite(r["nc1_tr"]) and r["nc1"] >= 0


def test_samples_are_rescaled_and_balanced():
    s = samples("gaussian_mixture", 3, 5, seed=1)
    assert s.n == 15 and s.num_classes == 3 and s.d == 5
    assert float((s.p[:, None] * s.X ** 2).sum()) == pytest.approx(1.0, rel=1e-12)
    assert torch.bincount(s.y).tolist() == [5, 5, 5]


@pytest.mark.parametrize("kw, match", [
    ({"datasets": ("cifar100",)}, "unknown data set"),
    ({"datasets": ()}, "datasets is empty"),
    ({"widths": (0,)}, "widths"),
    ({"classes": 1}, "classes"),
    ({"p": 1, "classes": 4}, "raise p"),
    ({"per_class": 1}, "per_class"),
])
def test_bad_config_names_the_problem(kw, match):
    cfg = MeanfieldNC1Config(**kw)
    with pytest.raises(ValueError, match=match):
        EXPERIMENT.run(cfg, RunContext())


def test_atlas_entry_declares_statistic_threshold_and_no_line():
    from meanfield.atlas import get_atlas, list_atlas
    assert "meanfield_nc1" in list_atlas()
    e = get_atlas("meanfield_nc1")
    assert [p.key for p in e.panels] == ["gaussian_mixture", "digits", "mnist1d"]
    for p in e.panels:
        assert p.statistic == "nc1_final" and p.cutoff == 0.05 and p.line is None
        assert p.fixed["default"]["datasets"] == (p.key,)
    assert "no line" in e.theory_text


@pytest.mark.slow
def test_atlas_small_runs_and_draws(tmp_path):
    from meanfield.atlas import run_atlas
    page = run_atlas(tmp_path, size="small", only=["meanfield_nc1"], backend="dense",
                     width_limit=False)
    assert page.exists()
    pngs = list((tmp_path / "meanfield_nc1").rglob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)
