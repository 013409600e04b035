"""Statistics of atlas panels, computed from their results tables (never hard-coded numbers)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..study.experiment import Theory
from .entry import AtlasEntry, Panel

__all__ = ["panel_rows", "panel_stats", "reading"]


def panel_rows(panel: Panel, d: Path) -> list[dict]:
    """The rows of a panel's sweep (``d/<panel.key>/results.csv``)."""
    from ..sweep import load_results
    return list(load_results(d / panel.key))


def _value(row: Mapping, metric: str) -> Optional[float]:
    from ..phase import _metric
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
    metric, thr, below = panel.statistic, panel.cutoff, panel.below
    for r in rows:
        if r.get("status", "ok") != "ok":
            failed += 1
            continue
        key = (float(r[panel.x]), float(r[panel.y]))
        v = _value(r, metric)
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
        coll = ok and ((mean < thr) if below else (mean > thr))
        params = {k: _num(v) for k, v in g["row"].items()}
        pred = panel.predict(params)
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
        stats["boundary"][y] = _crossings(line, thr)
        if panel.line is not None:
            xs = sorted({c[0] for c in cells})
            stats["theory_x"][y] = _theory_crossings(panel.line, base, panel.x, panel.y, y, xs)
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
    for p, st in zip(entry.panels, stats or [panel_stats(p, panel_rows(p, d)) for p in entry.panels]):
        cmp = "<" if p.below else ">"
        seeds = max((c[4] for c in st["cells"]), default=0)
        txt = (f"**{p.title}** ({p.statistic} {cmp} {p.cutoff:g} called collapsed, mean over "
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
        if p.line is not None:
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


