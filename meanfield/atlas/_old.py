"""The collapse atlas (issue 10): named phase-diagram sweeps, their runner and the atlas page.

Each :class:`AtlasEntry` is one question ("does the non-convex class collapse?") drawn as one
figure of one or more :class:`Panel` s; each panel is a sweep of a registered experiment
(:func:`meanfield.sweep.sweep`, resumable) over two parameters, coloured by the mean over seeds of
the collapse statistic of its regime (science.md §1) with the threshold called "collapsed", the
seed spread hatched, and the theory (or reference) boundary dashed. Sizes: ``small`` (tests),
``default`` (each entry under 15 minutes on a 2-core CPU), ``large`` (a GPU).

``python -m meanfield.atlas --out DIR [--size small|default|large] [--only NAME,...]`` runs or
resumes every entry into ``DIR/<name>/<panel>/``, runs ``width_limit`` into ``DIR/width_limit``
if absent, and writes ``DIR/atlas.html`` and ``DIR/atlas.md``: every figure and one paragraph per
entry computed from the results (collapsed cells, the measured boundary, the theory line, their
agreement). matplotlib is imported inside the plotting functions.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from .phase import Theory

__all__ = ["Panel", "AtlasEntry", "ATLAS", "SIZES", "list_atlas", "get_atlas", "run_atlas",
           "panel_stats", "reading", "plot_entry", "write_page", "main"]

SIZES = ("small", "default", "large")


@dataclass(frozen=True)
class Panel:
    """One sweep drawn as one heat map.

    Attributes:
        key: sub-directory of the entry (panels with the same key share a sweep).
        experiment: registered experiment name.
        title: panel title.
        x, y: swept parameters on the axes; xlabel, ylabel: with units.
        metric: summary column (``|name|`` for its absolute value); label: what it is.
        threshold: the value called "collapsed"; collapsed_below: collapsed when below it.
        grid: size -> {parameter: "v1,v2" | "start:stop:num[:log]"}.
        fixed: size -> parameters set for every point.
        theory: the theory (or reference) boundary, zero set of ``theory.fn``.
        predict: params -> True where the theory says "collapsed" (for the agreement count).
        vmax: top of the colour scale (larger values saturate; None: the largest value).
    """

    key: str
    experiment: str
    title: str
    x: str
    y: str
    xlabel: str
    ylabel: str
    metric: str
    label: str
    threshold: float
    grid: Mapping[str, Mapping[str, str]]
    fixed: Mapping[str, Mapping] = field(default_factory=dict)
    collapsed_below: bool = True
    theory: Optional[Theory] = None
    predict: Optional[Callable[[Mapping], bool]] = None
    logx: bool = False
    logy: bool = False
    vmax: Optional[float] = None


@dataclass(frozen=True)
class AtlasEntry:
    """A named atlas sweep: one figure, one reading paragraph.

    Attributes:
        name, title: identifier and figure title.
        statistic: the regime, the statistic and the threshold, in words.
        theory_text: what the dashed line is (a theorem, or a reference only).
        panels: the heat maps.
        seeds: size -> seeds per grid point.
    """

    name: str
    title: str
    statistic: str
    theory_text: str
    panels: tuple
    seeds: Mapping[str, int]


def _s(small, default, large) -> dict:
    return {"small": small, "default": default, "large": large}


# ----------------------------------------------------------------------------- definitions
def _gap_law(p):
    return math.log(p["p3"] / (2.0 * p["p1"]))


_THREE_THEORY = Theory(_gap_law, ("p1", "p3"), "theory (frozen features): p₃ = 2p₁")
_THREE_REF = Theory(_gap_law, ("p1", "p3"), "frozen-feature law p₃ = 2p₁ (reference only)")
_T_HULL = 0.2   # meanfield.experiments.enclosure.T_HULL (not imported: no work at import time)
_HULL = Theory(lambda p: p["t"] - _T_HULL, ("t",),
               f"reference: class −1 enters the hull of class +1 (t = {_T_HULL:g})")


def _ufm_fn(p):
    return p["K"] * math.sqrt(p["n"] * p["lam_w"] * p["lam_h"]) - 1.0


_UFM = Theory(_ufm_fn, ("K", "n", "lam_w", "lam_h"), "theory: K·√(n λ_W λ_H) = 1")

_P3 = _s("0.25,4", "0.25:8:6:log", "0.125:16:15:log")
_P2 = _s("1", "0.5,1,2", "0.25:4:7:log")
_REL_FIX = _s({"m": 50, "t_end": 100.0, "ds": 0.01, "snapshot": 1},
              {"m": 100, "t_end": 1e4, "ds": 0.01, "snapshot": 1},
              {"m": 1000, "t_end": 1e6, "snapshot": 1})
_T = _s("0,1", "0:1:5", "0:1:11")
_LAM = _s("0.001,0.1", "1e-3:1e-1:4:log", "1e-4:1:13:log")
_ENC_MF = _s({"m": 100, "n": 60, "t_end": 10.0, "dt": 0.1}, {}, {})
_ENC_NET = _s({"width": 16, "n": 60, "epochs": 150}, {"epochs": 1000}, {})
_ENC_THR = 0.05


def _enc_panel(key, title, fixed_extra: Mapping, base=None):
    base = base or (_ENC_MF if fixed_extra.get("model", "meanfield") == "meanfield" else _ENC_NET)
    return Panel(key, "enclosure", title, "t", "lam",
                 "geometry t (0: convex, separable; 1: class −1 enclosed)",
                 "weight decay λ (log scale)", "nc1", "NC1 of the penultimate features",
                 _ENC_THR, {k: {"t": _T[k], "lam": _LAM[k]} for k in SIZES},
                 {k: dict(v, **fixed_extra) for k, v in base.items()}, True, _HULL,
                 lambda p: p["t"] <= _T_HULL, logy=True,
                 vmax=1.0)  # NC1 >= 1: no collapse at all; trivial nets reach 300 and wash out the map


ATLAS: dict[str, AtlasEntry] = {}


def _add(e: AtlasEntry) -> None:
    ATLAS[e.name] = e


_add(AtlasEntry(
    "three_atoms", "Three atoms −1, 0, 1 (class {−1, 1} vs {0}), exponential loss, λ = 0",
    "unbounded regime (exponential loss, no weight decay): the absolute within-class spread "
    "|f(1) − f(−1)| of class {−1, 1} at the final time; collapsed when below 0.05",
    "the dashed line p₃ = 2p₁ is the theorem for frozen flat features (science.md §3.2); on the "
    "trainable-ReLU panel it is drawn as a reference only (no theory is claimed there)",
    (Panel("frozen", "three_atoms", "frozen smoothstep features (t = 10⁶)", "p3", "p2",
           "p₃/p₁ (mass of atom +1 over atom −1; log scale)", "p₂/p₁ (mass of atom 0)",
           "|gap|", "|f(1) − f(−1)|", 0.05, _s({"p3": _P3["small"], "p2": _P2["small"]},
                                                 {"p3": _P3["default"], "p2": _P2["default"]},
                                                 {"p3": _P3["large"], "p2": _P2["large"]}),
           _s({"m": 60, "t_end": 1e4}, {}, {"m": 3000}), True, _THREE_THEORY,
           lambda p: abs(_gap_law(p)) < 0.05, logx=True),
     Panel("relu", "three_atoms_relu", "trainable ReLU, λ = 0", "p3", "p2",
           "p₃/p₁ (mass of atom +1 over atom −1; log scale)", "p₂/p₁ (mass of atom 0)",
           "|gap_lam0|", "|f(1) − f(−1)|", 0.05, _s({"p3": _P3["small"], "p2": _P2["small"]},
                                                      {"p3": "0.25,1,2,8", "p2": "0.5,2"},
                                                      {"p3": _P3["large"], "p2": _P2["large"]}),
           _REL_FIX, True, _THREE_REF, lambda p: abs(_gap_law(p)) < 0.05, logx=True)),
    _s(1, 2, 4)))

_add(AtlasEntry(
    "enclosure", "Disc vs cut annulus (Enclosure t) against weight decay, logistic loss",
    f"bounded regime (weight decay λ > 0): NC1 of the penultimate features at the end of a fixed "
    f"training budget; collapsed when below {_ENC_THR:g} (NC1 of two classes is the within-class "
    f"variance along the class-mean axis over the squared half-distance of the means: 0.05 is a "
    f"within-class std of about 22 % of it)",
    "the dashed line is a geometric reference, not a theorem: for t > 0.2 part of class −1 lies in "
    "the convex hull of class +1 (the three-atom configuration in 2-D)",
    (_enc_panel("meanfield", "mean-field two-layer ReLU (m particles, Wasserstein flow)",
                {"model": "meanfield"}),
     _enc_panel("two_layer", "finite two-layer ReLU with biases (Adam)", {"model": "two_layer"}),
     _enc_panel("deep3", "deep homogeneous ReLU, depth 3 (input (x, 1))",
                {"model": "deep", "depth": 3}),
     _enc_panel("deep5", "deep homogeneous ReLU, depth 5 (input (x, 1))",
                {"model": "deep", "depth": 5})),
    _s(1, 2, 4)))

_add(AtlasEntry(
    "activation", "Activation against geometry: mean-field two-layer net, logistic loss",
    f"bounded regime (λ > 0): NC1 of the penultimate (hidden) features of the mean-field net; "
    f"collapsed when below {_ENC_THR:g}",
    "the dashed line is the geometric reference t = 0.2 (class −1 enters the hull of class +1)",
    tuple(_enc_panel(a, f"{a} ({kind})", {"model": "meanfield", "activation": a})
          for a, kind in (("relu", "homogeneous"), ("softplus", "smooth"), ("tanh", "smooth"),
                          ("smoothstep", "flat outside [0, 1]"))),
    _s(1, 2, 4)))

_add(AtlasEntry(
    "deep_digits", "Deep homogeneous ReLU nets on digits (8×8): NC1 and NC3 against weight decay and depth",
    "bounded regime (MSE with weight decay λ > 0): NC1 of the penultimate features (collapsed "
    "below 0.1) and NC3, the self-duality of the classifier and the centred means (collapsed "
    "below 0.3), after a fixed SGD budget",
    "no closed-form boundary: science.md §3.4 says NC needs λ > 0 at critical points, not where "
    "a finite budget gets; no line is drawn",
    tuple(Panel(key, "deep_collapse", title, "lam", "depth",
                "weight decay λ (log scale)", "depth L (weight matrices)", key, label, thr,
                _s({"lam": "1e-4,1e-2", "depth": "2,3"},
                   {"lam": "1e-4:1e-2:4:log", "depth": "2,3,4,5"},
                   {"lam": "1e-5:3e-2:8:log", "depth": "2,3,4,5,6,7"}),
                # 300 epochs: NC1 is still falling at 30 (0.2) and reaches ~0.02 at 600 for small λ
                _s({"per_class": 20, "epochs": 3, "width": 32}, {"epochs": 300},
                   {"dataset": "mnist_subset", "per_class": 500, "epochs": 600, "width": 256}),
                logx=True)
          for key, title, label, thr in (
              ("nc1", "NC1 (variability collapse)", "NC1 of the penultimate features", 0.1),
              ("nc3", "NC3 (self-duality of W and the means)", "NC3, ‖W/‖W‖ − M/‖M‖‖²", 0.3))),
    _s(1, 2, 3)))

_UFM_GRID = _s({"lam_w": "0.01,0.5", "lam_h": "0.01,0.5"},
               {"lam_w": "3e-3:1:7:log", "lam_h": "3e-3:1:7:log"},
               {"lam_w": "1e-3:1:19:log", "lam_h": "1e-3:1:19:log"})
_UFM_FIX = _s({"tol_grad": 1e-8, "max_iter": 500}, {"tol_grad": 1e-8, "max_iter": 3000},
              {"K": 10, "n": 20, "tol_grad": 1e-9})
_add(AtlasEntry(
    "ufm", "Unconstrained features model (cross-entropy, K = 4, n = 3): collapse against (λ_W, λ_H)",
    "bounded regime (weight decays > 0), global optimum by L-BFGS: the classifier norm ‖W‖_F "
    "(collapsed = a nonzero NC optimum, ‖W‖_F above 10⁻³; W = H = 0 below) and the ETF distance "
    "of W, NC2 (collapsed below 10⁻³; undefined where the optimum is W = H = 0)",
    "the dashed line K·√(n λ_W λ_H) = 1 is the theorem (Zhu et al. 2021; science.md §3.5)",
    (Panel("sweep", "ufm_collapse", "‖W‖_F at the optimum", "lam_w", "lam_h",
           "λ_W (weight decay of W; log scale)", "λ_H (weight decay of H; log scale)", "normW",
           "‖W‖_F", 1e-3, _UFM_GRID, _UFM_FIX, False, _UFM, lambda p: _ufm_fn(p) < 0, True, True),
     Panel("sweep", "ufm_collapse", "NC2: ETF distance of W (blank: W = 0)", "lam_w", "lam_h",
           "λ_W (weight decay of W; log scale)", "λ_H (weight decay of H; log scale)",
           "nc2_etf_w", "NC2 of W", 1e-3, _UFM_GRID, _UFM_FIX, True, _UFM, None, True, True)),
    _s(1, 2, 3)))


def list_atlas() -> list[str]:
    return list(ATLAS)


def get_atlas(name: str) -> AtlasEntry:
    """The atlas entry of that name (ValueError listing the valid ones)."""
    if name not in ATLAS:
        raise ValueError(f"unknown atlas sweep {name!r}; valid: {', '.join(ATLAS)}")
    return ATLAS[name]


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")


# ----------------------------------------------------------------------------- running
def run_entry(entry: AtlasEntry, out: Path, *, size: str = "default", workers: int = 1,
              device: str = "cpu", backend: str = "auto", progress: Optional[bool] = False) -> dict:
    """Run or resume every sweep of an entry into ``out/<panel.key>``; returns timing info."""
    from .sweep import sweep
    _check_size(size)
    info = {"size": size, "sweeps": {}}
    t0 = time.perf_counter()
    for p in entry.panels:
        if p.key in info["sweeps"]:
            continue
        t1 = time.perf_counter()
        res = sweep(p.experiment, dict(p.grid[size]), seeds=entry.seeds[size],
                    fixed=dict(p.fixed.get(size, {})), out=out / p.key, workers=workers,
                    device=device, backend=backend, progress=progress, plot=False)
        info["sweeps"][p.key] = {"computed": res.computed, "skipped": res.skipped,
                                 "failed": res.failed, "wall_seconds": time.perf_counter() - t1}
    info["wall_seconds"] = time.perf_counter() - t0
    return info


def run_atlas(out: str | Path, *, size: str = "default", only: Optional[Sequence[str]] = None,
              workers: int = 1, device: str = "cpu", backend: str = "auto",
              width_limit: bool = True, progress: Optional[bool] = False) -> Path:
    """Run or resume the atlas into ``out`` and write ``atlas.html`` / ``atlas.md``.

    Args:
        out: atlas directory.
        size: ``small``, ``default`` or ``large``.
        only: entry names (default all).
        workers: local processes per sweep.
        width_limit: also run ``width_limit`` into ``out/width_limit`` if it has no summary.

    Returns:
        the path of ``atlas.html``.
    """
    _check_size(size)
    out = Path(out)
    names = list(only) if only else list(ATLAS)
    entries = [get_atlas(n) for n in names]
    out.mkdir(parents=True, exist_ok=True)
    timings = _load_json(out / "timings.json")
    for e in entries:
        info = run_entry(e, out / e.name, size=size, workers=workers, device=device,
                         backend=backend, progress=progress)
        plot_entry(e, out / e.name, size=size)
        timings[e.name] = info
        _write_json(out / "timings.json", timings)
    if width_limit and not (out / "width_limit" / "summary.json").exists():
        from .experiments.registry import run_experiment
        t0 = time.perf_counter()
        run_experiment("width_limit", _WIDTH_LIMIT[size], out=out / "width_limit", device=device,
                       progress=progress)
        timings["width_limit"] = {"size": size, "wall_seconds": time.perf_counter() - t0}
        _write_json(out / "timings.json", timings)
    return write_page(out, [e.name for e in entries], timings=timings)


_WIDTH_LIMIT = _s({"widths": "10,30,100", "seeds": 4, "reference_m": 5000, "long_t": 0.2,
                   "tracking_m": 30, "steps_tested": "0.05,0.1"}, {}, {"reference_m": 400000})


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj) -> None:
    from .record import write_json
    write_json(path, obj)


# ----------------------------------------------------------------------------- statistics
def _rows(panel: Panel, d: Path) -> list[dict]:
    from .sweep import load_results
    return [r for r in load_results(d / panel.key)]


def _value(row: Mapping, metric: str) -> Optional[float]:
    from .phase import _metric
    return _metric(dict(row), metric)


def panel_stats(panel: Panel, rows: Sequence[Mapping]) -> dict:
    """Cells (mean over seeds) of a panel, which are collapsed, the measured and theory boundaries.

    Returns:
        dict with ``cells`` [(x, y, mean, std, seeds, collapsed, predicted)], ``n``, ``collapsed``,
        ``agree`` (cells where measured == predicted, or None), ``boundary`` {y: [x crossings of
        the threshold]}, ``theory_x`` {y: [x where the theory line crosses]}, ``failed``.
    """
    groups: dict = {}
    failed = 0
    for r in rows:
        if r.get("status", "ok") != "ok":
            failed += 1
            continue
        key = (float(r[panel.x]), float(r[panel.y]))
        v = _value(r, panel.metric)
        groups.setdefault(key, {"vals": [], "row": r})
        if v is not None:
            groups[key]["vals"].append(v)
    cells = []
    for (x, y), g in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        vals = g["vals"]
        mean = sum(vals) / len(vals) if vals else float("nan")
        std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
               if len(vals) > 1 else 0.0)
        ok = math.isfinite(mean)
        coll = ok and ((mean < panel.threshold) if panel.collapsed_below else (mean > panel.threshold))
        params = {k: _num(v) for k, v in g["row"].items()}
        pred = None
        if panel.predict is not None:
            try:
                pred = bool(panel.predict(params))
            except (KeyError, TypeError, ValueError):
                pred = None
        cells.append((x, y, mean, std, len(vals), coll if ok else None, pred))
    defined = [c for c in cells if c[5] is not None]
    pairs = [c for c in defined if c[6] is not None]
    stats = {"cells": cells, "n": len(defined), "undefined": len(cells) - len(defined),
             "collapsed": sum(1 for c in defined if c[5]), "failed": failed,
             "agree": sum(1 for c in pairs if c[5] == c[6]) if pairs else None, "compared": len(pairs),
             "boundary": {}, "theory_x": {}}
    ys = sorted({c[1] for c in cells})
    base = {k: _num(v) for k, v in (rows[0].items() if rows else [])}
    for y in ys:
        line = sorted((c[0], c[2]) for c in cells if c[1] == y and math.isfinite(c[2]))
        stats["boundary"][y] = _crossings(line, panel.threshold)
        if panel.theory is not None:
            xs = sorted({c[0] for c in cells})
            stats["theory_x"][y] = _theory_crossings(panel.theory, base, panel.x, panel.y, y, xs)
    return stats


def _num(v):
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _crossings(line: list, thr: float) -> list:
    """x where the piecewise-(log-)linear interpolation of (x, value) crosses thr."""
    out = []
    for (x0, v0), (x1, v1) in zip(line, line[1:]):
        if (v0 - thr) * (v1 - thr) < 0:
            s = (thr - v0) / (v1 - v0)
            if x0 > 0 and x1 > 0:
                out.append(math.exp(math.log(x0) + s * (math.log(x1) - math.log(x0))))
            else:
                out.append(x0 + s * (x1 - x0))
    return out


def _theory_crossings(th: Theory, base: dict, x: str, y: str, yv: float, xs: list) -> list:
    if len(xs) < 2:
        return []
    lo, hi = min(xs), max(xs)
    log = lo > 0 and hi / lo > 20
    n = 400
    grid = [math.exp(math.log(lo) + i / (n - 1) * (math.log(hi) - math.log(lo))) if log
            else lo + i / (n - 1) * (hi - lo) for i in range(n)]
    vals = []
    for g in grid:
        p = dict(base)
        p[x], p[y] = g, yv
        try:
            vals.append(th.fn(p))
        except (KeyError, ValueError, ZeroDivisionError, TypeError):
            vals.append(float("nan"))
    return _crossings([(g, v) for g, v in zip(grid, vals) if math.isfinite(v)], 0.0)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def reading(entry: AtlasEntry, d: Path, *, stats: Optional[list] = None) -> str:
    """The entry's paragraph, computed from its results (never hard-coded numbers)."""
    parts = [f"Statistic: {entry.statistic}. Line: {entry.theory_text}."]
    for p, st in zip(entry.panels, stats or [panel_stats(p, _rows(p, d)) for p in entry.panels]):
        cmp = "<" if p.collapsed_below else ">"
        seeds = max((c[4] for c in st["cells"]), default=0)
        txt = (f"**{p.title}** ({p.metric} {cmp} {p.threshold:g} called collapsed, mean over "
               f"{seeds} seed(s)): collapsed at {st['collapsed']} of {st['n']} grid points, not "
               f"collapsed at {st['n'] - st['collapsed']}")
        if st["undefined"]:
            txt += f", undefined (no finite value) at {st['undefined']}"
        if st["failed"]:
            txt += f", {st['failed']} run(s) failed"
        txt += ". "
        coll = [c for c in st["cells"] if c[5]]
        if coll:
            txt += (f"Collapsed points span {p.x} ∈ [{_fmt(min(c[0] for c in coll))}, "
                    f"{_fmt(max(c[0] for c in coll))}], {p.y} ∈ [{_fmt(min(c[1] for c in coll))}, "
                    f"{_fmt(max(c[1] for c in coll))}]. ")
        b = {y: xs for y, xs in st["boundary"].items() if xs}
        if b:
            txt += ("Measured boundary (the mean crosses the threshold) at " + "; ".join(
                f"{p.y} = {_fmt(y)}: {p.x} ≈ {', '.join(_fmt(x) for x in xs)}" for y, xs in b.items())
                + ". ")
        else:
            txt += "The mean does not cross the threshold along any row of the grid. "
        tx = {y: xs for y, xs in st["theory_x"].items() if xs}
        if p.theory is not None:
            if tx:
                txt += ("The dashed line crosses at " + "; ".join(
                    f"{p.y} = {_fmt(y)}: {p.x} = {', '.join(_fmt(x) for x in xs)}"
                    for y, xs in tx.items()) + ". ")
            else:
                txt += "The dashed line lies outside the grid. "
        if st["agree"] is not None and st["compared"]:
            txt += (f"Measured collapse agrees with the line's side at {st['agree']} of "
                    f"{st['compared']} points ({100.0 * st['agree'] / st['compared']:.0f} %).")
        parts.append(txt.strip())
    return " ".join(parts)


# ----------------------------------------------------------------------------- figures
def plot_entry(entry: AtlasEntry, d: Path, *, size: str = "default") -> Path:
    """Draw ``d/<entry.name>.png``: one heat map per panel, shared statistic and threshold."""
    import matplotlib
    import matplotlib.pyplot as plt
    from .phase import plot_phase
    matplotlib.use("Agg", force=False)
    n = len(entry.panels)
    ncol = min(2, n)
    nrow = math.ceil(n / ncol)
    fig, axs = plt.subplots(nrow, ncol, figsize=(7.2 * ncol, 6.2 * nrow), squeeze=False)
    seeds = entry.seeds[size]
    for i, p in enumerate(entry.panels):
        ax = axs[i // ncol][i % ncol]
        rows = _rows(p, d)
        try:
            plot_phase(rows, p.x, p.y, p.metric, threshold=p.threshold, theory=p.theory or False,
                       ax=ax, collapsed_below=p.collapsed_below, logx=p.logx, logy=p.logy,
                       vrange=None if p.vmax is None else (0.0, p.vmax),
                       title=f"{p.title}\n{p.label}: {'<' if p.collapsed_below else '>'} "
                             f"{p.threshold:g} = collapsed")
        except ValueError as e:
            ax.text(0.5, 0.5, f"nothing to draw:\n{e}", ha="center", va="center", wrap=True,
                    transform=ax.transAxes, fontsize=8)
            continue
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        cb = fig.axes[-1]
        if cb is not ax:
            cb.set_ylabel(f"{p.label}, mean over {seeds} seed(s)"
                          + ("" if p.vmax is None else f" (≥ {p.vmax:g} saturates)"))
    for j in range(n, nrow * ncol):
        axs[j // ncol][j % ncol].set_visible(False)
    fig.suptitle(f"{entry.title}\n{seeds} seed(s) per point; size '{size}'", fontsize=12)
    fig.tight_layout()
    path = d / f"{entry.name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _log(spec) -> Optional[bool]:
    if isinstance(spec, str) and spec.endswith(":log"):
        return True
    if isinstance(spec, str) and ":" in spec:
        return False
    return None


# ----------------------------------------------------------------------------- the page
def write_page(out: str | Path, names: Optional[Sequence[str]] = None, *,
               timings: Optional[dict] = None) -> Path:
    """Write ``out/atlas.md`` and ``out/atlas.html`` from what is on disk (figures, results)."""
    out = Path(out)
    names = [n for n in (names or ATLAS) if (out / n).exists()]
    timings = timings if timings is not None else _load_json(out / "timings.json")
    md = ["# The collapse atlas", "",
          "Where collapse holds and where it fails, mean-field against finite width and depth "
          "(issue 10, science.md §1, §4). Colour: mean over seeds of each panel's statistic; "
          "black contour: the measured boundary (mean = threshold); hatching: seed spread; dashed: "
          "the theory (or reference) line. Every number below is computed from the results.", ""]
    body = []
    for n in names:
        e = get_atlas(n)
        para = reading(e, out / n)
        t = timings.get(n, {})
        wall = f" Wall time of this run: {t['wall_seconds']:.0f} s (size '{t.get('size')}')." \
            if "wall_seconds" in t else ""
        md += [f"## {e.title}", "", f"![{n}]({n}/{n}.png)", "", para + wall, ""]
        body.append((e.title, f"{n}/{n}.png", para + wall))
    wl = out / "width_limit"
    if (wl / "width_limit.png").exists():
        s = _load_json(wl / "summary.json")
        txt = "Finite two-layer nets against the mean-field flow (experiment `width_limit`)."
        if "slope" in s:
            txt += (f" Fitted slope of the output distance against width: {s['slope']:.3f} "
                    f"± {s.get('slope_se', float('nan')):.3f} (theory −1/2, tolerance "
                    f"{s.get('slope_tol', float('nan')):g}: "
                    f"{'agrees' if s.get('slope_agrees') else 'does not agree'}).")
        figs = [f for f in ("width_limit.png", "tracking_time.png", "tracking_step.png")
                if (wl / f).exists()]
        md += ["## Finite width converges to mean-field", ""] + \
              [f"![{f}](width_limit/{f})" for f in figs] + ["", txt, ""]
        body += [("Finite width converges to mean-field", f"width_limit/{f}", txt if i == len(figs) - 1 else "")
                 for i, f in enumerate(figs)]
    (out / "atlas.md").write_text("\n".join(md))
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>Collapse atlas</title>",
         "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
         "p{line-height:1.4}</style></head><body><h1>The collapse atlas</h1>",
         f"<p>{html.escape(md[2])}</p>"]
    for title, img, para in body:
        h.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(img)}' alt='{html.escape(title)}'>")
        if para:
            h.append("<p>" + html.escape(para).replace("**", "") + "</p>")
    h.append("</body></html>")
    path = out / "atlas.html"
    path.write_text("\n".join(h))
    return path


# ----------------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m meanfield.atlas --out DIR [--size S] [--only A,B] [--workers N]``."""
    ap = argparse.ArgumentParser(prog="meanfield atlas", description="Run or resume the collapse "
                                 "atlas (phase diagrams of where collapse holds) and write its page.")
    ap.add_argument("--out", default="atlas", help="atlas directory (default ./atlas)")
    ap.add_argument("--size", default="default", choices=SIZES)
    ap.add_argument("--only", default=None, help=f"comma-separated entries of: {', '.join(ATLAS)}")
    ap.add_argument("--workers", type=int, default=1, help="local processes per sweep")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="auto", help="mean-field backend (auto, dense, numba, keops)")
    ap.add_argument("--no-width-limit", action="store_true", help="skip the width_limit run")
    ap.add_argument("--list", action="store_true", help="list the atlas entries and exit")
    args = ap.parse_args(argv)
    if args.list:
        for e in ATLAS.values():
            print(f"{e.name}: {e.title} [{', '.join(p.experiment for p in e.panels)}]")
        return 0
    try:
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        for n in only or []:
            get_atlas(n)
        page = run_atlas(args.out, size=args.size, only=only, workers=args.workers,
                         device=args.device, backend=args.backend, width_limit=not args.no_width_limit, progress=None)
    except ValueError as e:
        print(f"meanfield atlas: error: {e}", file=sys.stderr)
        return 2
    print(f"atlas page: {page}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
