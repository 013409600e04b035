"""The atlas's figures (one per entry) and its page (atlas.md, atlas.html), drawn from files."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Optional, Sequence

from .entry import AtlasEntry, get_atlas, list_atlas
from .stats import panel_rows, reading

__all__ = ["plot_entry", "write_page"]


def _load_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def plot_entry(entry: AtlasEntry, d: Path, *, size: str = "default") -> Path:
    """Draw ``d/<entry.name>.png``: one heat map per panel, shared statistic and threshold."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone
    from ..phase import plot_phase
    n = len(entry.panels)
    ncol = min(2, n)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(7.2 * ncol, 6.2 * nrow))
    axs = fig.subplots(nrow, ncol, squeeze=False)
    seeds = entry.seeds[size]
    for i, p in enumerate(entry.panels):
        ax = axs[i // ncol][i % ncol]
        rows = panel_rows(p, d)
        try:
            plot_phase(rows, p.x, p.y, p.statistic, threshold=p.cutoff, theory=p.line or False,
                       ax=ax, collapsed_below=p.below, logx=p.logx, logy=p.logy,
                       experiment=p.experiment, vrange=None if p.vmax is None else (0.0, p.vmax),
                       title=f"{p.title}\n{p.stat_label}: {'<' if p.below else '>'} "
                             f"{p.cutoff:g} = collapsed")
        except ValueError as e:
            ax.text(0.5, 0.5, f"nothing to draw:\n{e}", ha="center", va="center", wrap=True,
                    transform=ax.transAxes, fontsize=8)
            continue
        ax.set_xlabel(p.label(p.x) + (" (log scale)" if p.logx else ""))
        ax.set_ylabel(p.label(p.y) + (" (log scale)" if p.logy else ""))
        cb = fig.axes[-1]
        if cb is not ax:
            cb.set_ylabel(f"{p.stat_label}, mean over {seeds} seed(s)"
                          + ("" if p.vmax is None else f" (≥ {p.vmax:g} saturates)"))
    for j in range(n, nrow * ncol):
        axs[j // ncol][j % ncol].set_visible(False)
    # the two title lines sit in the top ~0.9 inch, clear of the first row whatever the height
    # (the default y = 0.98 is a fraction: 1.5 inches down a 70-inch figure, inside the panels)
    h = fig.get_figheight()
    fig.suptitle(f"{entry.title}\n{seeds} seed(s) per point; size '{size}'", fontsize=12,
                 y=1 - 0.08 / h, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / h))
    path = d / f"{entry.name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_page(out: str | Path, names: Optional[Sequence[str]] = None, *,
               timings: Optional[dict] = None) -> Path:
    """Write ``out/atlas.md`` and ``out/atlas.html`` from what is on disk (figures, results)."""
    out = Path(out)
    names = [n for n in (names or list_atlas()) if (out / n).exists()]
    timings = timings if timings is not None else _load_json(out / "timings.json")
    md = ["# The collapse atlas", "",
          "Where collapse holds and where it fails, mean-field against finite width and depth "
          "(the package's docs/science.md, §1 and §4). Colour: mean over seeds of each panel's statistic; "
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
        if "distance_time_ratio" in s:
            txt += (f" Over time at fixed width the distance changes by a factor "
                    f"{s['distance_time_ratio']:.2f} up to the last time shown.")
        if s.get("eta_stable_end") is not None:
            brk = s.get("step_breaks_at")
            txt += (f" Large steps: the computed stability limit 2/(m·λ_max) of SGD is "
                    f"η = {s['eta_stable_init']:.3g} at the initial neurons and "
                    f"{s['eta_stable_end']:.3g} at the flow's state at t = {s.get('step_t', 0):g}; "
                    + (f"the measured distance jumps at η = {brk:g}." if isinstance(brk, float)
                       and math.isfinite(brk) else "no tested step made the distance jump."))
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


