"""The ReLU max-margin continuum on the line (science.md §3.3), along the regularisation path.

Data (:func:`meanfield.data.line_classes`): class -1 at ``-1, -1-s, ..., -1-(n-1)s``, class +1 at
``1, 1+s, ...`` (+-1 included). A mean-field ReLU network (all of (a, w, b) trained, neurons
spread on the unit circle, ``Particles.sphere``) follows the gradient flow of the logistic risk with
weight decay lambda, for several lambdas run as one batch, each to convergence. As lambda -> 0 the
regularised minimiser, normalised, tends to the maximum-margin classifier for the l2 variation
norm; the oracle is an independent linear program over a fine grid of unit neurons
(:mod:`meanfield.theory.maxmargin`): the l2 form gives a single classifier, ``f_1(x) = (relu(x+1) -
relu(1-x)) / 4`` on these data (ratios ``f(x)/f(1) = (x+1)/2`` on class +1, margin 1/sqrt 2 at unit
norm), the l1 form a whole face (an interval of ratios, computed by a second LP).

Reported: per lambda and per point x of class +1 (x > 1), the ratio ``f(x)/f(1)`` and its relative
error against the l2 oracle; the normalised margin ``min_j xi_j f(x_j) / norm_l2`` against
1/sqrt 2; whether the ratios lie in the l1 interval.

Time stepping: log-time ``dt = ds t`` from ``dt0`` until the step reaches ``dt_lam / max(lams)``,
then that fixed step to ``t_end = lam_t / min(lams)`` (lam_t e-foldings of the slowest weight
decay). A fixed step of ``0.5 / max(lams)`` left the lambda = 1e-2 system in a 2-cycle (risk
alternating 0.111/0.179); ``0.1 / max(lams)`` converges. Measured at m = 2000, lams = 1e-2, 1e-3,
1e-4 (t_end = 2e5): the ratios stop moving (to 1e-6) after ``lam t ~ 5``; the default lam_t = 8.

Tolerances (the ``_agrees`` keys are for the smallest lambda):

- ``ratio_x<x>`` (relative, ``ratio_tol = 0.02``): science.md's statement is "within about 1-2 %
  at lambda = 1e-4 with m of a few thousand". The error is the regularisation-path bias (the
  LP oracle is exact on its grid for these data; the flow is converged in time; m only needs to
  cover the circle). Measured along the path at m = 2000, x = 2: 2.8 %, 0.98 %, 0.33 % at lambda
  = 1e-2, 1e-3, 1e-4 (x = 3: 4.2 %, 1.5 %, 0.49 %), a decay like lambda^(1/2); 2 % is the
  published bound and 4-6x the measured error at 1e-4, and it fails for lambda >= 1e-2 and for
  any other point of the l1 face (b = 1/2 gives ratios 1.67, 2.33: errors of 11 %, 17 %).
  ``path_error_decreasing`` checks the error shrinks as lambda decreases.
- ``margin`` (relative, ``margin_tol = 2e-3``): the margin is stationary at the max-margin
  classifier, so its error is quadratic in the direction error: measured 0.35 %, 0.04 %,
  0.005 % for the path above, i.e. about 4 x (ratio error)^2; with the ratio tolerance of 2 %
  that is 1.6e-3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data import line_classes
from ..data.base import as_samples
from ..flow import FlowConfig, simulate
from ..particles import Particles
from ..record import Recorder
from ..theory.maxmargin import maxmargin_oracle, ratio_interval
from .registry import Experiment, ExperimentResult, RunContext, agreement, parse_dtype

RATIO_TOL = 0.02
MARGIN_TOL = 2e-3


@dataclass(frozen=True)
class MaxMarginConfig:
    """Parameters of the max-margin experiment.

    Attributes:
        points: atoms per class; spacing: distance between atoms of a class.
        m: neurons per network.
        lams: weight decays along the path (one batched system each).
        lam_t: t_end = lam_t / min(lams).
        dt0, ds: first step and log-time step of the first phase.
        dt_lam: the fixed step of the second phase is dt_lam / max(lams).
        grid: LP grid size (unit neurons on the circle; a multiple of 24).
        snapshot: neurons kept for the trajectory figure.
        dtype: float64 or float32.
    """

    points: int = 3
    spacing: float = 1.0
    m: int = 2000
    lams: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    lam_t: float = 8.0
    dt0: float = 0.05
    ds: float = 0.05
    dt_lam: float = 0.1
    grid: int = 720
    snapshot: int = 200
    dtype: str = "float64"


def _tag(x: float) -> str:
    return f"{x:g}".replace(".", "p").replace("-", "m")


def run(cfg: MaxMarginConfig, ctx: RunContext) -> ExperimentResult:
    dtype = parse_dtype(cfg.dtype)
    lams = tuple(float(v) for v in cfg.lams)
    if not lams or any(not (v > 0 and math.isfinite(v)) for v in lams):
        raise ValueError(f"lams must be positive finite weight decays; got {cfg.lams}")
    if cfg.points < 2:
        raise ValueError("points must be >= 2 (ratios need a second point of class +1)")
    data = as_samples(line_classes(cfg.points, cfg.spacing), dtype=dtype, device=ctx.device)
    X = data.X[:, 0].cpu().double().numpy()
    y = data.y.cpu().numpy()
    xpos = np.sort(X[y == 1])
    xq = xpos[1:]
    # --- the oracles
    l2 = maxmargin_oracle(X, y, norm="l2", grid=cfg.grid)
    l1 = maxmargin_oracle(X, y, norm="l1", grid=cfg.grid)
    f2 = l2.evaluate(xpos)
    ratio_l2 = f2[1:] / f2[0]
    iv1 = ratio_interval(X, y, xq, x0=xpos[0], norm="l1", grid=cfg.grid)
    iv2 = ratio_interval(X, y, xq, x0=xpos[0], norm="l2", grid=cfg.grid)
    # --- the flow along the path
    B = len(lams)
    P = Particles.sphere(cfg.m, 1, batch=B, activation="relu", seed=ctx.seed, dtype=dtype,
                         device=ctx.device)
    xs_t = torch.as_tensor(xpos, dtype=dtype, device=ctx.device)[:, None]

    def stats(c):
        f = c.particles.predict(xs_t, backend="dense")[..., 0]
        out = {f"ratio_x{_tag(x)}": f[:, i + 1] / f[:, 0] for i, x in enumerate(xq)}
        g = (c.outputs[..., 0] * (2.0 * c.data.y - 1.0)).min(-1).values
        out["margin"] = g / c.particles.variation_norm("l2")
        return out

    dt_fix = cfg.dt_lam / max(lams)
    t_end = cfg.lam_t / min(lams)
    t1 = min(dt_fix / cfg.ds, t_end)
    common = dict(loss="logistic", lam=lams, integrator="heun", backend=ctx.backend)
    r1 = simulate(P, data, FlowConfig(stepping="log", dt=cfg.dt0, ds=cfg.ds, t_end=t1, **common),
                  recorder=Recorder("log", num=25, t_min=min(0.1, t1 / 10), stats={"s": stats},
                                    snapshot=cfg.snapshot), seed=ctx.seed, progress=ctx.progress)
    history, snaps, final, steps = list(r1.history), list(r1.snapshots), r1.particles, r1.steps
    if t_end > t1:
        r2 = simulate(r1.particles, data, FlowConfig(stepping="fixed", dt=dt_fix, t_end=t_end - t1,
                                                      **common),
                      recorder=Recorder("log", num=40, t_min=(t_end - t1) / 1e3, stats={"s": stats},
                                        snapshot=cfg.snapshot), seed=ctx.seed, progress=ctx.progress)
        for r in r2.history[B:]:
            history.append({**r, "t": r["t"] + t1})
        snaps += [{**s, "t": s["t"] + t1} for s in r2.snapshots[1:]]
        final, steps = r2.particles, steps + r2.steps
    for r in history:
        if B == 1:
            r["system"] = 0
        r["lam"] = lams[int(r["system"])]
    # --- summary
    last = {int(r["system"]): r for r in history[-B:]}
    summary: dict = {"margin_l1_oracle": l1.margin, "t_end": t_end, "steps": steps, "m": cfg.m,
                     "dt_fixed": dt_fix}
    imin = int(np.argmin(lams))
    errs = []
    for s, lam in enumerate(lams):
        e = [abs(last[s][f"ratio_x{_tag(x)}"] / ratio_l2[i] - 1) for i, x in enumerate(xq)]
        errs.append(float(max(e)))
        summary[f"ratio_error_lam{_tag(lam)}"] = float(max(e))
        summary[f"margin_error_lam{_tag(lam)}"] = abs(last[s]["margin"] * math.sqrt(2) - 1)
    for i, x in enumerate(xq):
        name = f"ratio_x{_tag(x)}"
        agreement(summary, name, last[imin][name], ratio_l2[i], RATIO_TOL, relative=True)
        summary[f"{name}_l1_low"] = float(iv1.low[i])
        summary[f"{name}_l1_high"] = float(iv1.high[i])
        summary[f"{name}_l2_face_width"] = float(iv2.high[i] - iv2.low[i])
        summary[f"{name}_in_l1_face"] = bool(iv1.low[i] * (1 - RATIO_TOL) <= last[imin][name]
                                             <= iv1.high[i] * (1 + RATIO_TOL))
    agreement(summary, "margin", last[imin]["margin"], l2.margin, MARGIN_TOL, relative=True)
    summary["margin_oracle_vs_sqrt2"] = abs(l2.margin * math.sqrt(2) - 1)
    order = np.argsort(lams)[::-1]
    summary["path_error_decreasing"] = bool(all(errs[order[i + 1]] < errs[order[i]]
                                               for i in range(B - 1)))
    summary["lam_min"] = min(lams)
    figs = []
    if ctx.out is not None and ctx.figures:
        figs = _figures(history, snaps, final, data, l2, iv1, xpos, xq, lams, errs, summary, cfg, ctx)
    return ExperimentResult(summary, history, final, tuple(figs),
                            extra={"oracle_l2": l2, "oracle_l1": l1, "interval_l1": iv1,
                                   "snapshots": snaps})


def _figures(history, snaps, final, data, l2, iv1, xpos, xq, lams, errs, summary, cfg, ctx):
    import matplotlib.pyplot as plt
    from ..trajectory import plot_trajectories
    figs = []
    x = np.linspace(-1 - cfg.spacing * (cfg.points - 1) - 0.5, 1 + cfg.spacing * (cfg.points - 1) + 0.5, 401)
    xt = torch.as_tensor(x, dtype=final.dtype, device=final.device)[:, None]
    f = final.predict(xt, backend="dense")[..., 0].cpu().numpy()          # (B, 401)
    f1 = final.predict(torch.as_tensor(xpos[:1], dtype=final.dtype, device=final.device)[:, None],
                       backend="dense")[:, 0, 0].cpu().numpy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fam = [(np.maximum(x + b, 0) - np.maximum(b - x, 0)) / (2 + 2 * b) / 0.5 for b in (0.0, 1.0)]
    ax.fill_between(x, np.minimum(*fam), np.maximum(*fam), color="0.85",
                    label="l1 max-margin family f_b, b ∈ [0, 1] (science.md)")
    cmap = plt.get_cmap("viridis")
    for s, lam in enumerate(lams):
        ax.plot(x, f[s] / f1[s], color=cmap(s / max(1, len(lams) - 1)), lw=1.8,
                label=f"mean-field flow, λ = {lam:g}")
    ax.plot(x, l2.evaluate(x) / l2.evaluate([xpos[0]])[0], "k--", lw=1.5,
            label="l2 max-margin LP oracle")
    ax.errorbar(xq, (iv1.low + iv1.high) / 2, yerr=(iv1.high - iv1.low) / 2, fmt="none", ecolor="tab:red",
                capsize=4, lw=1.5, label="l1 LP: range of f(x)/f(1) over the optimal face")
    X = data.X[:, 0].cpu().numpy()
    ax.scatter(X, np.zeros_like(X), c=["tab:blue" if int(c) == 1 else "tab:red" for c in data.y],
               edgecolor="k", zorder=4, s=40, label="data (blue +1, red −1)")
    ax.set_xlabel("input x")
    ax.set_ylabel("normalised output f(x) / f(1)")
    ax.set_title(f"ReLU max-margin on the line: regularisation path (m = {cfg.m}, "
                 f"t = {summary['t_end']:.3g})")
    ax.legend(fontsize=7.5, loc="upper left")
    ax.grid(alpha=0.3)
    ctx.savefig(fig, "outputs.png")
    figs.append("outputs.png")

    fig, ax = plt.subplots(figsize=(6, 5.5))
    s = int(np.argmin(lams))
    plot_trajectories(snaps, system=s, normalise=True, ax=ax,
                      title=f"Neurons in the (w, b) plane (directions), λ = {lams[s]:g}\n"
                            f"t = 0 → {snaps[-1]['t']:.3g}; size ∝ |a| at the end")
    act = l2.active
    ax.scatter(act[:, 0], act[:, 1], marker="*", s=250, facecolor="none", edgecolor="k", lw=1.5,
               zorder=5, label="l2 LP oracle neurons")
    ax.legend(fontsize=8, loc="lower center")
    ax.set_aspect("equal")
    ctx.savefig(fig, "trajectories.png")
    figs.append("trajectories.png")

    fig, ax = plt.subplots(figsize=(6, 4.2))
    lam_arr = np.array(lams)
    order = np.argsort(lam_arr)
    ax.loglog(lam_arr[order], np.array(errs)[order], "o-", label="max relative error of f(x)/f(1), x ∈ class +1")
    merr = np.array([summary[f"margin_error_lam{_tag(l)}"] for l in lams])
    ax.loglog(lam_arr[order], np.maximum(merr[order], 1e-16), "s-", label="relative error of the margin vs 1/√2")
    ax.axhline(RATIO_TOL, color="k", ls="--", lw=1, label=f"ratio tolerance {RATIO_TOL:g}")
    ax.axhline(MARGIN_TOL, color="0.5", ls=":", lw=1, label=f"margin tolerance {MARGIN_TOL:g}")
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("relative error against the l2 LP oracle")
    ax.set_title("Regularisation path → l2 max-margin classifier")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "path_error.png")
    figs.append("path_error.png")
    return figs


EXPERIMENT = Experiment(
    name="maxmargin",
    description="ReLU max-margin continuum on the line (science.md §3.3): the weight-decay path of a "
                "mean-field ReLU net (logistic loss) against an l2/l1 LP max-margin oracle",
    config=MaxMarginConfig,
    run=run,
    claim="λ → 0: f(x)/f(1) on class +1 → the l2 max-margin LP classifier (b = 1), margin 1/√2",
)
