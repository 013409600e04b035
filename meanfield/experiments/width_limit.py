"""Finite width converges to mean-field, measured (issue 10, science.md §2).

The same data, initial law and time scaling, trained two ways:

* **finite two-layer nets** of widths m (``meanfield.deep.models.TwoLayerMeanField``, trained by
  :func:`meanfield.deep.train.train`: full-batch SGD with learning rate ``eta * m`` and torch
  ``weight_decay = lambda / m`` — the Euler scheme of the flow with step ``eta``), several seeds;
* **the mean-field reference**: a particle system of ``M >> m`` neurons from the same law, stepped by
  the same Euler scheme (:func:`meanfield.simulate`).

At a time t of order 1 the RMS distance between the two output functions (over a grid of inputs,
then over seeds) falls like ``m^{-1/2}`` (law of large numbers over neurons, propagated by the
flow's Lipschitz dependence on the initial measure). The fitted slope of log distance against log m
is compared with -1/2; ``slope_tol`` = 0.1 is the issue's bound, and it is also ~3 standard errors
of the fit at the defaults (the reported ``slope_se`` is the regression's standard error). The
reference's own error ~M^{-1/2} adds in quadrature: with M = 1e5 and m <= 1e3 it biases the
distance at the largest width by < 1 %. The tracking-in-time figure uses a reference of M/4.

Where it stops tracking: (a) the distance at fixed m against time up to ``long_t`` (figure
``tracking_time.png``; with weight decay on this 1-D problem it does not grow — measured, not
assumed); (b) a large learning rate makes the finite net leave the *continuous* flow: the distance
to a small-step reference grows like eta (Euler's order 1, ``step_error_order``) until the step
reaches the stability limit, where it jumps (``step_breaks_at``: the first eta whose distance
exceeds twice the order-1 extrapolation), figure ``tracking_step.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.base import Samples
from ..flow import FlowConfig, simulate
from ..particles import Particles
from ..record import Recorder
from .registry import Experiment, ExperimentResult, RunContext, agreement


@dataclass(frozen=True)
class WidthLimitConfig:
    """Parameters.

    Attributes:
        widths: finite widths m.
        seeds: independent initialisations per width.
        reference_m: particles of the mean-field reference.
        t: the time at which outputs are compared.
        eta: Euler step (the finite nets' learning rate is eta * m).
        lam: weight decay of the flow (torch weight_decay = lam / m).
        activation: activation name.
        n: data points (1-D, two classes with a non-convex class: |x| > 1 vs |x| < 1/2).
        long_t: final time of the tracking-in-time figure.
        tracking_m: width used for the tracking figures.
        steps_tested: learning rates eta for the large-step figure.
    """

    widths: tuple[int, ...] = (10, 30, 100, 300, 1000)
    seeds: int = 12
    reference_m: int = 100_000
    t: float = 1.0
    eta: float = 0.05
    lam: float = 1e-2
    activation: str = "tanh"
    n: int = 16
    long_t: float = 20.0
    tracking_m: int = 300
    steps_tested: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4)


def _data(n: int, dtype) -> Samples:
    x = torch.linspace(-2.0, 2.0, n, dtype=torch.float64)
    x = x[(x.abs() > 1.0) | (x.abs() < 0.5)]
    return Samples.from_masses(x[:, None], (x.abs() > 1.0).long(), dtype=dtype)


def _init(m: int, seed: int, act: str, dtype, device, batch: int = 1) -> Particles:
    return Particles.gaussian(m, 1, 1, scale_a=1.0, scale_w=1.0, scale_b=1.0, activation=act,
                              batch=batch, seed=seed, dtype=dtype, device=device)


def _train_finite(P: Particles, data: Samples, cfg: WidthLimitConfig, eta: float, t: float) -> torch.Tensor:
    """Train P (one system) as a finite torch net with SGD; return outputs on the grid."""
    from ..deep.models import TwoLayerMeanField
    from ..deep.train import TrainConfig, train
    net = TwoLayerMeanField.from_particles(P)
    m = P.m
    steps = int(round(t / eta))
    tc = TrainConfig(optimizer="sgd", lr=eta * m, epochs=steps, batch_size=None, loss="logistic",
                     loss_scale=1.0, weight_decay=cfg.lam / m, log_every=10 ** 9, seed=0)
    train(net, data, tc, progress=False)
    return net.to_particles()


def run(cfg: WidthLimitConfig, ctx: RunContext) -> ExperimentResult:
    dtype = torch.float64
    data = _data(cfg.n, dtype).to(device=ctx.device)
    grid = torch.linspace(-2.5, 2.5, 41, dtype=dtype, device=ctx.device)[:, None]
    flow = FlowConfig(loss="logistic", lam=cfg.lam, integrator="euler", dt=cfg.eta, t_end=cfg.t,
                      backend=ctx.backend)
    ref = simulate(_init(cfg.reference_m, ctx.seed + 10 ** 6, cfg.activation, dtype, ctx.device),
                   data, flow, recorder=Recorder(num=2)).particles
    f_ref = ref.predict(grid, backend=ctx.backend)[0, :, 0]

    history, dist = [], []
    for m in cfg.widths:
        d2 = []
        for s in range(cfg.seeds):
            P = _init(m, ctx.seed + 1000 * s + m, cfg.activation, dtype, ctx.device)
            fin = _train_finite(P, data, cfg, cfg.eta, cfg.t)
            f = fin.predict(grid, backend="dense")[0, :, 0]
            d2.append(float(((f - f_ref) ** 2).mean()))
        dm = math.sqrt(float(np.mean(d2)))
        dist.append(dm)
        history.append({"m": m, "distance": dm, "seeds": cfg.seeds, "t": cfg.t, "eta": cfg.eta})
    x, y = np.log(np.array(cfg.widths, float)), np.log(np.array(dist))
    A = np.vstack([x, np.ones_like(x)]).T
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    slope = float(coef[0])
    resid = y - A @ coef
    se = float(math.sqrt(resid @ resid / max(len(x) - 2, 1) / ((x - x.mean()) ** 2).sum()))
    summary: dict = {}
    agreement(summary, "slope", slope, -0.5, 0.1)
    summary.update({"slope_se": se, "prefactor": float(math.exp(coef[1])),
                    "distance_smallest_m": dist[0], "distance_largest_m": dist[-1],
                    "reference_m": cfg.reference_m, "t": cfg.t})

    # (a) tracking in time at one width (simulate runs the same Euler scheme as the finite net)
    times = cfg.eta * np.unique(np.geomspace(1, cfg.long_t / cfg.eta, 12).round())
    track_t = _distance_in_time(cfg, data, grid, ctx, times)
    for tt, dd in zip(times, track_t):
        history.append({"m": cfg.tracking_m, "distance_time": dd, "t": float(tt), "eta": cfg.eta})
    # (b) large steps: finite net with step eta vs the flow at t (reference: M particles, small step)
    fine = FlowConfig(loss="logistic", lam=cfg.lam, integrator="heun", dt=min(cfg.steps_tested) / 8,
                      t_end=cfg.t, backend=ctx.backend)
    P0 = _init(cfg.tracking_m, ctx.seed + 7, cfg.activation, dtype, ctx.device)
    f_flow = simulate(P0, data, fine, recorder=Recorder(num=2)).particles.predict(grid)[0, :, 0]
    step_d = []
    for eta in cfg.steps_tested:
        fin = _train_finite(P0, data, cfg, eta, cfg.t)
        step_d.append(float(((fin.predict(grid)[0, :, 0] - f_flow) ** 2).mean().sqrt()))
        history.append({"m": cfg.tracking_m, "distance_step": step_d[-1], "t": cfg.t, "eta": eta})
    st = np.array(cfg.steps_tested, float)
    sd = np.maximum(np.array(step_d), 1e-300)
    summary["step_error_order"] = float(np.polyfit(np.log(st[:3]), np.log(sd[:3]), 1)[0])
    linear = sd[0] * st / st[0]
    broken = [float(e) for e, d_, l_ in zip(st, sd, linear) if d_ > 2 * l_]
    summary["step_breaks_at"] = broken[0] if broken else float("nan")
    summary["distance_time_ratio"] = float(track_t[-1] / track_t[0]) if track_t[0] > 0 else float("nan")
    figs = []
    if ctx.out is not None and ctx.figures:
        figs = _figures(cfg, dist, slope, se, coef, times, track_t, step_d, ctx)
    return ExperimentResult(summary, history, None, tuple(figs),
                            extra={"distances": dist, "f_ref": f_ref})


def _distance_in_time(cfg, data, grid, ctx, times) -> list[float]:
    """RMS distance (over seeds and grid) between width-m systems and the reference at each time.

    The flow is advanced segment by segment (Euler with a fixed step is exactly restartable)."""
    dtype = grid.dtype
    ref = _init(max(cfg.reference_m // 4, 1), ctx.seed + 10 ** 6, cfg.activation, dtype, ctx.device)
    fin = _init(cfg.tracking_m, ctx.seed + 99, cfg.activation, dtype, ctx.device, batch=cfg.seeds)
    out, t_prev = [], 0.0
    for tt in times:
        seg = FlowConfig(loss="logistic", lam=cfg.lam, integrator="euler", dt=cfg.eta,
                         t_end=float(tt - t_prev), backend=ctx.backend)
        ref = simulate(ref, data, seg, recorder=Recorder(num=2)).particles
        fin = simulate(fin, data, seg, recorder=Recorder(num=2)).particles
        f_ref = ref.predict(grid, backend=ctx.backend)[0, :, 0]
        f = fin.predict(grid, backend=ctx.backend)[:, :, 0]
        out.append(float(((f - f_ref) ** 2).mean().sqrt()))
        t_prev = float(tt)
    return out


def _figures(cfg, dist, slope, se, coef, times, track_t, step_d, ctx) -> list[str]:
    import matplotlib.pyplot as plt
    w = np.array(cfg.widths, float)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.loglog(w, dist, "o-", lw=2, label=f"finite nets (SGD), {cfg.seeds} seeds: slope {slope:.3f} ± {se:.3f}")
    anchor = math.exp(float(np.mean(np.log(dist) + 0.5 * np.log(w))))  # best-fitting c m^(-1/2)
    ax.loglog(w, anchor * w ** -0.5, "k--", label="theory: ∝ m^(−1/2)")
    ax.set_xlabel("width m (neurons)")
    ax.set_ylabel(f"RMS distance to mean-field output at t = {cfg.t:g}")
    ax.set_title(f"Finite width → mean field ({cfg.activation}, logistic, λ = {cfg.lam:g}, "
                 f"reference M = {cfg.reference_m:.0e})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "width_limit.png")

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.loglog(times, track_t, "o-", lw=2, label=f"m = {cfg.tracking_m}, {cfg.seeds} seeds")
    ax.axvline(cfg.t, color="0.5", ls=":", label=f"comparison time t = {cfg.t:g}")
    ax.set_xlabel("time t")
    ax.set_ylabel("RMS distance to mean-field output")
    ax.set_title(f"Finite width vs mean field over time (λ = {cfg.lam:g})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "tracking_time.png")

    fig, ax = plt.subplots(figsize=(6, 4.2))
    st = np.array(cfg.steps_tested)
    ax.loglog(st, step_d, "o-", lw=2, label=f"finite net, m = {cfg.tracking_m}, SGD lr = η·m")
    ax.loglog(st, step_d[0] * st / st[0], "k--", label="∝ η (Euler, order 1)")
    ax.set_xlabel("step η (learning rate / m)")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(st)
    ax.set_xticklabels([f"{v:g}" for v in st])
    ax.set_ylabel(f"RMS distance to the continuous flow at t = {cfg.t:g}")
    ax.set_title("Where finite width stops tracking: large steps leave the flow", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "tracking_step.png")
    return ["width_limit.png", "tracking_time.png", "tracking_step.png"]


EXPERIMENT = Experiment(
    name="width_limit",
    description="Finite two-layer nets (SGD, lr = eta*m) converge to the mean-field flow: RMS output "
                "distance ~ m^(-1/2); where tracking stops (long times, large steps)",
    config=WidthLimitConfig,
    run=run,
    claim="distance between finite-width and mean-field outputs at t = O(1) falls like m^(−1/2)",
)
