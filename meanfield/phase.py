"""Phase diagrams of sweeps: a summary number over two parameters, its threshold, the theory boundary.

The colour is the mean over seeds of a summary number (``|name|`` takes its absolute value) on the
grid of two swept parameters; with a stated threshold the colour map diverges around it
(``TwoSlopeNorm``: blue = below, "collapsed" by default; red = above) and the measured boundary is
the contour at the threshold. Cells whose seed standard deviation exceeds ``spread`` times the
colour range are hatched. Where the experiment has a theory boundary (the zero set of a function
of the parameters, :func:`register_theory`) it is drawn on top as a black dashed line.
matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .registry import Registry
from .study.experiment import Theory

__all__ = ["Theory", "THEORIES", "register_theory", "get_theory", "plot_phase", "plot_sweep"]

#: face colour of cells with no finite value (the diverging maps are white at the threshold)
UNDEFINED_FACE = "0.82"


def _load_user_theories() -> None:
    return None


# boundaries a user draws on an experiment's diagrams in place of the experiment's own theory
THEORIES: Registry = Registry("theory boundary", loader=_load_user_theories,
                              hint="an experiment's own boundary is its science.theory; "
                                   "register_theory(experiment, Theory(...)) adds one")


def _science(experiment: Optional[str]):
    if not experiment:
        return None
    from .study.experiment import get_experiment
    try:
        return get_experiment(experiment).science
    except ValueError:
        return None


def register_theory(experiment: str, theory: Theory, *, overwrite: bool = True) -> None:
    """Draw ``theory`` on ``experiment``'s phase diagrams (instead of its ``science.theory``)."""
    THEORIES.register(experiment, theory, overwrite=overwrite)


def get_theory(experiment: Optional[str]) -> Optional[Theory]:
    """The boundary drawn on an experiment's diagrams: a registered one, else its science's."""
    if experiment and experiment in THEORIES:
        return THEORIES.get(experiment)
    sci = _science(experiment)
    return sci.theory if sci is not None else None


# ------------------------------------------------------------------------- data
def _rows(results) -> list[dict]:
    if hasattr(results, "rows"):
        return list(results.rows)
    if isinstance(results, (str, Path)):
        from .sweep import load_results
        return load_results(results)
    return list(results)


def _num(v) -> Optional[float]:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("True", "False"):
        return float(v == "True")
    return None


def _metric(row: dict, metric: str) -> Optional[float]:
    absolute = metric.startswith("|") and metric.endswith("|")
    v = _num(row.get(metric[1:-1] if absolute else metric))
    if v is None or not math.isfinite(v):
        return None
    return abs(v) if absolute else v


def _check(rows: list[dict], *keys: str) -> None:
    cols = set().union(*(r.keys() for r in rows)) if rows else set()
    missing = [k for k in keys if k.strip("|") not in cols]
    if missing:
        params_and_numbers = sorted(c for c in cols if c not in ("id", "status", "error"))
        raise ValueError(f"{missing} not in the results; columns: {', '.join(params_and_numbers)}")


def _is_log(vals: Sequence[float]) -> bool:
    v = sorted(vals)
    if len(v) < 3 or v[0] <= 0:
        return False
    r = [math.log(b / a) for a, b in zip(v, v[1:])]
    d = [b - a for a, b in zip(v, v[1:])]
    geometric = max(r) - min(r) <= 1e-3 * max(r)
    arithmetic = max(d) - min(d) <= 1e-3 * max(d)
    return geometric and not arithmetic


def _edges(c: Sequence[float], log: bool) -> list[float]:
    if len(c) == 1:
        return [c[0] / 2, c[0] * 2] if log else [c[0] - 0.5, c[0] + 0.5]
    t = [math.log(x) for x in c] if log else list(c)
    mid = [(a + b) / 2 for a, b in zip(t, t[1:])]
    e = [t[0] - (mid[0] - t[0])] + mid + [t[-1] + (t[-1] - mid[-1])]
    return [math.exp(x) for x in e] if log else e


def _cells(rows, x, y, metric):
    """(xs, ys, mean[ny][nx], std, count, failed cells) over seeds."""
    def fin(v):
        v = _num(v)
        return v if v is not None and math.isfinite(v) else None
    rows = [r for r in rows if fin(r.get(x)) is not None and (not y or fin(r.get(y)) is not None)]
    xs = sorted({fin(r[x]) for r in rows})
    ys = sorted({fin(r[y]) for r in rows}) if y else [0.0]
    vals: dict = {}
    failed = set()
    for r in rows:
        key = (fin(r.get(x)), fin(r.get(y)) if y else 0.0)
        if r.get("status", "ok") != "ok":
            failed.add(key)
            continue
        v = _metric(r, metric)
        if v is not None:
            vals.setdefault(key, []).append(v)
    nan = float("nan")
    mean = [[nan] * len(xs) for _ in ys]
    std = [[nan] * len(xs) for _ in ys]
    count = 0
    for (xv, yv), v in vals.items():
        i, j = ys.index(yv), xs.index(xv)
        mean[i][j] = sum(v) / len(v)
        std[i][j] = math.sqrt(sum((a - mean[i][j]) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        count = max(count, len(v))
    return xs, ys, mean, std, count, failed


def _label(experiment, key, log=False):
    sci = _science(experiment)
    lab = sci.label(key) if sci is not None else key
    if lab == key and key.startswith("|") and sci is not None:
        lab = f"|{sci.label(key[1:-1])}|"
    return lab + (" (log scale)" if log else "")


def _fixed(rows: list[dict]) -> dict:
    out = {}
    for k, v in rows[0].items():
        n = _num(v)
        if n is not None:
            out[k] = n
    return out


# ------------------------------------------------------------------------- figures
def plot_phase(results, x: str, y: Optional[str], metric: str, *, threshold: Optional[float] = None,
               theory=None, logx: Optional[bool] = None, logy: Optional[bool] = None, ax=None,
               experiment: Optional[str] = None, spread: float = 0.1, collapsed_below: bool = True,
               vrange: Optional[tuple] = None, colorbar: bool = True, title: Optional[str] = None):
    """Heat map of a summary number over two parameters (a line over one when ``y`` is None).

    Args:
        results: a SweepResult, rows (dicts) or a sweep directory; rows are averaged over seeds
            and over any other parameter that varies (use :func:`plot_sweep` for panels).
        x, y: parameters on the axes.
        metric: a summary column; ``|name|`` for its absolute value.
        threshold: the value separating "collapsed" (below, or above with
            ``collapsed_below=False``) from "not collapsed": a diverging colour map centred on it
            and the contour at it.
        theory: a :class:`Theory`, False for none, or None for the experiment's registered one.
        logx, logy: log axes (None: when the grid values are log-spaced).
        ax: an Axes (default: a new figure).
        experiment: the experiment's name (theory boundary, axis labels).
        spread: hatch cells whose seed std exceeds this fraction of the colour range.
        vrange: (vmin, vmax) of the colour map (to share it between panels).

    Returns:
        matplotlib Figure.

    Raises:
        ValueError: no rows, or a column found in no row.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    rows = _rows(results)
    if not rows:
        raise ValueError("no results to plot")
    _check(rows, x, metric, *([y] if y else []))
    theory = get_theory(experiment) if theory is None else (theory or None)
    xs, ys, mean, std, seeds, failed = _cells(rows, x, y, metric)
    logx = _is_log(xs) if logx is None else logx
    logy = (_is_log(ys) if y else False) if logy is None else logy
    fig = ax.figure if ax is not None else plt.subplots(figsize=(6.4, 4.8) if y else (6.4, 4.2))[1].figure
    ax = ax if ax is not None else fig.axes[0]
    finite = [v for row in mean for v in row if math.isfinite(v)]
    if not finite:
        raise ValueError(f"no finite values of {metric} among the successful points")
    lo, hi = vrange if vrange is not None else (min(finite), max(finite))
    side = ("collapsed", "not collapsed") if collapsed_below else ("not collapsed", "collapsed")
    handles = []
    if y is None:
        _line(ax, xs, mean[0], std[0], threshold, side, handles, Line2D)
    else:
        if threshold is not None:
            eps = 1e-9 + 1e-6 * abs(threshold)
            norm = TwoSlopeNorm(vcenter=threshold, vmin=min(lo, threshold - eps), vmax=max(hi, threshold + eps))
            cmap = "RdBu_r" if collapsed_below else "RdBu"
        else:
            norm, cmap = Normalize(lo, hi if hi > lo else lo + 1e-12), "viridis"
        import numpy as np
        Z = np.ma.masked_invalid(np.array(mean, dtype=float))
        mesh = ax.pcolormesh(_edges(xs, logx), _edges(ys, logy), Z, norm=norm, cmap=cmap, shading="flat")
        if colorbar:
            cb = fig.colorbar(mesh, ax=ax)
            cb.set_label(f"{_label(experiment, metric)}, mean over seeds")
            if threshold is not None:
                cb.ax.axhline(threshold, color="k", lw=1.5)
                for yy, va, txt in ((0.02, "bottom", side[0]), (0.98, "top", side[1])):
                    cb.ax.text(0.5, yy, txt, transform=cb.ax.transAxes, rotation=90, va=va,
                               ha="center", fontsize=7, bbox=dict(fc="white", ec="none", pad=1))
        if threshold is not None and len(xs) > 1 and len(ys) > 1 and min(finite) < threshold < max(finite):
            ax.contour(xs, ys, Z, levels=[threshold], colors="k", linewidths=1.8,
                       linestyles="solid")  # matplotlib dashes negative levels by default
            handles.append(Line2D([], [], color="k", lw=1.8,
                                  label=f"measured: {metric} = {threshold:g} (collapsed on the blue side)"))
        if metric.startswith("|") and len(xs) > 1 and len(ys) > 1:
            signed = np.ma.masked_invalid(np.array(_cells(rows, x, y, metric[1:-1])[2], dtype=float))
            if signed.count() and signed.min() < 0 < signed.max():
                ax.contour(xs, ys, signed, levels=[0.0], colors="0.35", linewidths=1.2, linestyles=":")
                handles.append(Line2D([], [], color="0.35", lw=1.2, ls=":",
                                      label=f"measured: {metric[1:-1]} = 0"))
        rng = (hi - lo) or 1.0
        xe, ye = _edges(xs, logx), _edges(ys, logy)
        hatched = False
        for i in range(len(ys)):
            for j in range(len(xs)):
                if math.isfinite(std[i][j]) and std[i][j] > spread * rng:
                    ax.add_patch(Rectangle((xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i],
                                           fill=False, hatch="///", lw=0, edgecolor="0.2"))
                    hatched = True
        if seeds > 1:
            handles.append(Patch(fill=False, hatch="///" if hatched else None, edgecolor="0.2",
                                 label=f"hatched: seed std > {spread:.0%} of colour range"
                                       + ("" if hatched else " (none)")))
        undefined = sum(1 for i in range(len(ys)) for j in range(len(xs))
                        if not math.isfinite(mean[i][j]) and (xs[j], ys[i]) not in failed)
        if undefined:
            # masked cells show the axes' face: grey, so they cannot be read as "at the threshold"
            # (the diverging map is white there)
            ax.set_facecolor(UNDEFINED_FACE)
            handles.append(Patch(facecolor=UNDEFINED_FACE, edgecolor="0.5",
                                 label=f"grey: {metric} undefined (not finite) at every seed "
                                       f"({undefined} cell{'s' if undefined != 1 else ''})"))
    for key in failed:
        ax.plot(key[0], key[1] if y else 0, "x", color="0.3", ms=7)
    if failed:
        handles.append(Line2D([], [], marker="x", ls="", color="0.3", label="failed point(s)"))
    if theory is not None and (x in theory.keys or (y in theory.keys)):
        _theory(ax, theory, rows, x, y, xs, ys, logx, logy, handles, Line2D)
    ax.set_xscale("log" if logx else "linear")
    _grid_ticks(ax.xaxis, xs, logx)
    if y:
        ax.set_yscale("log" if logy else "linear")
        _grid_ticks(ax.yaxis, ys, logy)
        ax.set_ylabel(_label(experiment, y, logy))
    else:
        ax.set_ylabel(f"{_label(experiment, metric)} (mean ± std over seeds)")
    ax.set_xlabel(_label(experiment, x, logx))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=1, frameon=False)
    if title is None:
        thr = f"; threshold {threshold:g} (collapsed {'below' if collapsed_below else 'above'})" \
            if threshold is not None else "; no threshold stated"
        title = (f"{experiment + ': ' if experiment else ''}mean of {metric} over "
                 f"{seeds} seed{'s' if seeds != 1 else ''}{thr}")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _grid_ticks(axis, vals, log: bool) -> None:
    """On a log axis over a short range, tick the grid values themselves (plain numbers, three
    significant digits; beyond six values every other one is labelled, so the labels never overlap)."""
    if not log or not vals or len(vals) > 12 or max(vals) / min(vals) > 1e3:
        return
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
    vals = sorted(vals)
    step = math.ceil(len(vals) / 6)
    axis.set_major_locator(FixedLocator(vals))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FixedFormatter([f"{v:.3g}" if i % step == 0 else ""
                                             for i, v in enumerate(vals)]))


def _line(ax, xs, m, s, threshold, side, handles, Line2D):
    ok = [(a, b, c) for a, b, c in zip(xs, m, s) if math.isfinite(b)]
    ax.errorbar([a for a, _, _ in ok], [b for _, b, _ in ok], yerr=[c for _, _, c in ok], marker="o",
                ms=4, capsize=3, lw=1.5, color="C0")
    handles.append(Line2D([], [], color="C0", marker="o", label="measured mean (bars: seed std)"))
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=1.2)
        handles.append(Line2D([], [], color="k", lw=1.2,
                              label=f"threshold {threshold:g}: {side[0]} below, {side[1]} above"))
    ax.grid(alpha=0.3)


def _theory(ax, theory: Theory, rows, x, y, xs, ys, logx, logy, handles, Line2D):
    import numpy as np
    base = _fixed(rows)

    def grid(v, log, n):
        return np.geomspace(min(v), max(v), n) if log else np.linspace(min(v), max(v), n)

    def f(xv, yv=None):
        p = dict(base)
        p[x] = float(xv)
        if y:
            p[y] = float(yv)
        try:
            return theory.fn(p)
        except (KeyError, ValueError, ZeroDivisionError, TypeError):
            return float("nan")

    gx = grid(xs, logx, 300)
    if y is None:
        vals = np.array([f(v) for v in gx])
        cross = [gx[i] for i in range(len(gx) - 1) if np.sign(vals[i]) != np.sign(vals[i + 1])]
        for c in cross:
            ax.axvline(c, color="k", ls="--", lw=1.8)
        if cross:
            handles.append(Line2D([], [], color="k", ls="--", lw=1.8, label=theory.label))
        return
    if len(ys) < 2 and len(xs) < 2:
        return
    gy = grid(ys, logy, 300) if len(ys) > 1 else np.array(ys)
    F = np.array([[f(a, b) for a in gx] for b in gy])
    if len(gy) == 1:  # one row of cells: the line crosses it at points along x
        row = F[0]
        cross = [gx[i] for i in range(len(gx) - 1)
                 if np.isfinite(row[i]) and np.isfinite(row[i + 1]) and np.sign(row[i]) != np.sign(row[i + 1])]
        for c in cross:
            ax.axvline(c, color="k", ls="--", lw=2.0)
        if cross:
            handles.append(Line2D([], [], color="k", ls="--", lw=2.0, label=theory.label))
        return
    if np.isfinite(F).any() and np.nanmin(F) < 0 < np.nanmax(F) and len(gy) > 1:
        ax.contour(gx, gy, F, levels=[0.0], colors="k", linestyles="--", linewidths=2.0)
        handles.append(Line2D([], [], color="k", ls="--", lw=2.0, label=theory.label))
    elif np.isfinite(F).any() and theory.collapsed != "zero":
        # one sign over the whole panel: say what the theory predicts instead of drawing nothing
        neg = bool(np.nanmax(F) < 0)
        says = "collapse" if neg == (theory.collapsed == "negative") else "no collapse"
        handles.append(Line2D([], [], color="none",
                              label=f"{theory.label}\n→ no boundary here: predicts {says} everywhere"))


def plot_sweep(results, *, experiment: Optional[str] = None, axes: Sequence = (),
               metric: Optional[str] = None, threshold: Optional[float] = None,
               x: Optional[str] = None, y: Optional[str] = None, params: Sequence[str] = (), **kw):
    """The phase diagram of a sweep: panels over the axes beyond x and y, a shared colour range.

    Args:
        results: SweepResult, rows or a sweep directory.
        experiment: its name (defaults for metric and threshold, theory, labels).
        axes: the sweep's axes (``{"key", "log"}`` dicts or :class:`meanfield.sweep.Axis`), in order.
        metric, threshold: default the experiment's ``science.statistic`` and ``threshold``, else
            the first summary number (no threshold).
        x, y: default the first two axes with more than one value.
        params: every parameter name (so the default metric is a summary number, not a parameter).
        kw: passed to :func:`plot_phase`.
    """
    import matplotlib.pyplot as plt
    rows = _rows(results)
    if not rows:
        raise ValueError("no results to plot")
    ax_list = [(a["key"], a.get("log", False)) if isinstance(a, Mapping) else (a.key, a.log) for a in axes]
    logs = dict(ax_list)
    varying = [k for k, _ in ax_list if len({str(r.get(k)) for r in rows}) > 1]
    if x is None:
        x = varying[0] if varying else (ax_list[0][0] if ax_list else None)
    if x is None:
        raise ValueError("say which parameter goes on the x axis (--x)")
    if y is None:
        rest = [k for k in varying if k != x]
        y = rest[0] if rest else None
    sci = _science(experiment)
    own = sci is not None and sci.statistic is not None and (metric is None or metric == sci.statistic)
    metric = metric or (sci.statistic if sci is not None else None) or \
        _first_number(rows, {k for k, _ in ax_list} | set(params))
    if threshold is None and own:
        threshold = sci.threshold
    if own:
        kw.setdefault("collapsed_below", sci.collapsed_below)
    _check(rows, x, metric, *([y] if y else []))
    panel_keys = [k for k in varying if k not in (x, y)]
    kw.setdefault("logx", logs.get(x) or None)
    if y:
        kw.setdefault("logy", logs.get(y) or None)
    if not panel_keys:
        return plot_phase(rows, x, y, metric, threshold=threshold, experiment=experiment, **kw)
    combos = sorted({tuple(r.get(k) for k in panel_keys) for r in rows}, key=lambda c: [str(v) for v in c])
    vals = [v for r in rows if r.get("status", "ok") == "ok" for v in [_metric(r, metric)] if v is not None]
    if not vals:
        raise ValueError(f"no finite values of {metric} among the successful points")
    ncol = min(3, len(combos))
    nrow = math.ceil(len(combos) / ncol)
    fig, axs = plt.subplots(nrow, ncol, figsize=(5.6 * ncol, 4.8 * nrow), squeeze=False)
    for i, c in enumerate(combos):
        a = axs[i // ncol][i % ncol]
        sub = [r for r in rows if tuple(r.get(k) for k in panel_keys) == c]
        name = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in zip(panel_keys, c))
        plot_phase(sub, x, y, metric, threshold=threshold, experiment=experiment, ax=a,
                   vrange=(min(vals), max(vals)), title=name, **kw)
    for j in range(len(combos), nrow * ncol):
        axs[j // ncol][j % ncol].set_visible(False)
    seeds = len({r.get("seed") for r in rows})
    thr = f", threshold {threshold:g}" if threshold is not None else ""
    fig.suptitle(f"{experiment + ': ' if experiment else ''}mean of {metric} over {seeds} seed(s){thr}; "
                 f"panels over {', '.join(panel_keys)}")
    fig.tight_layout()
    return fig


def _first_number(rows, params) -> str:
    skip = set(params) | {"id", "seed", "status", "error"}
    for k in rows[0]:
        if k in skip or k.endswith(("_theory", "_tol", "_agrees")):
            continue
        if any(_num(r.get(k)) is not None for r in rows):
            return k
    raise ValueError("the results hold no summary number to plot; pass --metric")
