"""Neuron snapshots (``Recorder(snapshot=K)``) in a run directory, and their trajectory figure.

Saved as tensors only (``trajectories.pt``, read with ``weights_only=True``) so that figures are
redrawn from the run directory without a rerun.
"""

from __future__ import annotations

import math

import torch

from ..plotting import class_colour
from .experiment import RunContext

__all__ = ["TRAJECTORIES", "MODEL_FILE", "save_snapshots", "load_snapshots", "draw_trajectories"]

TRAJECTORIES = "trajectories.pt"
MODEL_FILE = "model.pt"


def save_snapshots(ctx: RunContext, snaps: dict) -> None:
    """Write ``{name: snapshots}`` (``Recorder(snapshot=K)`` lists) as tensors into the run directory."""
    if ctx.out is None:
        return
    out = {}
    for name, ss in snaps.items():
        out[name] = {"t": torch.tensor([float(x["t"]) for x in ss], dtype=torch.float64),
                     **{k: torch.stack([x[k] for x in ss]) for k in ("a", "w", "b")}}
    from pathlib import Path

    from ..record import atomic_torch_save
    atomic_torch_save(out, Path(ctx.out) / TRAJECTORIES)


def load_snapshots(run) -> dict:
    """``{name: snapshots}`` from the run directory (tensors only), or {} when there are none."""
    path = run.path / TRAJECTORIES
    if not path.exists():
        return {}
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return {name: [{"t": float(v["t"][i]), "a": v["a"][i], "w": v["w"][i], "b": v["b"][i]}
                       for i in range(len(v["t"]))] for name, v in d.items()}
    except Exception as e:  # noqa: BLE001 - truncated, garbage or another layout: name the file
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{path} is not a valid trajectories file ({type(e).__name__}: {msg}); "
                         "re-run with --overwrite") from None


def draw_trajectories(ax, snaps: list, *, system: int = 0, normalise: bool = True,
                      max_neurons: int = 200) -> None:
    """Neurons in the (w, b) plane: tails over time, start (grey), end (coloured by the sign of a,
    area proportional to |a|). The legend goes below the axes, never over the data."""
    from ..trajectory import trajectory_arrays
    t, x, y, a, size, xlabel = trajectory_arrays(snaps, system=system, normalise=normalise)
    K = min(x.shape[1], max_neurons)
    pos = a[-1, :K] >= 0
    for i in range(K):
        ax.plot(x[:, i], y[:, i], color=class_colour(1 if pos[i] else 0), alpha=0.45, lw=1.1,
                zorder=1)
    if normalise:
        th = torch.linspace(0, 2 * math.pi, 200)
        ax.plot(torch.cos(th), torch.sin(th), color="0.7", lw=0.8, ls=":", zorder=0)
    smax = max(float(size[-1, :K].max()), 1e-300)
    s = 10 + 140 * size[-1, :K] / smax
    ax.scatter(x[0, :K], y[0, :K], s=6, color="0.55", zorder=2, label="start")
    for flag, c, lab in ((True, 1, "a > 0"), (False, 0, "a < 0")):
        m = pos == flag
        ax.scatter(x[-1, :K][m], y[-1, :K][m], s=s[m], color=class_colour(c), edgecolor="k",
                   lw=0.6, zorder=3, label=f"end, {lab} (area ∝ |a|)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("bias b" + (" (direction)" if normalise else ""))
    ax.grid(alpha=0.3)
    ax.set_aspect("equal")
