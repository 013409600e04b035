"""The three-atom law (docs/science.md §3.2): non-convex class geometry defeats collapse.

Data: atoms -1, 0, 1 with relative masses p1, p2, p3; class +1 = {-1, 1}, class -1 = {0}.
Network: smoothstep neurons frozen at the inner positions (w, b) = (-1, 0), (1, 1), (1, 0) in
fractions q1, q2, q3, random Gaussian outer weights, exponential loss, no weight decay, log-time
stepping. The gradient flow of the outer weights gives

.. math::

    f(1) - f(-1) \\to \\log\\frac{q_3 p_3}{2 q_1 p_1}

for every initial condition: the class {-1, 1} collapses only when q3 p3 = 2 q1 p1.

Tolerance ``gap_tol`` = 1e-2 (absolute): the flow approaches its limit like 1/t (docs/science.md §3.2),
so at the default t_end = 1e6 the transient is ~1e-6; Heun in log-time with ds = 0.01 has a global
error O(ds^2) ~ 1e-4 (measured: 1.4e-5 at the defaults). 1e-2 is the issue's bound and still
fails for any other law (e.g. log(p3/p1) is off by log 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..flow import FlowConfig, simulate
from ..particles import Particles, group_sizes
from ..record import Recorder
from ..study.spec import DataSpec
from ..plotting import class_colour
from ..study.batching import check_batch, split_history, stack_particles
from .registry import (Experiment, ExperimentResult, RunContext, Science, Theory, agreement,
                       flow_for, parse_dtype)

POSITIONS = ((-1.0, 0.0), (1.0, 1.0), (1.0, 0.0))  # sigma(-x), sigma(x + 1), sigma(x)
THRESHOLD = 0.05


@dataclass(frozen=True)
class ThreeAtomsConfig:
    """Parameters of the three-atom experiment.

    Attributes:
        data: the atoms -1, 0, 1 with relative masses data.p1, data.p2, data.p3 (normalised to sum 1).
        flow: the flow of the outer weights (exponential loss, frozen inner weights, log-time steps).
        q1, q2, q3: relative fractions of neurons at the three inner positions.
        m: number of neurons.
        scale_a: standard deviation of the initial outer weights.
        dtype: float64 or float32.
    """

    data: DataSpec = DataSpec("three_atoms", {"p1": 1.0, "p2": 1.0, "p3": 1.0})
    flow: FlowConfig = FlowConfig(loss="exponential", lam=0.0, integrator="heun", dt=0.01,
                                  ds=0.01, t_end=1e6, stepping="log", train_inner=False)
    q1: float = 1.0
    q2: float = 1.0
    q3: float = 1.0
    m: int = 300
    scale_a: float = 1.0
    dtype: str = "float64"


def gap_theory(p1: float, p3: float, q1: float = 1.0, q3: float = 1.0) -> float:
    """The limit of f(1) - f(-1): log(q3 p3 / (2 q1 p1)) (docs/science.md §3.2)."""
    return math.log(q3 * p3 / (2.0 * q1 * p1))


def gap_law(p) -> float:
    """:func:`gap_theory` of flat dotted parameters (``data.p1``, ``data.p3``, ``q1``, ``q3``)."""
    return gap_theory(float(p["data.p1"]), float(p["data.p3"]), float(p.get("q1", 1.0)),
                      float(p.get("q3", 1.0)))


def samples(cfg, dtype=torch.float64, device="cpu"):
    """The atoms of the config's distribution (three atoms in 1-D: -1, 0, 1). Raises ValueError."""
    s = cfg.data.build().sample(dtype=dtype, device=device)
    if s.d != 1 or s.n != 3 or s.X[:, 0].tolist() != [-1.0, 0.0, 1.0]:
        raise ValueError(f"three_atoms needs the atoms -1, 0, 1 (data=three_atoms); got "
                         f"{cfg.data.name!r} with {s.n} points in {s.d}-D: use the experiment "
                         "'collapse' for other distributions")
    if not (float(s.p[0]) > 0 and float(s.p[2]) > 0):
        raise ValueError("data.p1 and data.p3 must be > 0: the law log(q3 p3 / 2 q1 p1) needs mass "
                         f"on both atoms of class +1 (got masses {s.p.tolist()})")
    return s


def check_fractions(cfg) -> None:
    """Refuse neuron fractions the law cannot use, before anything runs. Raises ValueError.

    q1 and q3 must be > 0 and leave at least one of the ``m`` neurons at sigma(-x) and at
    sigma(x) (the law log(q3 p3 / 2 q1 p1) divides by q1 and takes the log of q3); q2 >= 0."""
    q = (cfg.q1, cfg.q2, cfg.q3)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in q):
        raise ValueError(f"q1, q2, q3 must be finite numbers, got {list(q)}")
    if not (cfg.q1 > 0 and cfg.q3 > 0):
        raise ValueError("q1 and q3 must be > 0 (the law log(q3 p3 / 2 q1 p1) needs them); got "
                         f"q1 = {cfg.q1:g}, q3 = {cfg.q3:g}")
    if cfg.q2 < 0:
        raise ValueError(f"q2 must be >= 0, got {cfg.q2:g}")
    if isinstance(cfg.m, int) and not isinstance(cfg.m, bool) and cfg.m >= 1:
        qt = torch.tensor(q, dtype=torch.float64)
        n1, _, n3 = group_sizes(qt / qt.sum(), cfg.m)
        if n1 == 0 or n3 == 0:
            raise ValueError(f"q1 and q3 must each leave at least one of the m = {cfg.m} neurons "
                             f"(the law log(q3 p3 / 2 q1 p1) needs them); q = {list(q)} rounds to "
                             f"{n1} neurons at sigma(-x) and {n3} at sigma(x): raise q1/q3 or m")


# parameters that may differ between the systems of one batch (the others set shapes and time steps)
BATCH_KEYS = ("data.p1", "data.p2", "data.p3", "q1", "q2", "q3", "scale_a")


def _outputs(c):
    f = c.outputs[:, :, 0]
    return {"f_minus1": f[:, 0], "f_0": f[:, 1], "f_1": f[:, 2], "gap": f[:, 2] - f[:, 0]}


def _summary(history: list, particles: Particles, s: int, data, res) -> dict:
    """Summary of system s (its history rows, its slice of the particles)."""
    # actual fractions after rounding to whole neurons
    q = [(particles.w[s, :, 0] == w) & (particles.b[s] == b) for w, b in POSITIONS]
    qf = [float(x.double().mean()) for x in q]
    p = data.p.tolist()
    last = history[-1]
    summary: dict = {}
    theory = gap_theory(p[0], p[2], qf[0], qf[2])
    agreement(summary, "gap", last["gap"], theory, 1e-2)
    summary.update({"f_minus1": last["f_minus1"], "f_0": last["f_0"], "f_1": last["f_1"],
                    "p1": p[0], "p2": p[1], "p3": p[2], "q1": qf[0], "q2": qf[1], "q3": qf[2],
                    "collapses_theory": abs(theory) < 1e-12, "t_end": res.t, "steps": res.steps,
                    "risk": last["risk"]})
    return summary


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Configurations (differing only in BATCH_KEYS) and seeds as one batched flow.

    A single run is this path with one configuration. Returns one :class:`ExperimentResult` per
    configuration (its history rows carry ``system``; its particles are its own system).
    """
    check_batch(list(cfgs), list(seeds), BATCH_KEYS)
    for c in cfgs:
        check_fractions(c)
    c0 = cfgs[0]
    dtype = parse_dtype(c0.dtype)
    data = [samples(c, dtype, ctx.device) for c in cfgs]
    P = stack_particles([Particles.at_positions(POSITIONS, m=c.m, fractions=(c.q1, c.q2, c.q3),
                                                scale_a=c.scale_a, activation="smoothstep", seed=s,
                                                dtype=dtype, device=ctx.device)
                         for c, s in zip(cfgs, seeds)])
    flow = flow_for(c0.flow, ctx)
    rec = Recorder("log", num=80, t_min=min(1e-2, flow.t_end / 10), stats={"outputs": _outputs})
    res = simulate(P, data if len(data) > 1 else data[0], flow, recorder=rec, seed=list(seeds),
                   progress=ctx.progress, checkpoint=ctx.checkpoint("checkpoint.pt"),
                   checkpoint_every=ctx.checkpoint_every)
    rows = split_history(res.history, len(cfgs))
    return [ExperimentResult(_summary(rows[s], res.particles, s, data[s], res), rows[s],
                             res.particles.select(s)) for s in range(len(cfgs))]


def plot(run) -> list[str]:
    """gap.png (the gap against time, the theory line) and output.png (f over the line)."""
    import matplotlib.pyplot as plt
    cfg, summ, P = run.config, run.summary, run.particles
    theory = summ["gap_theory"]
    rows = [r for r in run.history if r["t"] > 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["t"] for r in rows], [r["gap"] for r in rows], lw=2,
            label="mean-field flow, f(1) − f(−1)")
    ax.axhline(theory, color="k", ls="--", label=f"theory log(q₃p₃ / 2q₁p₁) = {theory:.4f}")
    ax.axhspan(-THRESHOLD, THRESHOLD, color="0.85", label=f"collapsed: |gap| < {THRESHOLD:g}")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time t (log scale)")
    ax.set_ylabel("within-class gap f(1) − f(−1)")
    ax.set_title(f"Three atoms: class {{−1, 1}} collapses only if q₃p₃ = 2q₁p₁\n"
                 f"(p = {summ['p1']:.3g}, {summ['p2']:.3g}, {summ['p3']:.3g}; m = {cfg.m}; "
                 f"|gap − theory| = {abs(summ['gap'] - theory):.2g}, tol {summ['gap_tol']:g})",
                 fontsize=9)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    figs = [run.savefig(fig, "gap.png") and "gap.png"]
    if P is None:
        return [f for f in figs if f]
    data = samples(cfg, P.dtype)
    xs = torch.linspace(-1.5, 1.5, 301, dtype=P.dtype)[:, None]
    f = P.predict(xs, backend="dense")[0, :, 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs[:, 0], f, lw=2, color="k", label=f"network output f(x) at t = {summ['t_end']:.3g}")
    fa = P.predict(data.X, backend="dense")[0, :, 0]
    for c, name in ((1, "class +1 (atoms −1, 1)"), (0, "class −1 (atom 0)")):
        idx = data.y == c
        ax.scatter(data.X[idx, 0], fa[idx], color=class_colour(c), s=600 * data.p[idx], zorder=3,
                   edgecolor="k", label=f"{name}; size ∝ mass")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("input x")
    ax.set_ylabel("network output f(x)")
    ax.set_title("Output function of the trained network (frozen smoothstep features)", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=8)
    ax.grid(alpha=0.3)
    run.savefig(fig, "output.png")
    return [f for f in figs if f] + ["output.png"]


EXPERIMENT = Experiment(
    name="three_atoms",
    description="Three atoms -1,0,1 (class {-1,1} vs {0}), frozen smoothstep features, exponential "
                "loss: f(1)-f(-1) -> log(q3 p3 / 2 q1 p1) (docs/science.md §3.2)",
    config=ThreeAtomsConfig,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    small={"m": 60, "flow.t_end": 1e4},
    science=Science(
        claim="f(1) − f(−1) → log(q₃p₃ / 2q₁p₁): the non-convex class collapses only when q₃p₃ = 2q₁p₁",
        source="docs/science.md §3.2; Wojtowytsch & E, the three-atom counterexample (frozen flat features)",
        regime="unbounded", statistic="|gap|", threshold=THRESHOLD, collapsed_below=True,
        theory=Theory(gap_law, ("data.p1", "data.p3", "q1", "q3"), "theory: q₃p₃ = 2q₁p₁",
                      collapsed="zero"),
        labels={"data.p1": "p₁ (relative mass of atom −1)", "data.p2": "p₂ (relative mass of atom 0)",
                "data.p3": "p₃ (relative mass of atom +1)", "q1": "q₁ (fraction of neurons σ(−x))",
                "q2": "q₂ (fraction of neurons σ(x + 1))", "q3": "q₃ (fraction of neurons σ(x))",
                "scale_a": "initial outer-weight scale", "|gap|": "|f(1) − f(−1)|",
                "gap": "f(1) − f(−1)"}),
)
