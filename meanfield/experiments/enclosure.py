"""Non-convex 2-D geometry against weight decay: does the enclosed class collapse? (issue 10, science.md §4)

Data: :class:`meanfield.data.Enclosure` ``(t)``: class 0 (-1) uniform on the disc ``|x| <= 0.5``,
class 1 (+1) uniform on the annulus ``1 <= |x| <= 1.5`` cut at ``x_1 <= h``, ``h = -1 + 2.5 t``:
convex and linearly separable at ``t = 0``, the disc enclosed at ``t = 1``. Class 0 starts to enter
the convex hull of class 1 at

.. math::

    t^* = \\frac{r_{in} - r_0}{r_{in} + r_{out}} = 0.2 ,

(``hull_fraction > 0`` beyond it): the geometric reference line of the phase diagrams. It is a
statement about the data, not a collapse theorem: it marks where the geometry becomes non-convex
in the sense of the three-atom counterexample (science.md §3.2, a class inside the hull of the other).

Models (``model``), all with one output and the binary logistic loss ``log(1 + exp(-xi f))`` plus
weight decay ``lam`` on every parameter (the bounded regime of science.md §1 when ``lam > 0``):

- ``meanfield``: the mean-field two-layer network of ``m`` particles (Gaussian initial law),
  Wasserstein gradient flow (Heun, step ``dt``) to time ``t_end``; features are the hidden
  activations with the mean-field inner product (:func:`meanfield.metrics.particle_neural_collapse`).
- ``two_layer``: a finite two-layer net with biases in the standard parametrisation
  (:class:`meanfield.deep.models.MLP`, depth 2, ``width`` hidden units, He init), full-batch Adam
  for ``epochs`` with coupled L2 weight decay ``lam``; features = ``model.features``.
- ``deep``: a bias-free deep homogeneous ReLU net (:class:`meanfield.deep.models.DeepHomogeneousMLP`,
  ``depth`` weight matrices). Such a net satisfies ``f(c x) = c^L f(x)`` for ``c > 0``, so along a
  ray from the origin its sign is constant and it cannot separate a disc from an annulus around
  the origin: **the input gets a constant third coordinate 1** (``x -> (x_1, x_2, 1)``), which
  plays the role of a first-layer bias while keeping the net homogeneous in its weights. ReLU only
  (``activation`` is ignored for this model).

What is reported (bounded regime, ``lam > 0``): ``nc1`` of the penultimate features
(science.md §1, the phase diagrams' statistic), ``nc1_out`` of the outputs, the absolute
within-class spread of the outputs ``spread`` (max over classes of max - min of f) and
``spread_rel`` = spread / |mean f on class 1 - mean f on class 0| (scale-free), margin, accuracy,
training risk, ``hull_fraction`` and ``nonconvex`` (= hull_fraction > 0). Nothing here has a
closed form: no ``_agrees`` key is written. The flow and the training stop at a fixed time /
epoch count, stated in the summary (``t_end`` / ``epochs``): the atlas maps what training reaches
in that budget, not the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..data import Enclosure
from ..data.base import Samples
from .registry import Experiment, ExperimentResult, RunContext, parse_dtype

MODELS = ("meanfield", "two_layer", "deep")
BATCH_KEYS = ("t", "lam")
R0, R_IN, R_OUT = 0.5, 1.0, 1.5
T_HULL = (R_IN - R0) / (R_IN + R_OUT)   # class 0 enters the convex hull of class 1 for t > T_HULL


@dataclass(frozen=True)
class EnclosureConfig:
    """Parameters of the enclosure experiment.

    Attributes:
        t: geometry in [0, 1] (0 convex and separable by a line, 1 enclosed).
        lam: weight decay on every parameter (> 0: bounded regime).
        model: ``meanfield``, ``two_layer`` or ``deep``.
        activation: activation registry name (``meanfield``, ``two_layer``).
        depth: weight matrices of the ``deep`` model (3-5 in the atlas).
        m: particles of the mean-field network.
        width: hidden width of the finite nets.
        n: samples (the Enclosure is sampled with the run's seed).
        t_end, dt: mean-field flow time and Heun step.
        epochs, lr: full-batch Adam of the finite nets.
        dtype: float64 or float32.
    """

    t: float = 0.5
    lam: float = 1e-2
    model: str = "meanfield"
    activation: str = "relu"
    depth: int = 3
    m: int = 300
    width: int = 64
    n: int = 200
    t_end: float = 100.0
    dt: float = 0.1
    epochs: int = 1500
    lr: float = 1e-2
    dtype: str = "float64"


def _check(cfg: EnclosureConfig) -> None:
    from ..activations import get_activation
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; valid: {', '.join(MODELS)}")
    if not (0.0 <= cfg.t <= 1.0):
        raise ValueError(f"t must lie in [0, 1] (0 convex, 1 enclosed), got {cfg.t!r}")
    if not (math.isfinite(cfg.lam) and cfg.lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {cfg.lam!r}")
    parse_dtype(cfg.dtype)
    get_activation(cfg.activation)
    for k in ("m", "width", "n", "epochs"):
        if getattr(cfg, k) < 1:
            raise ValueError(f"{k} must be >= 1, got {getattr(cfg, k)!r}")
    if cfg.depth < 2:
        raise ValueError(f"depth must be >= 2, got {cfg.depth}")


def samples(t: float, n: int, seed: int, dtype=torch.float64, device="cpu") -> Samples:
    """The Enclosure(t) data (radii 0.5, 1, 1.5; equal class masses), n points."""
    return Enclosure(t, r0=R0, r_in=R_IN, r_out=R_OUT).sample(n, seed=seed, dtype=dtype, device=device)


def _summary(h, f, W, b, s: Samples, cfg: EnclosureConfig, extra: dict) -> dict:
    from ..metrics import neural_collapse
    summary = _output_stats(f, s)
    try:
        nc = neural_collapse(h, s.y, classifier=W, bias=b, weights=s.p)
        summary.update({"nc1": nc.nc1, "nc3": nc.nc3, "nc4": nc.nc4})
    except ValueError:  # degenerate class means (e.g. the net decayed to 0): undefined
        summary.update({"nc1": float("nan"), "nc3": float("nan"), "nc4": float("nan")})
    summary.update(extra)
    return _finish(summary, cfg)


def _output_stats(f: torch.Tensor, s: Samples) -> dict:
    from ..metrics import neural_collapse, output_collapse
    f = f.detach().reshape(-1, 1).to(torch.float64)
    p = s.p.to(torch.float64)
    oc = output_collapse(f, s.y, weights=p)
    mu = [float((p[s.y == c] * f[s.y == c, 0]).sum() / p[s.y == c].sum()) for c in (0, 1)]
    gap = abs(mu[1] - mu[0])
    try:
        nc1_out = neural_collapse(f, s.y, weights=p).nc1
    except ValueError:
        nc1_out = float("nan")
    pred = (f[:, 0] > 0).long()
    return {"spread": oc.spread, "spread_rel": oc.spread / gap if gap > 0 else float("nan"),
            "nc1_out": nc1_out, "margin": oc.margin,
            "accuracy": float((p * (pred == s.y).to(p.dtype)).sum())}


def _finish(summary: dict, cfg: EnclosureConfig) -> dict:
    geo = Enclosure(cfg.t, r0=R0, r_in=R_IN, r_out=R_OUT)
    summary.update({"hull_fraction": geo.hull_fraction, "nonconvex": geo.hull_fraction > 0,
                    "t_hull": T_HULL})
    return summary


# ----------------------------------------------------------------------------- mean-field
def _meanfield(cfgs: list, seeds: list, ctx: RunContext) -> list[dict]:
    from ..flow import FlowConfig, simulate
    from ..metrics import particle_neural_collapse
    from ..particles import Particles
    from ..record import Recorder
    c0 = cfgs[0]
    shared = [k for k in EnclosureConfig.__dataclass_fields__ if k not in BATCH_KEYS]
    for c in cfgs[1:]:
        diff = [k for k in shared if getattr(c, k) != getattr(c0, k)]
        if diff:
            raise ValueError(f"systems of one batch must share {', '.join(diff)}; group them first")
    dtype = parse_dtype(c0.dtype)
    data = [samples(c.t, c.n, s, dtype, ctx.device) for c, s in zip(cfgs, seeds)]
    parts = [Particles.gaussian(c0.m, 2, 1, activation=c0.activation, seed=s, dtype=dtype,
                                device=ctx.device) for s in seeds]
    P = parts[0] if len(parts) == 1 else Particles(
        torch.cat([x.a for x in parts]), torch.cat([x.w for x in parts]),
        torch.cat([x.b for x in parts]), c0.activation)
    lam = cfgs[0].lam if len(cfgs) == 1 else tuple(c.lam for c in cfgs)
    flow = FlowConfig(loss="logistic", lam=lam, integrator="heun", dt=c0.dt, t_end=c0.t_end,
                      backend=ctx.backend)
    res = simulate(P, data if len(data) > 1 else data[0], flow, recorder=Recorder("log", num=20),
                   seed=seeds[0], progress=ctx.progress)
    out = []
    for i, (c, s) in enumerate(zip(cfgs, seeds)):
        net = res.particles.select(i)
        f = net.predict(data[i].X, backend="dense")[0]
        summary = _output_stats(f, data[i])
        try:
            nc = particle_neural_collapse(net, data[i], backend="dense")
            summary.update({"nc1": nc.nc1, "nc3": nc.nc3, "nc4": nc.nc4})
        except ValueError:
            summary.update({"nc1": float("nan"), "nc3": float("nan"), "nc4": float("nan")})
        rows = [r for r in res.history if len(cfgs) == 1 or r.get("system") == i]
        summary.update({"risk": rows[-1]["risk"], "t_end": res.t, "steps": res.steps})
        out.append(_finish(summary, c))
    return out


# ----------------------------------------------------------------------------- finite nets
def _finite(cfg: EnclosureConfig, seed: int, ctx: RunContext) -> dict:
    from ..deep.models import MLP, DeepHomogeneousMLP
    from ..deep.train import TrainConfig, collect_features, train
    dtype = parse_dtype(cfg.dtype)
    s = samples(cfg.t, cfg.n, seed, dtype, ctx.device)
    if cfg.model == "deep":
        # homogeneous nets cannot separate along rays: append the constant coordinate 1
        X = torch.cat([s.X, torch.ones_like(s.X[:, :1])], 1)
        s_in = replace(s, X=X)
        net = DeepHomogeneousMLP(3, cfg.width, cfg.depth, 1, seed=seed, dtype=dtype, device=ctx.device)
    else:
        s_in = s
        net = MLP(2, cfg.width, 2, 1, activation=cfg.activation, seed=seed, dtype=dtype,
                  device=ctx.device)
    tc = TrainConfig(optimizer="adam", lr=cfg.lr, epochs=cfg.epochs, weight_decay=cfg.lam,
                     loss="logistic", seed=seed, log_every=cfg.epochs)
    res = train(net, s_in, tc, progress=ctx.progress)
    h, f = collect_features(net, s_in, tc)
    W = net.classifier.weight.detach()
    b = getattr(net.classifier, "bias", None)
    return _summary(h, f, W, None if b is None else b.detach(), s, cfg,
                    {"risk": res.final["loss"], "epochs": res.epochs})


# ----------------------------------------------------------------------------- entry points
def run(cfg: EnclosureConfig, ctx: RunContext) -> ExperimentResult:
    _check(cfg)
    if cfg.model == "meanfield":
        summary = _meanfield([cfg], [ctx.seed], ctx)[0]
    else:
        summary = _finite(cfg, ctx.seed, ctx)
    figs = []
    if ctx.out is not None and ctx.figures:
        figs = _figure(cfg, ctx)
    return ExperimentResult(summary, [dict(summary)], None, tuple(figs))


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Several (t, lam) points and seeds: one batched flow for ``meanfield``, a loop otherwise."""
    if len(cfgs) != len(seeds) or not cfgs:
        raise ValueError(f"run_batch needs one seed per config; got {len(cfgs)} configs, {len(seeds)} seeds")
    for c in cfgs:
        _check(c)
    if cfgs[0].model == "meanfield":
        return [ExperimentResult(s, [dict(s)]) for s in _meanfield(list(cfgs), list(seeds), ctx)]
    out = []
    for c, s in zip(cfgs, seeds):
        summ = _finite(c, s, replace(ctx, seed=s))
        out.append(ExperimentResult(summ, [dict(summ)]))
    return out


def _figure(cfg: EnclosureConfig, ctx: RunContext) -> list[str]:
    import matplotlib.pyplot as plt
    from ..data import plot_distribution
    s = samples(cfg.t, cfg.n, ctx.seed)
    fig, ax = plt.subplots(figsize=(5, 5))
    plot_distribution(s, ax=ax)
    ax.set_title(f"Enclosure(t = {cfg.t:g}): class −1 disc, class +1 cut annulus\n"
                 f"(class −1 inside the hull of class +1 for t > {T_HULL:g})", fontsize=9)
    ax.set_aspect("equal")
    ctx.savefig(fig, "data.png")
    return ["data.png"]


EXPERIMENT = Experiment(
    name="enclosure",
    description="2-D disc vs cut annulus (Enclosure t: convex -> enclosed) with weight decay lam, "
                "logistic loss; model meanfield / two_layer / deep: NC1 of the penultimate features, "
                "output spread (atlas, science.md §4)",
    config=EnclosureConfig,
    run=run,
    claim="map: which (geometry, weight decay, model) collapse the classes (no theory claimed; "
          "reference line: class −1 enters the hull of class +1 at t = 0.2)",
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    large={"m": 2000, "n": 800, "t_end": 400.0, "width": 256, "epochs": 5000},
)
