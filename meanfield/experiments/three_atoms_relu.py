"""The three atoms with a trainable ReLU network (science.md §3.2, the open case).

Data: atoms -1, 0, 1 with relative masses p1, p2, p3; class +1 = {-1, 1}, class -1 = {0}
(:func:`meanfield.data.three_atoms`). Network: a mean-field ReLU network, all of (a, w, b)
trained, neurons spread out at t = 0 ((w, b) uniform on the unit circle, a = +-scale_a,
``Particles.sphere``), exponential loss. Two systems run as one batch: lambda = 0 and a small
lambda > 0.

What is reported: the absolute within-class spread of class +1, ``gap = f(1) - f(-1)``, against
time for both systems (the statistic of the unbounded regime, science.md §1), the outputs, the
variation norm, and the neurons' trajectories in the (w, b) plane. The frozen-feature law
``log(p3 / (2 p1))`` (what the same data give with flat frozen features, experiment
``three_atoms``) is drawn for reference only: **no theory is claimed for this case**, so no
``_agrees`` key is written.

Time stepping. Without weight decay the parameters grow like log t: steps ``dt = ds * t``
(log-time). With lambda > 0 the flow settles at the regularised minimiser, whose curvature does not
decay, so ``dt = ds * t`` eventually exceeds the stability limit: both systems step together in
log-time until ``dt`` reaches ``dt_max`` (t = dt_max / ds), then the lambda = 0 system continues in
log-time to ``t_end`` and the lambda > 0 system with the fixed step ``dt_max`` to
``min(t_end, lam_t / lam)`` (lam_t e-foldings of the weight decay). Measured at the defaults:
``dt_max = 5`` leaves oscillations of about +-0.02 in the gap of the lambda > 0 system, ``2`` about
+-0.005, ``1`` none visible (risk 0.03083, 0.03078, 0.03076): the default is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import three_atoms
from ..data.base import as_samples
from ..flow import FlowConfig, simulate
from ..particles import Particles
from ..record import Recorder
from .registry import Experiment, ExperimentResult, RunContext, parse_dtype


@dataclass(frozen=True)
class ThreeAtomsReluConfig:
    """Parameters of the trainable-ReLU three-atom experiment.

    Attributes:
        p1, p2, p3: relative masses of the atoms -1, 0, 1.
        m: number of neurons.
        lam: the weight decay of the second system (the first has lambda = 0).
        scale_a: initial |a|.
        t_end: final time of the lambda = 0 system.
        lam_t: the lambda > 0 system runs to min(t_end, lam_t / lam).
        dt: first step; ds: log-time step; dt_max: the largest step (see the module docstring).
        snapshot: neurons kept for the trajectory figure.
        dtype: float64 or float32.
    """

    p1: float = 1.0
    p2: float = 1.0
    p3: float = 1.0
    m: int = 400
    lam: float = 1e-3
    scale_a: float = 1.0
    t_end: float = 1e6
    lam_t: float = 10.0
    dt: float = 0.01
    ds: float = 0.005
    dt_max: float = 1.0
    snapshot: int = 150
    dtype: str = "float64"


def _stats(c):
    f = c.outputs[..., 0]
    return {"f_minus1": f[:, 0], "f_0": f[:, 1], "f_1": f[:, 2], "gap": f[:, 2] - f[:, 0]}


def _shift(rows, dt: float, system: int | None = None):
    out = []
    for r in rows:
        r = dict(r)
        r["t"] = r["t"] + dt
        if system is not None:
            r["system"] = system
        out.append(r)
    return out


def _snaps(snaps, s: int, dt: float = 0.0):
    return [{"t": x["t"] + dt, "a": x["a"][s:s + 1], "w": x["w"][s:s + 1], "b": x["b"][s:s + 1]}
            for x in snaps]


def run(cfg: ThreeAtomsReluConfig, ctx: RunContext) -> ExperimentResult:
    if not cfg.lam > 0:
        raise ValueError(f"lam must be > 0 (the first system already has lambda = 0); got {cfg.lam}")
    dtype = parse_dtype(cfg.dtype)
    data = as_samples(three_atoms(cfg.p1, cfg.p2, cfg.p3), dtype=dtype, device=ctx.device)
    P = Particles.sphere(cfg.m, 1, batch=2, scale_a=cfg.scale_a, activation="relu", seed=ctx.seed,
                         dtype=dtype, device=ctx.device)
    t_switch = min(cfg.dt_max / cfg.ds, cfg.t_end)
    common = dict(loss="exponential", integrator="heun", backend=ctx.backend)
    rec = lambda t_end, t_min: Recorder("log", num=40, t_min=t_min, stats={"o": _stats},  # noqa: E731
                                        snapshot=cfg.snapshot)
    # phase 1: both systems, log-time
    r1 = simulate(P, data, FlowConfig(lam=(0.0, cfg.lam), stepping="log", dt=cfg.dt, ds=cfg.ds,
                                      t_end=t_switch, **common),
                  recorder=rec(t_switch, min(1e-2, t_switch / 10)), seed=ctx.seed, progress=ctx.progress)
    hist = {s: [r for r in r1.history if r["system"] == s] for s in (0, 1)}
    snaps = {s: _snaps(r1.snapshots, s) for s in (0, 1)}
    finals = [r1.particles.select(0), r1.particles.select(1)]
    t_final = [t_switch, t_switch]
    steps = [r1.steps, r1.steps]
    # phase 2: lambda = 0 in log-time, lambda > 0 with the fixed step dt_max
    ends = (cfg.t_end, max(t_switch, min(cfg.t_end, cfg.lam_t / cfg.lam)))
    for s, lam, stepping in ((0, 0.0, "log"), (1, cfg.lam, "fixed")):
        span = ends[s] - t_switch
        if span <= 0:
            continue
        r2 = simulate(finals[s], data, FlowConfig(lam=lam, stepping=stepping, dt=cfg.dt_max,
                                                  ds=cfg.ds, t_end=span, **common),
                      recorder=rec(span, span / 300), seed=ctx.seed, progress=ctx.progress)
        hist[s] += _shift(r2.history[1:], t_switch, s)
        snaps[s] += _snaps(r2.snapshots[1:], 0, t_switch)
        finals[s], t_final[s], steps[s] = r2.particles, t_switch + r2.t, steps[s] + r2.steps
    p = data.p.tolist()
    law = math.log(p[2] / (2 * p[0]))
    summary: dict = {}
    for s, tag in ((0, "lam0"), (1, "lam")):
        last = hist[s][-1]
        summary.update({f"gap_{tag}": last["gap"], f"f_minus1_{tag}": last["f_minus1"],
                        f"f_0_{tag}": last["f_0"], f"f_1_{tag}": last["f_1"],
                        f"norm_l2_{tag}": last["norm_l2"], f"gap_over_norm_{tag}":
                        last["gap"] / last["norm_l2"], f"risk_{tag}": last["risk"],
                        f"t_end_{tag}": t_final[s], f"steps_{tag}": steps[s]})
    summary.update({"lam": cfg.lam, "frozen_feature_law": law, "p1": p[0], "p2": p[1], "p3": p[2],
                    "m": cfg.m})
    history = hist[0] + hist[1]
    figs = []
    if ctx.out is not None and ctx.figures:
        figs = _figures(hist, snaps, finals, data, law, cfg, ctx)
    both = Particles(torch.cat([f.a for f in finals]), torch.cat([f.w for f in finals]),
                     torch.cat([f.b for f in finals]), "relu")
    return ExperimentResult(summary, history, both, tuple(figs),
                            extra={"snapshots": snaps, "law": law})


def _figures(hist, snaps, finals, data, law, cfg, ctx) -> list[str]:
    import matplotlib.pyplot as plt
    from ..trajectory import plot_trajectories
    labels = ("λ = 0", f"λ = {cfg.lam:g}")
    colors = ("tab:blue", "tab:orange")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in (0, 1):
        rows = [r for r in hist[s] if r["t"] > 0]
        ax.plot([r["t"] for r in rows], [r["gap"] for r in rows], color=colors[s], lw=2,
                label=f"ReLU flow, {labels[s]}")
    ax.axhline(law, color="k", ls="--", lw=1,
               label=f"frozen-feature law log(p₃/2p₁) = {law:.3f} (reference, not claimed)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time t (log scale)")
    ax.set_ylabel("within-class spread f(1) − f(−1)")
    ax.set_title(f"Three atoms, trainable ReLU (m = {cfg.m}), exponential loss\n"
                 f"p = ({data.p[0]:.3g}, {data.p[1]:.3g}, {data.p[2]:.3g})")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ctx.savefig(fig, "gap.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for s in (0, 1):
        plot_trajectories(snaps[s], normalise=True, ax=axes[s],
                          title=f"{labels[s]}: directions of (w, b), t = 0 → {snaps[s][-1]['t']:.3g}\n"
                                "(tails: paths; size ∝ |a| at the end)")
        axes[s].set_aspect("equal")
    fig.tight_layout()
    ctx.savefig(fig, "trajectories.png")

    xs = torch.linspace(-2, 2, 401, dtype=finals[0].dtype, device=finals[0].device)[:, None]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in (0, 1):
        f = finals[s].predict(xs, backend="dense")[0, :, 0].cpu()
        ax.plot(xs[:, 0].cpu(), f, color=colors[s], lw=2,
                label=f"{labels[s]}, t = {hist[s][-1]['t']:.3g}")
        fa = finals[s].predict(data.X, backend="dense")[0, :, 0].cpu()
        ax.scatter(data.X[:, 0].cpu(), fa, c=["tab:green" if int(c) == 1 else "tab:red" for c in data.y],
                   s=50, edgecolor="k", zorder=3)
    ax.scatter([], [], c="tab:green", edgecolor="k", label="atoms of class +1 (−1 and 1)")
    ax.scatter([], [], c="tab:red", edgecolor="k", label="atom of class −1 (0)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("input x")
    ax.set_ylabel("network output f(x)")
    ax.set_title("Output functions at the end of the runs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ctx.savefig(fig, "output.png")
    return ["gap.png", "trajectories.png", "output.png"]


EXPERIMENT = Experiment(
    name="three_atoms_relu",
    description="Three atoms -1,0,1 with a trainable ReLU network, exponential loss, lambda = 0 and "
                "lambda > 0: f(1)-f(-1) against time (open case of science.md §3.2; no theory claimed)",
    config=ThreeAtomsReluConfig,
    run=run,
    claim="open case: does the within-class spread f(1) − f(−1) vanish with trainable ReLU features?",
)
