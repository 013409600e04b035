"""Non-convex 2-D geometry against weight decay: does the enclosed class collapse? (docs/science.md §4)

A preset of :mod:`meanfield.experiments.collapse` (same machinery, same columns) on the
:class:`meanfield.data.Enclosure` family ``(t, r0, r_in, r_out)``: class 0 (-1) uniform on the disc
``|x| <= r0``, class 1 (+1) uniform on the annulus ``r_in <= |x| <= r_out`` cut at ``x_1 <= h``,
``h = -r_in + t (r_in + r_out)``: convex and linearly separable at ``t = 0``, the disc enclosed at
``t = 1``. Class 0 starts to enter the convex hull of class 1 at

.. math::

    t^* = \\frac{r_{in} - r_0}{r_{in} + r_{out}}

(0.2 at the default radii 0.5, 1, 1.5), beyond which ``hull_fraction > 0``: the geometric
reference line of the phase diagrams. The line is *computed from the data*: a
:class:`~meanfield.geometry.HullLine` bisects ``t`` on samples of the distribution built with the
parameters in use (:func:`~meanfield.geometry.hull_boundary`, LPs), the same mechanism any
distribution with a parameter can use; the closed form above is its oracle (summary ``t_hull``
against ``t_hull_theory``). It is a statement about the data, not a collapse theorem: it marks
where the geometry becomes non-convex in the sense of the three-atom counterexample
(docs/science.md §3.2, a class inside the hull of the other).

Models (``model``), all with one output and the binary logistic loss ``flow.loss`` plus weight
decay ``flow.lam`` on every parameter (the bounded regime of docs/science.md §1 when ``lam > 0``):
``meanfield`` (particles, Wasserstein flow ``flow`` to ``flow.t_end``), ``two_layer`` (finite, with
biases, full-batch Adam ``train``), ``deep`` (bias-free homogeneous ReLU; the input gets a constant
third coordinate 1, see :mod:`~meanfield.experiments.collapse`), ``mlp``.

Reported: the collapse columns (``nc1`` of the penultimate features — the phase diagrams'
statistic —, ``nc1_out``, ``spread``, ``spread_rel``, margin, accuracy, risk, ...), plus
``hull_fraction``, ``nonconvex`` (= hull_fraction > 0) and ``t_hull`` (the boundary computed from
samples, the theory line) with ``t_hull_theory`` (t* above), ``t_hull_tol``, ``t_hull_agrees``: the
only ``_agrees`` key, a check of the geometry computation, not of collapse (nothing about
collapse here has a closed form). Training stops at a fixed time / epoch count, stated in
the summary (``t_end`` / ``epochs``): the atlas maps what training reaches in that budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..deep.train import TrainConfig
from ..flow import FlowConfig
from ..geometry import HullLine
from ..study.spec import DataSpec, ModelSpec
from ..threads import torch_threads
from . import collapse
from .registry import Experiment, RunContext, Science, Theory, agreement

BATCH_KEYS = ("data.t", "flow.lam")
RADII = {"r0": 0.5, "r_in": 1.0, "r_out": 1.5}


@dataclass(frozen=True)
class EnclosureConfig:
    """Parameters of the enclosure experiment (a preset of ``collapse``).

    Attributes:
        data: the Enclosure family: t in [0, 1] (0 convex, 1 enclosed) and the radii r0 < r_in < r_out.
        model: meanfield (model.m particles), two_layer, deep (model.depth) or mlp; model.activation, model.width.
        flow: the mean-field flow (Heun, dt, t_end); flow.lam (weight decay) and flow.loss apply to every model.
        train: full-batch Adam of the finite nets (train.epochs, train.lr).
        n: samples (the Enclosure is sampled with the run's seed).
        regime: auto (bounded when flow.lam > 0), unbounded, direction or bounded.
        bias_input: append a constant coordinate 1 to the inputs (None: for the deep model only).
        dtype: float64 or float32.
    """

    data: DataSpec = DataSpec("enclosure", {"t": 0.5, **RADII})
    model: ModelSpec = ModelSpec("meanfield", {"m": 300, "activation": "relu"})
    flow: FlowConfig = FlowConfig(loss="logistic", lam=1e-2, integrator="heun", dt=0.1, t_end=100.0)
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-2, epochs=1500, loss="logistic")
    n: int = 200
    regime: str = "auto"
    bias_input: Optional[bool] = None
    dtype: str = "float64"


def geometry(cfg):
    """The Enclosure distribution of the config. Raises ValueError for another distribution."""
    from ..data import Enclosure
    dist = cfg.data.build()
    if not isinstance(dist, Enclosure):
        raise ValueError(f"enclosure needs data=enclosure (got {cfg.data.name!r}); use the "
                         "experiment 'collapse' for other distributions")
    return dist


def t_hull(r0: float, r_in: float, r_out: float) -> float:
    """t* = (r_in - r0) / (r_in + r_out): class 0 enters the convex hull of class 1 for t > t*."""
    return (r_in - r0) / (r_in + r_out)


# the theory line: t - t*, with t* computed by LPs on 2000 samples of the distribution in use
HULL_LINE = HullLine("enclosure", "t", 0.0, 1.0, n=2000, seed=0, tol=1e-3, ignore=("grid",))
# sampled boundary vs closed form: the sample sits above t* by ~2e-3 at 2000 samples, plus tol / 2
T_HULL_TOL = 0.01


def hull_theory(p) -> float:
    """t - t*(radii) from the closed form (the oracle of :data:`HULL_LINE`; negative: convex side)."""
    r = {k: float(p.get(f"data.{k}", v)) for k, v in RADII.items()}
    return float(p["data.t"]) - t_hull(r["r0"], r["r_in"], r["r_out"])


def _geometry_keys(summary: dict, cfg) -> dict:
    geo = geometry(cfg)
    summary.update({"hull_fraction": geo.hull_fraction, "nonconvex": geo.hull_fraction > 0})
    others = HULL_LINE.others({f"data.{k}": v for k, v in {**RADII, **cfg.data.kwargs}.items()})
    agreement(summary, "t_hull", HULL_LINE.boundary(**others), t_hull(geo.r0, geo.r_in, geo.r_out),
              T_HULL_TOL)
    # the horizon under its pre-redesign name
    summary["t_end" if cfg.model.name == "meanfield" else "epochs"] = summary["horizon"]
    return summary


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Several (t, lam) points and seeds: one batched flow for ``meanfield``, a loop otherwise."""
    for c in cfgs:
        geometry(c)
    # finite nets here are small (2-D inputs, width <= 64, a few hundred samples): one torch thread
    # on a CPU; two spin-wait on each other on a loaded machine (4-10x the CPU time, measured)
    finite = cfgs[0].model.name != "meanfield" and str(ctx.device).startswith("cpu")
    with torch_threads(1 if finite else None):
        return collapse.run_batch_with(cfgs, seeds, ctx, BATCH_KEYS, extra=_geometry_keys)


def plot(run) -> list[str]:
    s = run.summary
    return collapse.plot(run, title=(
        f"Enclosure(t = {run.config.data.get('t'):g}): class −1 disc, class +1 cut annulus; "
        f"{run.config.model.name}, λ = {run.config.flow.lam:g}\n"
        f"class −1 inside the hull of class +1 for t > t* = {s.get('t_hull', float('nan')):.3g} "
        f"(LPs on samples; closed form {s.get('t_hull_theory', float('nan')):.3g}); "
        f"hull fraction at this t {s.get('hull_fraction', float('nan')):.3g}"))


EXPERIMENT = Experiment(
    name="enclosure",
    description="2-D disc vs cut annulus (Enclosure t: convex -> enclosed) with weight decay "
                "flow.lam, logistic loss; model meanfield / two_layer / deep / mlp: NC1 of the "
                "penultimate features, output spread (a preset of collapse; atlas, docs/science.md §4)",
    config=EnclosureConfig,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    small={"n": 40, "model.m": 60, "flow.t_end": 5.0},
    science=Science(
        claim="map: which (geometry, weight decay, model) collapse the classes (no theory claimed; "
              "reference line: class −1 enters the hull of class +1 at t* = (r_in − r0)/(r_in + r_out))",
        source="docs/science.md §4 and §3.2 (a class inside the hull of the other)",
        regime="bounded", statistic="nc1", threshold=collapse.THRESHOLD, collapsed_below=True,
        theory=Theory(HULL_LINE, ("data.t", "data.r0", "data.r_in", "data.r_out"),
                      "reference: class −1 enters the hull of class +1 (t*, computed by LPs)"),
        labels={"data.t": "geometry t (0: convex, separable; 1: class −1 enclosed)",
                "flow.lam": "weight decay λ", "nc1": "NC1 of the penultimate features",
                "model.depth": "depth (weight matrices)", "model.m": "particles m",
                "model.width": "hidden width"}),
    large={"model.m": 2000, "n": 800, "flow.t_end": 400.0, "train.epochs": 5000},
)
