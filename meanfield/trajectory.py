"""Particle trajectories: neurons in the (w, b) plane over time, as a figure or an animation.

Feed it the snapshots kept by ``Recorder(snapshot=K)`` (``FlowResult.snapshots``). For d = 1 the
plane is (w, b); for d > 1, w is projected on its leading principal direction over all snapshots.
Neurons are coloured by the sign of a (its first output for k > 1) and sized by |a|.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["trajectory_arrays", "plot_trajectories", "animate_trajectories"]


def trajectory_arrays(snapshots: Sequence[dict], *, system: int = 0, normalise: bool = False):
    """Stack snapshots into arrays.

    Args:
        snapshots: dicts with t, a (B, K, k), w (B, K, d), b (B, K).
        system: which system of the batch.
        normalise: put (w, b) on the unit circle (direction only; useful for ReLU, whose neurons
            grow without bound).

    Returns:
        (t (T,), x (T, K), y (T, K), a (T, K) signed first output, size (T, K) |a|, xlabel).
    """
    if not snapshots:
        raise ValueError("no snapshots: run simulate with recorder=Recorder(snapshot=K)")
    t = np.array([s["t"] for s in snapshots])
    W = np.stack([s["w"][system].double().numpy() for s in snapshots])  # (T, K, d)
    b = np.stack([s["b"][system].double().numpy() for s in snapshots])  # (T, K)
    A = np.stack([s["a"][system].double().numpy() for s in snapshots])  # (T, K, k)
    d = W.shape[-1]
    if d == 1:
        x, xlabel = W[..., 0], "inner weight w"
    else:
        flat = W.reshape(-1, d)
        _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
        x, xlabel = W @ vt[0], "w · u₁ (leading principal direction of w)"
    y = b
    if normalise:
        r = np.sqrt(x ** 2 + y ** 2) + 1e-300
        x, y = x / r, y / r
        xlabel = "direction of (w, b): " + xlabel
    return t, x, y, A[..., 0], np.linalg.norm(A, axis=-1), xlabel


def plot_trajectories(snapshots: Sequence[dict], *, system: int = 0, normalise: bool = False,
                      ax=None, title: Optional[str] = None, max_neurons: int = 300):
    """Neurons in the (w, b) plane with their tails over time.

    Returns:
        The matplotlib Figure (a new ``matplotlib.figure.Figure`` when ``ax`` is None: no pyplot
        state, no backend change).
    """
    from matplotlib.figure import Figure

    from .plotting import class_colour
    t, x, y, a, size, xlabel = trajectory_arrays(snapshots, system=system, normalise=normalise)
    K = min(x.shape[1], max_neurons)
    if ax is None:
        fig = Figure(figsize=(6, 5))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    for i in range(K):
        c = class_colour(1) if a[-1, i] >= 0 else class_colour(0)
        ax.plot(x[:, i], y[:, i], color=c, alpha=0.25, lw=0.8)
    s = 80 * size[-1, :K] / max(size[-1, :K].max(), 1e-300) + 2
    pos = a[-1, :K] >= 0
    ax.scatter(x[0, :K], y[0, :K], s=4, color="0.5", label="start", zorder=2)
    ax.scatter(x[-1, :K][pos], y[-1, :K][pos], s=s[pos], color=class_colour(1), edgecolor="k", lw=0.3,
               label="a > 0 (end)", zorder=3)
    ax.scatter(x[-1, :K][~pos], y[-1, :K][~pos], s=s[~pos], color=class_colour(0), edgecolor="k", lw=0.3,
               label="a < 0 (end)", zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("bias b" + (" (direction)" if normalise else ""))
    ax.set_title(title or f"Neuron trajectories, t = {t[0]:.3g} → {t[-1]:.3g} (size ∝ |a|)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def animate_trajectories(snapshots: Sequence[dict], path: str | Path, *, system: int = 0,
                         normalise: bool = False, fps: int = 10, max_neurons: int = 300) -> Path:
    """Write an animation of the neurons over time: MP4 when ffmpeg exists (and the path ends in
    .mp4), else GIF (Pillow).

    Returns:
        The path written (the suffix may change to .gif when no MP4 writer exists).

    Draws on a bare ``matplotlib.figure.Figure``: pyplot's state and the backend are left alone.
    """
    from matplotlib import animation
    from matplotlib.figure import Figure
    t, x, y, a, size, xlabel = trajectory_arrays(snapshots, system=system, normalise=normalise)
    K = min(x.shape[1], max_neurons)
    path = Path(path)
    if path.suffix == ".mp4" and not animation.writers.is_available("ffmpeg"):
        path = path.with_suffix(".gif")
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    pad = 0.05 * (np.ptp(x[:, :K]) + np.ptp(y[:, :K]) + 1e-12)
    ax.set_xlim(x[:, :K].min() - pad, x[:, :K].max() + pad)
    ax.set_ylim(y[:, :K].min() - pad, y[:, :K].max() + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("bias b")
    ax.grid(alpha=0.3)
    smax = max(size[:, :K].max(), 1e-300)
    scat = ax.scatter(x[0, :K], y[0, :K], s=80 * size[0, :K] / smax + 2)
    title = ax.set_title("")

    def update(i):
        scat.set_offsets(np.c_[x[i, :K], y[i, :K]])
        scat.set_sizes(80 * size[i, :K] / smax + 2)
        scat.set_color(np.where(a[i, :K][:, None] >= 0, [[0.12, 0.47, 0.71]], [[0.84, 0.15, 0.16]]))
        title.set_text(f"neurons at t = {t[i]:.3g} (blue a > 0, red a < 0)")
        return scat, title

    anim = animation.FuncAnimation(fig, update, frames=len(t), blit=False)
    writer = animation.FFMpegWriter(fps=fps) if path.suffix == ".mp4" else animation.PillowWriter(fps=fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=writer)
    return path
