"""The three atoms with a trainable ReLU network (docs/science.md §3.2, the open case).

Data: atoms -1, 0, 1 with relative masses p1, p2, p3; class +1 = {-1, 1}, class -1 = {0}
(:func:`meanfield.data.three_atoms`). Network: a mean-field ReLU network, all of (a, w, b)
trained, neurons spread out at t = 0 ((w, b) uniform on the unit circle, a = +-scale_a,
``Particles.sphere``), exponential loss. Two systems run as one batch: lambda = 0 and a small
lambda > 0.

What is reported: the absolute within-class spread of class +1, ``gap = f(1) - f(-1)``, against
time for both systems (the statistic of the unbounded regime, docs/science.md §1), the outputs, the
variation norm, and the neurons' trajectories in the (w, b) plane. The frozen-feature law
``log(p3 / (2 p1))`` (what the same data give with flat frozen features, experiment
``three_atoms``) is drawn for reference only: **no theory is claimed for this case**, so no
``_agrees`` key is written.

Parameters: ``flow.lam`` is the weight decay of the second system; ``flow.t_end``, ``flow.dt``,
``flow.ds``, ``flow.dt_max`` the stepping below; every other ``flow.X`` (loss, integrator, tau,
backend) applies to both systems.

Time stepping. Without weight decay the parameters grow like log t: steps ``dt = ds * t``
(log-time). With lambda > 0 the flow settles at the regularised minimiser, whose curvature does not
decay, so ``dt = ds * t`` eventually exceeds the stability limit: both systems step together in
log-time until ``dt`` reaches ``dt_max`` (t = dt_max / ds), then the lambda = 0 system continues in
log-time to ``t_end`` and the lambda > 0 system with the fixed step ``dt_max`` to
``min(t_end, lam_t / lam)`` (lam_t e-foldings of the weight decay). (So ``flow.dt_max`` is the
switching step here: the phase-2 log-time system is not capped by it.) Each phase checkpoints
through the engine (``checkpoint-phase1.pt``, ``checkpoint-phase2-lam0.pt``,
``checkpoint-phase2-lam.pt``): a killed run resumes bit for bit. Measured at the defaults:
``dt_max = 5`` leaves oscillations of about +-0.02 in the gap of the lambda > 0 system, ``2`` about
+-0.005, ``1`` none visible (risk 0.03083, 0.03078, 0.03076): the default is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..flow import FlowConfig, simulate
from ..particles import Particles
from ..record import Recorder
from ..study.spec import DataSpec
from ..plotting import class_colour
from ..study.batching import check_batch, split_history, stack_particles
from ..study.snapshots import draw_trajectories, load_snapshots, save_snapshots
from .registry import (Experiment, ExperimentResult, RunContext, Science, Theory, flow_for,
                       parse_dtype)
from .three_atoms import THRESHOLD, gap_law, samples

TAGS = ("lam0", "lam")
#: what may differ between the points of one batched run (the masses, the initial |a|)
BATCH_KEYS = ("data.p1", "data.p2", "data.p3", "scale_a")


@dataclass(frozen=True)
class ThreeAtomsReluConfig:
    """Parameters of the trainable-ReLU three-atom experiment.

    Attributes:
        data: the atoms -1, 0, 1 with relative masses data.p1, data.p2, data.p3.
        flow: exponential loss, Heun; flow.lam is the weight decay of the second system (the first has 0); t_end, dt, ds, dt_max: the stepping (module docstring).
        m: number of neurons.
        scale_a: initial |a|.
        lam_t: the lambda > 0 system runs to min(flow.t_end, lam_t / flow.lam).
        snapshot: neurons kept for the trajectory figure.
        dtype: float64 or float32.
    """

    data: DataSpec = DataSpec("three_atoms", {"p1": 1.0, "p2": 1.0, "p3": 1.0})
    flow: FlowConfig = FlowConfig(loss="exponential", lam=1e-3, integrator="heun", dt=0.01,
                                  ds=0.005, dt_max=1.0, t_end=1e6, stepping="log")
    m: int = 400
    scale_a: float = 1.0
    lam_t: float = 10.0
    snapshot: int = 150
    dtype: str = "float64"


def _stats(c):
    f = c.outputs[..., 0]
    return {"f_minus1": f[:, 0], "f_0": f[:, 1], "f_1": f[:, 2], "gap": f[:, 2] - f[:, 0]}


def _shift(rows, dt: float, system: int):
    return [{**r, "t": r["t"] + dt, "system": system} for r in rows]


def _snaps(snaps, s: int, dt: float = 0.0):
    return [{"t": x["t"] + dt, "a": x["a"][s:s + 1], "w": x["w"][s:s + 1], "b": x["b"][s:s + 1]}
            for x in snaps]


def _check(cfg: ThreeAtomsReluConfig) -> None:
    lam = cfg.flow.lam
    if isinstance(lam, tuple) or not lam > 0:
        raise ValueError(f"flow.lam must be one number > 0 (the first system already has lambda = 0); "
                         f"got {lam}")
    if cfg.flow.dt_max is None:
        raise ValueError("flow.dt_max must be set: it is the step at which the stepping switches")


def _pick(data: list, idx: list):
    return data[idx[0]] if len(idx) == 1 else [data[i] for i in idx]


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Configurations (differing only in BATCH_KEYS) and seeds as one batched flow per phase.

    Point i is systems 2i (lambda = 0) and 2i + 1 (lambda > 0) of every phase; its particles start
    as in a single run of its seed, and a single run is this path with one configuration. Returns
    one :class:`ExperimentResult` per configuration (history ``system`` 0: lambda = 0, 1: lambda).
    """
    check_batch(list(cfgs), list(seeds), BATCH_KEYS)
    c0 = cfgs[0]
    _check(c0)
    lam, N = c0.flow.lam, len(cfgs)
    dtype = parse_dtype(c0.dtype)
    data = [samples(c, dtype, ctx.device) for c in cfgs]
    sys_data = [d for d in data for _ in TAGS]                 # system 2i + s: point i
    P = stack_particles([Particles.sphere(c.m, 1, batch=2, scale_a=c.scale_a, activation="relu",
                                          seed=s, dtype=dtype, device=ctx.device)
                         for c, s in zip(cfgs, seeds)])
    flow = flow_for(c0.flow, ctx)
    dt_max, ds = flow.dt_max, flow.ds
    t_switch = min(dt_max / ds, flow.t_end)
    rec = lambda t_min: Recorder("log", num=40, t_min=t_min, stats={"o": _stats},  # noqa: E731
                                 snapshot=c0.snapshot)
    # phase 1: every system, log-time
    r1 = simulate(P, _pick(sys_data, list(range(2 * N))),
                  replace(flow, lam=(0.0, lam) * N, stepping="log", t_end=t_switch, dt_max=None),
                  recorder=rec(min(1e-2, t_switch / 10)), seed=seeds[0], progress=ctx.progress,
                  checkpoint=ctx.checkpoint("checkpoint-phase1.pt"),
                  checkpoint_every=ctx.checkpoint_every)
    hist = split_history(r1.history, 2 * N)
    snaps = [_snaps(r1.snapshots, q) for q in range(2 * N)]
    finals = [r1.particles.select(q) for q in range(2 * N)]
    t_final = [t_switch] * 2
    steps = [r1.steps] * 2
    # phase 2: lambda = 0 in log-time, lambda > 0 with the fixed step dt_max (one checkpoint each)
    ends = (flow.t_end, max(t_switch, min(flow.t_end, c0.lam_t / lam)))
    for s, lam_s, stepping in ((0, 0.0, "log"), (1, lam, "fixed")):
        span = ends[s] - t_switch
        if span <= 0:
            continue
        idx = list(range(s, 2 * N, 2))
        r2 = simulate(stack_particles([finals[q] for q in idx]), _pick(sys_data, idx),
                      replace(flow, lam=lam_s, stepping=stepping, dt=dt_max, t_end=span,
                              dt_max=None),
                      recorder=rec(span / 300), seed=seeds[0], progress=ctx.progress,
                      checkpoint=ctx.checkpoint(f"checkpoint-phase2-{TAGS[s]}.pt"),
                      checkpoint_every=ctx.checkpoint_every)
        h2 = split_history(r2.history, N)
        for i, q in enumerate(idx):
            hist[q] += _shift(h2[i][1:], t_switch, q)
            snaps[q] += _snaps(r2.snapshots[1:], i, t_switch)
            finals[q] = r2.particles.select(i) if N > 1 else r2.particles
        t_final[s], steps[s] = t_switch + r2.t, steps[s] + r2.steps
    out = []
    for i, c in enumerate(cfgs):
        h = [_shift(hist[2 * i + s], 0.0, s) for s in (0, 1)]      # system ids 0, 1 per point
        p = data[i].p.tolist()
        law = math.log(p[2] / (2 * p[0]))
        summary: dict = {}
        for s, tag in enumerate(TAGS):
            last = h[s][-1]
            summary.update({f"gap_{tag}": last["gap"], f"f_minus1_{tag}": last["f_minus1"],
                            f"f_0_{tag}": last["f_0"], f"f_1_{tag}": last["f_1"],
                            f"norm_l2_{tag}": last["norm_l2"], f"gap_over_norm_{tag}":
                            last["gap"] / last["norm_l2"], f"risk_{tag}": last["risk"],
                            f"t_end_{tag}": t_final[s], f"steps_{tag}": steps[s]})
        summary.update({"lam": lam, "frozen_feature_law": law, "p1": p[0], "p2": p[1], "p3": p[2],
                        "m": c.m})
        sn = dict(zip(TAGS, (snaps[2 * i], snaps[2 * i + 1])))
        out.append(ExperimentResult(summary, h[0] + h[1],
                                    stack_particles([finals[2 * i], finals[2 * i + 1]]),
                                    extra={"snapshots": sn, "law": law}))
    return out


def run(cfg: ThreeAtomsReluConfig, ctx: RunContext) -> ExperimentResult:
    res = run_batch([cfg], [ctx.seed], ctx)[0]
    save_snapshots(ctx, res.extra["snapshots"])
    return res


def plot(run) -> list[str]:
    """gap.png, trajectories.png (when the run kept snapshots) and output.png, from the files."""
    import matplotlib.pyplot as plt
    cfg, summ = run.config, run.summary
    law = summ["frozen_feature_law"]
    labels = ("λ = 0", f"λ = {cfg.flow.lam:g}")
    colors = ("tab:purple", "tab:orange")   # systems (classes keep CLASS_COLOURS)
    hist = split_history(run.history, 2)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in (0, 1):
        rows = [r for r in hist[s] if r["t"] > 0]
        ax.plot([r["t"] for r in rows], [r["gap"] for r in rows], color=colors[s], lw=2,
                label=f"ReLU flow, {labels[s]}")
    ax.axhline(law, color="k", ls="--", lw=1,
               label=f"frozen-feature law log(p₃/2p₁) = {law:.3f} (reference, not claimed)")
    ax.axhspan(-THRESHOLD, THRESHOLD, color="0.85", label=f"collapsed: |gap| < {THRESHOLD:g}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time t (log scale)")
    ax.set_ylabel("within-class spread f(1) − f(−1)")
    ax.set_title(f"Three atoms, trainable ReLU (m = {cfg.m}), exponential loss\n"
                 f"p = ({summ['p1']:.3g}, {summ['p2']:.3g}, {summ['p3']:.3g})", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    run.savefig(fig, "gap.png")
    figs = ["gap.png"]

    snaps = load_snapshots(run)
    if snaps:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
        for s, tag in enumerate(TAGS):
            draw_trajectories(axes[s], snaps[tag], normalise=True)
            axes[s].set_title(f"{labels[s]}: directions of (w, b), t = 0 → {snaps[tag][-1]['t']:.3g}",
                              fontsize=9)
        h, lab = axes[0].get_legend_handles_labels()
        fig.legend(h, lab, loc="lower center", ncol=3, fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        run.savefig(fig, "trajectories.png")
        figs.append("trajectories.png")

    P = run.particles
    if P is not None:
        data = samples(cfg, P.dtype)
        xs = torch.linspace(-2, 2, 401, dtype=P.dtype)[:, None]
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for s in (0, 1):
            net = P.select(s)
            ax.plot(xs[:, 0], net.predict(xs, backend="dense")[0, :, 0], color=colors[s], lw=2,
                    label=f"{labels[s]}, t = {summ[f't_end_{TAGS[s]}']:.3g}")
            fa = net.predict(data.X, backend="dense")[0, :, 0]
            ax.scatter(data.X[:, 0], fa, c=[class_colour(int(c)) for c in data.y], s=50,
                       edgecolor="k", zorder=3)
        ax.scatter([], [], color=class_colour(1), edgecolor="k", label="atoms of class +1 (−1 and 1)")
        ax.scatter([], [], color=class_colour(0), edgecolor="k", label="atom of class −1 (0)")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("input x")
        ax.set_ylabel("network output f(x)")
        ax.set_title("Output functions at the end of the runs")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        run.savefig(fig, "output.png")
        figs.append("output.png")
    return figs


EXPERIMENT = Experiment(
    name="three_atoms_relu",
    description="Three atoms -1,0,1 with a trainable ReLU network, exponential loss, lambda = 0 and "
                "lambda > 0: f(1)-f(-1) against time (open case of docs/science.md §3.2; no theory claimed)",
    config=ThreeAtomsReluConfig,
    run=run,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    small={"m": 100, "flow.t_end": 1e3, "flow.lam": 1e-2, "lam_t": 5.0, "snapshot": 20},
    science=Science(
        claim="open case: does the within-class spread f(1) − f(−1) vanish with trainable ReLU features?",
        source="docs/science.md §3.2 (the open case: trainable inner weights)",
        regime="unbounded", statistic="|gap_lam0|", threshold=THRESHOLD, collapsed_below=True,
        theory=Theory(gap_law, ("data.p1", "data.p3"),
                      "frozen-feature law p₃ = 2p₁ (reference only)", collapsed="zero"),
        labels={"data.p1": "p₁ (relative mass of atom −1)", "data.p2": "p₂ (relative mass of atom 0)",
                "data.p3": "p₃ (relative mass of atom +1)", "|gap_lam0|": "|f(1) − f(−1)|, λ = 0",
                "|gap_lam|": "|f(1) − f(−1)|, λ > 0", "flow.lam": "weight decay λ of the second system"}),
)
