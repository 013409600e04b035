"""Pictures of a distribution: 1-D atoms as stems (height = mass), 2-D scatter by class (size ~ mass).

matplotlib is imported inside the function, never at import time.
"""

from __future__ import annotations

from typing import Optional

from .base import Samples, as_samples

__all__ = ["plot_distribution"]


def plot_distribution(samples, ax=None, *, title: Optional[str] = None, max_points: int = 5000,
                      size: float = 30.0, n: Optional[int] = None, seed: int = 0):
    """Draw weighted labelled samples on ``ax`` (a new figure when None) and return the axes.

    1-D: one stem per atom at x_j of height p_j, coloured by class (atoms at the same x from the
    same class are summed). 2-D: a scatter by class, marker area proportional to p_j (mean area
    ``size``). d > 2: the first two coordinates, said in the axis labels. Class names, or the
    signed labels -1/+1 for two classes, appear in the legend.

    Args:
        samples: :class:`Samples`, a distribution (sampled with ``n`` and ``seed``), or (X, y[, p]).
        ax: matplotlib axes.
        title: axes title.
        max_points: at most this many points are drawn (the heaviest ones).
        size: mean marker area in points^2 (2-D).
    """
    import matplotlib.pyplot as plt
    import torch

    s: Samples = as_samples(samples, n=n, seed=seed, dtype=torch.float64, device="cpu")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    C = s.num_classes
    names = s.class_names or (("-1", "+1") if C == 2 else tuple(str(c) for c in range(C)))
    X, y, p = s.X.cpu(), s.y.cpu(), s.p.cpu()
    if s.n > max_points:
        keep = torch.argsort(p, descending=True)[:max_points]
        X, y, p = X[keep], y[keep], p[keep]
    from ..plotting import CLASS_COLOURS as colors   # one class-colour convention everywhere
    if s.d == 1:
        for c in range(C):
            m = y == c
            if not m.any():
                continue
            xs, inv = torch.unique(X[m, 0], return_inverse=True)
            ps = torch.zeros(xs.shape[0], dtype=p.dtype).index_add_(0, inv, p[m])
            ax.vlines(xs.numpy(), 0, ps.numpy(), color=colors[c % len(colors)], lw=1.5)
            ax.scatter(xs.numpy(), ps.numpy(), color=colors[c % len(colors)], s=25, zorder=3,
                       label=f"class {names[c]} (mass {float(p[m].sum()):.3g})")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xlabel("x")
        ax.set_ylabel("mass p")
    else:
        area = size * p * p.shape[0]
        for c in range(C):
            m = y == c
            if not m.any():
                continue
            ax.scatter(X[m, 0].numpy(), X[m, 1].numpy(), s=area[m].clamp_min(1.0).numpy(),
                       color=colors[c % len(colors)], alpha=0.7, edgecolors="none",
                       label=f"class {names[c]} (mass {float(p[m].sum()):.3g})")
        suffix = f" (first 2 of d = {s.d})" if s.d > 2 else ""
        ax.set_xlabel("$x_1$" + suffix)
        ax.set_ylabel("$x_2$")
        ax.set_aspect("equal", adjustable="datalim")
    legend = ax.legend(loc="best", fontsize="small")
    for h in getattr(legend, "legend_handles", getattr(legend, "legendHandles", [])):
        if hasattr(h, "set_sizes"):
            h.set_sizes([25.0])  # legend markers all the same size, whatever the masses
    if title:
        ax.set_title(title)
    return ax
