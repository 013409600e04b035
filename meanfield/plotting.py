"""Figures. matplotlib is imported inside each function (never at import time).

Histories are what :class:`meanfield.record.Recorder` writes: a list of rows (dicts of floats, with
a ``system`` column when several systems ran together), or a run's ``history.csv`` read back by
:func:`meanfield.record.read_history`.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from .phase import plot_phase, plot_sweep  # phase diagrams of sweeps (meanfield/phase.py)

__all__ = ["plot_metrics", "plot_phase", "plot_sweep", "CLASS_COLOURS", "class_colour"]

# class index -> colour (class 0 is -1, class 1 is +1 in the binary problems); one convention for
# every figure of the package
CLASS_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown",
                 "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def class_colour(c: int) -> str:
    """The colour of class ``c`` in every figure (class 0 = −1 red, class 1 = +1 blue, ...)."""
    return CLASS_COLOURS[int(c) % len(CLASS_COLOURS)]


_XLABELS = {"t": "time t (mean-field time units)", "epoch": "epoch", "step": "step"}


def _runs(histories, labels: Optional[Sequence[str]]) -> list[tuple[str, list[dict]]]:
    """Normalise the accepted inputs to [(label, rows)], one entry per run (and per system)."""
    if hasattr(histories, "history"):                      # a FlowResult or similar
        histories = [histories.history]
    if isinstance(histories, Mapping):
        items = [(str(k), v.history if hasattr(v, "history") else v) for k, v in histories.items()]
    else:
        hs = list(histories)
        if hs and isinstance(hs[0], Mapping):               # one history: a list of rows
            hs = [hs]
        hs = [h.history if hasattr(h, "history") else h for h in hs]
        if labels is not None and len(labels) != len(hs):
            raise ValueError(f"{len(labels)} labels for {len(hs)} runs; pass one label per run")
        names = list(labels) if labels is not None else ([""] if len(hs) == 1 else
                                                         [f"run {i}" for i in range(len(hs))])
        items = list(zip(names, hs))
    runs = []
    for name, rows in items:
        rows = list(rows)
        systems = sorted({r["system"] for r in rows if "system" in r and r["system"] != ""})
        if len(systems) > 1:
            for s in systems:
                runs.append((f"{name} [system {int(s)}]".strip(), [r for r in rows if r.get("system") == s]))
        else:
            runs.append((name, rows))
    return runs


def _series(rows: list[dict], x: str, key: str, logx: bool, logy: bool) -> tuple[list, list]:
    """Finite points (x, value); non-positive ones are dropped on log axes."""
    xs, ys = [], []
    for r in rows:
        xv, yv = r.get(x), r.get(key)
        if not isinstance(xv, (int, float)) or not isinstance(yv, (int, float)):
            continue
        if not (math.isfinite(xv) and math.isfinite(yv)) or (logx and xv <= 0) or (logy and yv <= 0):
            continue
        xs.append(xv)
        ys.append(yv)
    return xs, ys


def plot_metrics(histories, *, x: str = "t", metrics: Sequence[str] = ("nc1", "nc2_etf", "nc3"),
                 labels: Optional[Sequence[str]] = None, ax=None, logx: bool = True,
                 logy: bool = True, title: Optional[str] = "Collapse metrics"):
    """Collapse metrics against time (or epoch) on log axes, several runs overlaid.

    Args:
        histories: one history (list of row dicts), a list of histories, a mapping
            label -> history, or objects with a ``.history`` (e.g. a FlowResult). A history
            with several ``system`` values is split into one curve per system.
        x: the column on the horizontal axis (``t``, ``epoch``, ``step``, ...).
        metrics: columns to draw, one panel each (values <= 0 cannot be shown on a log axis and
            are skipped).
        labels: one legend label per run (for a list of histories).
        ax: an Axes (all metrics on it) or a sequence of one Axes per metric; default a new figure.

    Returns:
        matplotlib Figure.

    Raises:
        ValueError: a metric or ``x`` column found in no run.
    """
    import matplotlib.pyplot as plt

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    runs = _runs(histories, labels)
    if not runs or not any(rows for _, rows in runs):
        raise ValueError("no history rows to plot")
    cols = set().union(*(r.keys() for _, rows in runs for r in rows))
    missing = [k for k in [x, *metrics] if k not in cols]
    if missing:
        raise ValueError(f"columns {missing} are in no history; available: {sorted(cols)}")
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
        axes = list(axes[0])
    elif hasattr(ax, "plot"):
        axes, fig = [ax] * len(metrics), ax.figure
    else:
        axes = list(ax)
        if len(axes) != len(metrics):
            raise ValueError(f"{len(axes)} axes for {len(metrics)} metrics")
        fig = axes[0].figure
    shared = len(set(map(id, axes))) == 1 and len(metrics) > 1
    for key, a in zip(metrics, axes):
        for i, (name, rows) in enumerate(runs):
            xs, ys = _series(rows, x, key, logx, logy)
            lab = f"{name}: {key}" if shared else (name or key)
            a.plot(xs, ys, marker=".", ms=3, lw=1.2, color=f"C{i % 10}",
                   ls=("-", "--", ":", "-.")[metrics.index(key) % 4] if shared else "-", label=lab)
        a.set_xscale("log" if logx else "linear")
        a.set_yscale("log" if logy else "linear")
        a.set_xlabel(_XLABELS.get(x, x))
        a.set_ylabel(", ".join(metrics) if shared else key)
        if not shared:
            a.set_title(key)
        a.grid(True, which="major", alpha=0.3)
    for a in dict.fromkeys(axes):
        if len(runs) > 1 or shared:
            a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
