"""The collapse atlas: every entry runs at the small size and draws its figure; the page is computed
from the results; the per-point experiments measure what they say (closed forms where they exist)."""

import math

import pytest

from meanfield import atlas
from meanfield.atlas.stats import _crossings
from meanfield.study import get_experiment, list_experiments, resolve_config, run_experiment


@pytest.fixture(scope="module")
def small_atlas(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    page = atlas.run_atlas(out, size="small", backend="dense", width_limit=False)
    return out, page


def test_every_entry_names_registered_experiments_statistic_and_threshold():
    names = set(list_experiments())
    assert {"three_atoms", "enclosure", "activation", "deep_digits", "ufm"} <= set(atlas.list_atlas())
    for name in atlas.list_atlas():
        e = atlas.get_atlas(name)
        assert e.statistic and "collapsed" in e.statistic
        for p in e.panels:
            assert p.experiment in names
            assert math.isfinite(p.cutoff) and p.statistic
            exp = get_experiment(p.experiment)
            for size in atlas.SIZES:
                assert set(p.grid[size]) == {p.x, p.y}
                # every swept and fixed key is a parameter of the experiment's config
                resolve_config(exp, {**{k: v.split(",")[0].split(":")[0] for k, v in p.grid[size].items()},
                                     **p.fixed.get(size, {})})
    with pytest.raises(ValueError, match="valid"):
        atlas.get_atlas("nope")


def test_theory_comes_from_the_experiment_not_a_copy():
    frozen, relu = atlas.get_atlas("three_atoms").panels
    assert frozen.line is get_experiment("three_atoms").science.theory
    assert relu.line is not None and "reference only" in relu.line.label and not relu.is_claim
    assert relu.predict({"data.p1": 1.0, "data.p3": 2.0}) is None      # no claim on that panel
    assert frozen.predict({"data.p1": 1.0, "data.p3": 2.0}) is True     # gap law exactly 0
    assert frozen.predict({"data.p1": 1.0, "data.p3": 4.0}) is False
    # the enclosure reference line follows the radii the user sets (computed by LPs on samples:
    # within 0.01 of the closed form t* = (r_in - r0) / (r_in + r_out))
    enc = atlas.get_atlas("enclosure").panels[0].line
    base = {"data.r0": 0.5, "data.r_in": 1.0, "data.r_out": 1.5}
    assert enc.fn({**base, "data.t": 0.2}) == pytest.approx(0.0, abs=0.01)
    assert enc.fn({**base, "data.r0": 0.25, "data.t": 0.3}) == pytest.approx(0.0, abs=0.01)


def test_small_atlas_draws_every_figure_and_page(small_atlas):
    out, page = small_atlas
    text = (out / "atlas.md").read_text()
    for name in atlas.list_atlas():
        png = out / name / f"{name}.png"
        assert png.exists() and png.stat().st_size > 10_000, name
        assert f"{name}/{name}.png" in text
    assert page.exists() and "<img src='three_atoms/three_atoms.png'" in page.read_text()


def test_reading_is_computed_from_the_results(small_atlas):
    out, _ = small_atlas
    e = atlas.get_atlas("three_atoms")
    frozen = e.panels[0]
    st = atlas.panel_stats(frozen, atlas.panel_rows(frozen, out / "three_atoms"))
    # frozen features: the gap tends to log(p3 / 2 p1) (docs/science.md §3.2), so at p3/p1 = 0.25 and 4
    # it is far from 0 (|log 8| and |log 2|), never collapsed, and the theory side agrees
    assert st["n"] == 2 and st["collapsed"] == 0 and st["agree"] == 2
    for x, y, mean, *_ in st["cells"]:
        assert abs(mean - abs(math.log(x / 2.0))) < 0.05
    assert st["theory_x"][1.0] and abs(st["theory_x"][1.0][0] - 2.0) < 0.05
    para = atlas.reading(e, out / "three_atoms")
    assert "collapsed at 0 of 2" in para and "data.p3 = 2" in para


def test_ufm_sweep_agrees_with_the_threshold(small_atlas):
    out, _ = small_atlas
    p = atlas.get_atlas("ufm").panels[0]
    rows = atlas.panel_rows(p, out / "ufm")
    assert rows and all(r["normW_agrees"] for r in rows)
    st = atlas.panel_stats(p, rows)
    assert st["agree"] == st["compared"] == 4
    # the only trivial optimum is the corner beyond K sqrt(n lW lH) = 1
    trivial = [(c[0], c[1]) for c in st["cells"] if not c[5]]
    assert trivial == [(0.5, 0.5)]


def test_crossings_interpolate_in_log_x():
    xs = _crossings([(1.0, 0.0), (100.0, 2.0)], 1.0)
    assert xs == [pytest.approx(10.0)]
    assert _crossings([(0.0, 0.0), (1.0, 2.0)], 0.5) == [pytest.approx(0.25)]


def test_enclosure_models_and_homogeneous_input():
    base = {"n": 40, "data.t": 0.0, "flow.lam": 1e-2}
    mf = run_experiment("enclosure", {**base, "model.m": 60, "flow.t_end": 5.0}, write=False,
                        backend="dense").summary
    deep = run_experiment("enclosure", {**base, "model": "deep", "model.width": 8, "model.depth": 3,
                                        "train.epochs": 150}, write=False).summary
    for s in (mf, deep):
        assert 0.0 <= s["nc1"] < 10 and s["spread"] >= 0 and s["hull_fraction"] == 0.0
    assert deep["accuracy"] > 0.9   # the constant input lets the homogeneous net separate
    s = run_experiment("enclosure", {**base, "data.t": 1.0, "model.m": 20, "flow.t_end": 0.5},
                       write=False, backend="dense").summary
    assert s["nonconvex"] and abs(s["hull_fraction"] - 1.0) < 1e-12
    with pytest.raises(ValueError, match="valid"):
        run_experiment("enclosure", {"model": "cnn"}, write=False)


def test_ufm_collapse_matches_closed_form_on_both_sides():
    for lw, trivial in ((0.02, False), (0.5, True)):
        s = run_experiment("ufm_collapse", {"lam_w": lw, "lam_h": 0.05, "tol_grad": 1e-8,
                                            "max_iter": 2000}, write=False).summary
        assert s["trivial"] is trivial and s["collapses_theory"] is (not trivial)
        assert s["normW_agrees"]
        if not trivial:
            assert s["nc1"] < 1e-8 and s["nc2_etf_w"] < 1e-5
        else:
            assert math.isnan(s["nc1"])


def test_default_size_spends_its_budget_on_resolution():
    """Every panel of every entry at the default size: >= 12 values on one axis, >= 6 on the
    other, >= 3 seeds (issue 16's resolution rule)."""
    from meanfield.sweep import parse_grid
    # entries whose grid is a set of discrete cases, not a continuous axis (stated here)
    discrete = {"pretrained": "backbone layer x weight decay, the grid the pretrained-heads study "
                              "states: 4+ layers x 3 decays x 3 seeds per head and data set"}
    bad = []
    for name in [n for n in atlas.list_atlas() if n not in discrete]:
        e = atlas.get_atlas(name)
        if e.seeds["default"] < 3:
            bad.append(f"{name}: {e.seeds['default']} seeds")
        for p in e.panels:
            exp = get_experiment(p.experiment)
            n = sorted(len(parse_grid(exp, k, v).values) for k, v in p.grid["default"].items())
            if n[0] < 6 or n[-1] < 12:
                bad.append(f"{name}/{p.key}: grid {n}")
    assert not bad, bad


def test_only_width_limit_runs_no_entry(tmp_path, monkeypatch):
    """`meanfield atlas --only width_limit` runs the width-limit experiment alone, not every entry."""
    ran = []
    monkeypatch.setattr(atlas, "run_entry", lambda e, *a, **k: ran.append(e.name) or {})
    monkeypatch.setattr("meanfield.study.rundir.run_experiment",
                        lambda name, *a, **k: ran.append(name))
    assert atlas.atlas_command(out=tmp_path, size="small", only="width_limit") == 0
    assert ran == ["width_limit"]


def test_hull_line_reads_only_the_distributions_own_columns():
    """The phase diagram calls the line with every config column: only the distribution's numeric
    parameters reach the boundary (other columns, strings and the ignored sampling switch do not)."""
    enc = atlas.get_atlas("enclosure").panels[0].line.fn
    base = {"data.r0": 0.5, "data.r_in": 1.0, "data.r_out": 1.5, "data.t": 0.3}
    noisy = {**base, "model.m": 300, "flow.lam": 0.1, "data.name": "enclosure", "data.grid": True,
             "r0": 0.1, "seed": 3}
    assert enc.others(noisy) == enc.others(base) == {"r0": 0.5, "r_in": 1.0, "r_out": 1.5}
    assert enc(noisy) == enc(base) == pytest.approx(0.1, abs=0.01)   # t - t*, t* = 0.2


def test_small_sizes_run_on_one_torch_thread(tmp_path, monkeypatch):
    """Small problems on one torch thread (two spin-wait on a loaded CPU): every sweep of the small
    atlas and every finite enclosure net; the default size leaves the count to the experiments."""
    import torch

    from meanfield.experiments import collapse
    seen = []

    class Res:
        computed = skipped = failed = 0

    def fake_sweep(*a, **k):
        seen.append(torch.get_num_threads())
        return Res()

    monkeypatch.setattr("meanfield.sweep.sweep", fake_sweep)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        e = atlas.get_atlas("ufm")
        atlas.run_entry(e, tmp_path / "s", size="small")
        atlas.run_entry(e, tmp_path / "d", size="default")
        assert seen == [1, 2] and torch.get_num_threads() == 2
        inside = []
        monkeypatch.setattr(collapse, "run_batch_with",
                            lambda *a, **k: inside.append(torch.get_num_threads()) or [])
        from meanfield.experiments import enclosure
        from meanfield.study import RunContext
        for model in ("two_layer", "meanfield"):
            cfg = resolve_config(get_experiment("enclosure"), {"model": model})
            enclosure.run_batch([cfg], [0], RunContext())
        assert inside == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_panels_with_the_same_runs_share_one_sweep():
    """Two panels of an entry that sweep the same experiment over the same grid with the same fixed
    parameters read one sweep (one key): a second key would train every net again."""
    dup = []
    for name in atlas.list_atlas():
        e = atlas.get_atlas(name)
        for i, p in enumerate(e.panels):
            for q in e.panels[i + 1:]:
                same = (p.experiment, dict(p.grid), dict(p.fixed)) == (q.experiment, dict(q.grid), dict(q.fixed))
                if same and p.key != q.key:
                    dup.append(f"{name}: {p.key} / {q.key}")
    assert not dup, dup
    assert {p.key for p in atlas.get_atlas("deep_digits").panels} == {"sweep"}


@pytest.mark.parametrize("sign,says", [(-1.0, "predicts collapse everywhere"),
                                       (1.0, "predicts no collapse everywhere")])
def test_a_theory_without_a_boundary_in_the_panel_says_what_it_predicts(sign, says):
    """A rule of one sign over the whole panel draws no line; the legend must say what it predicts
    (a panel with neither line nor word reads as 'no theory')."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from meanfield.phase import plot_phase
    from meanfield.study import Theory
    rows = [{"a": a, "b": b, "stat": 0.1 * a + b, "seed": 0} for a in (1.0, 2.0, 3.0)
            for b in (0.1, 0.2)]
    ax = Figure().subplots()
    th = Theory(lambda p: sign * (1.0 + p["a"]), ("a",), "rule")
    plot_phase(rows, "a", "b", "stat", threshold=0.3, theory=th, ax=ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(says in t for t in labels), labels


def test_undefined_cells_are_grey_and_named_in_the_legend():
    """A cell whose statistic is NaN at every seed is not a failure and must not read as 'at the
    threshold' (the diverging map is white there): grey face, one legend line with the count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.colors as mcolors
    from matplotlib.figure import Figure
    from meanfield.phase import UNDEFINED_FACE, plot_phase
    rows = [{"a": a, "b": b, "stat": float("nan") if (a, b) == (1.0, 0.1) else 0.1 * a + b,
             "seed": s} for a in (1.0, 2.0, 3.0) for b in (0.1, 0.2) for s in (0, 1)]
    rows.append({"a": 3.0, "b": 0.2, "stat": None, "seed": 2, "status": "failed"})
    ax = Figure().subplots()
    plot_phase(rows, "a", "b", "stat", threshold=0.3, ax=ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    grey = [t for t in labels if t.startswith("grey")]
    assert grey == ["grey: stat undefined (not finite) at every seed (1 cell)"], labels
    assert mcolors.to_hex(ax.get_facecolor()) == mcolors.to_hex(UNDEFINED_FACE)
    # all defined: no grey line, the face stays white
    ax2 = Figure().subplots()
    plot_phase([dict(r, stat=0.5) if r["stat"] != r["stat"] else r for r in rows[:-1]], "a", "b",
               "stat", threshold=0.3, ax=ax2)
    assert not [t.get_text() for t in ax2.get_legend().get_texts() if t.get_text().startswith("grey")]
    assert mcolors.to_hex(ax2.get_facecolor()) == "#ffffff"


def test_log_grid_ticks_are_short_and_do_not_crowd():
    """12 log-spaced grid values (the default atlas resolution) were each labelled with six digits
    ("0.342508"), overlapping; now three significant digits, every other value labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure
    from meanfield.phase import plot_phase
    xs = [float(v) for v in np.geomspace(0.25, 8, 12)]
    rows = [{"a": a, "b": b, "stat": a * b, "seed": 0} for a in xs for b in (1.0, 2.0)]
    fig = Figure()
    ax = fig.subplots()
    plot_phase(rows, "a", "b", "stat", threshold=1.0, ax=ax, logx=True)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    shown = [t for t in labels if t]
    assert len(labels) == 12 and 3 <= len(shown) <= 6, labels
    assert all(len(t) <= 5 for t in shown), shown
    assert shown[0] == "0.25"


def test_measured_boundary_is_solid_at_a_negative_threshold():
    """matplotlib dashes negative contour levels by default, so a measured boundary at -1e-3 (the
    deep_ufm panels) looked like the dashed theory line; it must stay solid."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from meanfield.phase import plot_phase
    rows = [{"a": a, "b": b, "stat": a - 2.0 + 0.1 * b, "seed": 0} for a in (1.0, 2.0, 3.0)
            for b in (1.0, 2.0, 3.0)]
    ax = Figure().subplots()
    plot_phase(rows, "a", "b", "stat", threshold=-1e-3, collapsed_below=False, ax=ax)
    (cs,) = [c for c in ax.collections if hasattr(c, "levels")]
    assert list(cs.levels) == [-1e-3]
    assert all(ls[1] is None for ls in cs.get_linestyles()), cs.get_linestyles()
