"""Collapse, generically: any distribution x any model x loss x weight decay x horizon (docs/science.md §1).

One run trains one model on samples of one distribution and reports the collapse statistics of
its regime, for the outputs and the penultimate features, with **the same columns for every
model** (``meanfield`` particles, ``two_layer``, ``deep``, ``mlp``, or a user's registered model):

- outputs: ``spread`` (absolute within-class spread of f, max over classes: the unbounded-regime
  statistic), ``spread_rel`` (spread over the distance between the two nearest class means of f:
  the scale-free direction-regime statistic), ``nc1_out`` (NC1 of the outputs), ``margin``,
  ``accuracy``;
- penultimate features: ``nc1``, ``nc1_trace``, ``nc3``, ``nc4`` (docs/science.md §1; the bounded
  regime), and ``feature_spread``, the absolute within-class RMS spread
  ``sqrt(sum_j p_j |h_j - mu_{y_j}|^2)`` (mean-field features carry the inner product ``/m``);
- training: ``risk`` (data term plus the weight-decay penalty, at the end), ``loss`` (the data
  term alone), ``horizon`` (flow time or epochs), ``steps`` (flow or optimiser steps);
- the regime's statistic ``statistic`` (``spread``, ``spread_rel`` or ``nc1`` as ``regime`` says;
  ``auto``: bounded when ``flow.lam > 0``, else unbounded) and ``collapsed`` =
  ``statistic < threshold``.

Models. ``meanfield``: the particles of :func:`meanfield.models.build_model` follow the
Wasserstein gradient flow ``flow`` (loss ``flow.loss``, weight decay ``flow.lam``, to
``flow.t_end``), checkpointed through the engine (as are the finite nets' trainings,
:class:`meanfield.deep.checkpoint.TrainCheckpoint`); features are the hidden activations with the
mean-field inner product (:func:`meanfield.metrics.particle_neural_collapse`). Any other model is
a torch module trained by :func:`meanfield.deep.train.train` with ``train`` (optimizer, lr,
epochs), **the same loss ``flow.loss`` and weight decay ``flow.lam``** (coupled L2); features are
``model.features``. Binary problems use one output and the +-1 losses. A bias-free homogeneous net
(``deep``) cannot separate classes along rays through the origin: ``bias_input`` (default: on for
``deep`` only) appends a constant coordinate 1 to every input.

What the experiments share lives in the study layer: batching and resumable units in
:mod:`meanfield.study.batching`, neuron snapshots in :mod:`meanfield.study.snapshots`, the class
colours in :mod:`meanfield.plotting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from ..deep.train import TrainConfig
from ..flow import FlowConfig
from ..plotting import class_colour
from ..record import atomic_torch_save
from ..study.batching import check_batch, split_history, stack_particles
from ..study.snapshots import MODEL_FILE
from ..study.spec import DataSpec, ModelSpec
from .registry import (Experiment, ExperimentResult, RunContext, Science, flow_for, parse_dtype)
from ..metrics import DegenerateMeansError

THRESHOLD = 0.05
REGIMES = ("auto", "unbounded", "direction", "bounded")
_STATISTIC = {"unbounded": "spread", "direction": "spread_rel", "bounded": "nc1"}


def nan_if_none(v) -> float:
    return float("nan") if v is None else float(v)


# ----------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class CollapseConfig:
    """Parameters of the generic collapse experiment.

    Attributes:
        data: the distribution (any registered name: ``--set data=moons``, ``data.noise=0.1``).
        model: the model: ``meanfield`` (particles), ``two_layer``, ``deep``, ``mlp``, ...
        flow: the mean-field flow; flow.loss and flow.lam are the loss and weight decay of every model.
        train: optimizer, lr, epochs of the finite nets (its loss and weight_decay come from flow).
        n: samples drawn from the distribution (with the run's seed; exact atoms ignore it).
        regime: auto, unbounded, direction or bounded (auto: bounded if flow.lam > 0, else unbounded).
        bias_input: append a constant coordinate 1 to the inputs (None: for the deep model only).
        dtype: float64 or float32.
    """

    data: DataSpec = DataSpec("moons", {"noise": 0.1})
    model: ModelSpec = ModelSpec("meanfield", {"m": 300, "activation": "relu"})
    flow: FlowConfig = FlowConfig(loss="logistic", lam=1e-2, integrator="heun", dt=0.1, t_end=100.0)
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-2, epochs=1500, loss="logistic")
    n: int = 200
    regime: str = "auto"
    bias_input: Optional[bool] = None
    dtype: str = "float64"


def regime_of(cfg) -> str:
    if cfg.regime != "auto":
        return cfg.regime
    lams = cfg.flow.lam if isinstance(cfg.flow.lam, tuple) else (cfg.flow.lam,)
    return "bounded" if min(lams) > 0 else "unbounded"


def check(cfg) -> None:
    """Validate what the configs' own checks cannot see. Raises ValueError."""
    parse_dtype(cfg.dtype)
    if cfg.regime not in REGIMES:
        raise ValueError(f"unknown regime {cfg.regime!r}; valid: {', '.join(REGIMES)}")
    if cfg.n < 1:
        raise ValueError(f"n must be >= 1, got {cfg.n!r}")
    if isinstance(cfg.flow.lam, tuple):
        raise ValueError("flow.lam must be one number per run (sweep it to batch several)")
    if cfg.model.name != "meanfield":
        if cfg.train.weight_decay != 0:
            raise ValueError("set the weight decay with flow.lam (it applies to every model); "
                             "train.weight_decay must stay 0")
        if cfg.train.loss not in ("logistic", cfg.flow.loss):
            raise ValueError("set the loss with flow.loss (it applies to every model)")
    from ..models import get_model
    get_model(cfg.model.name)


def samples(cfg, seed: int, device="cpu"):
    """The run's samples: ``n`` points of the distribution with that seed."""
    return cfg.data.build().sample(cfg.n, seed=seed, dtype=parse_dtype(cfg.dtype), device=device)


def _num_outputs(s) -> int:
    return 1 if s.num_classes == 2 else s.num_classes


def output_stats(f: torch.Tensor, s) -> dict:
    """Output statistics of one network: spread, spread_rel, nc1_out, margin, accuracy."""
    from ..metrics import neural_collapse, output_collapse
    f = f.detach().reshape(s.n, -1).to(torch.float64)
    p = s.p.to(torch.float64)
    oc = output_collapse(f, s.y, weights=p)
    if f.shape[1] == 1 and s.num_classes == 2:
        mu = [float((p[s.y == c] * f[s.y == c, 0]).sum() / p[s.y == c].sum()) for c in (0, 1)]
        gap = abs(mu[1] - mu[0])
        pred = (f[:, 0] > 0).long()
    else:
        mu = torch.stack([(p[s.y == c, None] * f[s.y == c]).sum(0) / p[s.y == c].sum()
                          for c in range(s.num_classes)])
        gap = float(torch.pdist(mu).min())
        pred = f.argmax(1)
    try:
        nc1_out = nan_if_none(neural_collapse(f, s.y, weights=p).nc1)
    except DegenerateMeansError:
        nc1_out = float("nan")
    return {"spread": oc.spread, "spread_rel": oc.spread / gap if gap > 0 else float("nan"),
            "nc1_out": nc1_out, "margin": oc.margin,
            "accuracy": float((p * (pred == s.y).to(p.dtype)).sum())}


def feature_spread(h: torch.Tensor, s) -> float:
    """sqrt(sum_j p_j |h_j - mu_{y_j}|^2) (absolute within-class spread of the features)."""
    h = h.detach().to(torch.float64)
    p = s.p.to(torch.float64)
    tot = 0.0
    for c in range(s.num_classes):
        idx = s.y == c
        pc = p[idx]
        mu = (pc[:, None] * h[idx]).sum(0) / pc.sum()
        tot += float((pc * ((h[idx] - mu) ** 2).sum(1)).sum())
    return math.sqrt(max(tot, 0.0))


def _nc(nc) -> dict:
    return {k: nan_if_none(getattr(nc, k)) for k in ("nc1", "nc1_trace", "nc3", "nc4")}


def finish(summary: dict, cfg) -> dict:
    reg = regime_of(cfg)
    stat = summary[_STATISTIC[reg]]
    summary["statistic"] = stat
    summary["collapsed"] = bool(math.isfinite(stat) and stat < THRESHOLD)
    return summary


# --------------------------------------------------------------------- mean-field particles
def run_meanfield(cfgs: list, seeds: list, ctx: RunContext) -> list[tuple[dict, list, object]]:
    """B configurations as one batched flow: [(summary, history rows, particles, samples)] per system."""
    from ..flow import simulate
    from ..metrics import particle_neural_collapse
    from ..models import build_model
    from ..record import Recorder
    c0 = cfgs[0]
    dtype = parse_dtype(c0.dtype)
    data = [samples(c, s, ctx.device) for c, s in zip(cfgs, seeds)]
    d, C = data[0].d, data[0].num_classes
    parts = [build_model(c0.model, d, C, seed=s, dtype=dtype, device=ctx.device) for s in seeds]
    P = stack_particles(parts)
    flow = flow_for(c0.flow, ctx)
    if len(cfgs) > 1:
        flow = replace(flow, lam=tuple(c.flow.lam for c in cfgs))
    res = simulate(P, data if len(data) > 1 else data[0], flow, recorder=Recorder("log", num=20),
                   seed=list(seeds), progress=ctx.progress, checkpoint=ctx.checkpoint("checkpoint.pt"),
                   checkpoint_every=ctx.checkpoint_every)
    rows = split_history(res.history, len(cfgs))
    out = []
    for i, c in enumerate(cfgs):
        net = res.particles.select(i)
        f = net.predict(data[i].X, backend="dense")[0]
        summary = output_stats(f, data[i])
        try:
            summary.update(_nc(particle_neural_collapse(net, data[i], backend="dense")))
        except DegenerateMeansError:
            summary.update(dict.fromkeys(("nc1", "nc1_trace", "nc3", "nc4"), float("nan")))
        summary["feature_spread"] = feature_spread(net.features(data[i].X)[0] / math.sqrt(net.m),
                                                    data[i])
        from ..losses import get_loss
        loss = get_loss(flow.loss).value(f[None], data[i].y[None])[0]
        summary.update({"risk": rows[i][-1]["risk"],
                        "loss": float((data[i].p * loss).sum()), "steps": res.steps,
                        "horizon": res.t})
        out.append((finish(summary, c), rows[i], net, data[i]))
    return out


# ----------------------------------------------------------------------------- finite nets
def run_finite(cfg, seed: int, ctx: RunContext, checkpoint: str = "checkpoint.pt") -> tuple:
    """One finite net trained by :func:`meanfield.deep.train.train`: (summary, history rows, net, samples)."""
    from ..deep.train import collect_features, train
    from ..models import build_model
    dtype = parse_dtype(cfg.dtype)
    s = samples(cfg, seed, ctx.device)
    bias = cfg.bias_input if cfg.bias_input is not None else cfg.model.name == "deep"
    s_in = replace(s, X=torch.cat([s.X, torch.ones_like(s.X[:, :1])], 1)) if bias else s
    net = build_model(cfg.model, s_in.d, _num_outputs(s), seed=seed, dtype=dtype, device=ctx.device)
    tc = replace(cfg.train, weight_decay=cfg.flow.lam, loss=cfg.flow.loss, seed=seed,
                 log_every=max(1, cfg.train.epochs // 20))
    path = ctx.checkpoint(checkpoint)
    ck = None
    if path is not None:   # resumable through the engine (meanfield.deep.checkpoint)
        from ..deep.checkpoint import TrainCheckpoint
        ck = TrainCheckpoint(path, every=ctx.checkpoint_every)
    res = train(net, s_in, tc, progress=ctx.progress, checkpoint=ck)
    h, f = collect_features(net, s_in, tc)
    from ..metrics import neural_collapse
    W = net.classifier.weight.detach()
    b = getattr(net.classifier, "bias", None)
    summary = output_stats(f, s)
    try:
        summary.update(_nc(neural_collapse(h, s.y, classifier=W,
                                           bias=None if b is None else b.detach(), weights=s.p)))
    except DegenerateMeansError:  # every class mean equal (e.g. the net decayed to 0): undefined
        summary.update(dict.fromkeys(("nc1", "nc1_trace", "nc3", "nc4"), float("nan")))
    summary["feature_spread"] = feature_spread(h, s)
    summary.update({"risk": res.final["objective"], "loss": res.final["loss"], "steps": res.steps,
                    "horizon": float(res.epochs)})
    hist = [{"t": float(r["epoch"]), **{k: v for k, v in r.items() if isinstance(v, (int, float))},
             "system": 0} for r in res.history]
    return finish(summary, cfg), hist, net, s


# ----------------------------------------------------------------------------- entry points
def run_batch_with(cfgs: list, seeds: list, ctx: RunContext, batch_keys, extra=None) -> list:
    """Run configurations (one batched flow for ``meanfield``, a loop otherwise).

    ``extra(summary, cfg) -> summary`` adds an experiment's own keys (the enclosure's geometry).
    ``ExperimentResult.extra`` holds the trained ``model`` (particles or torch module) and the
    ``samples``.
    """
    check_batch(list(cfgs), list(seeds), batch_keys)
    for c in cfgs:
        check(c)
    extra = extra or (lambda s, c: s)
    if cfgs[0].model.name == "meanfield":
        return [ExperimentResult(extra(summ, c), hist, net, extra={"model": net, "samples": s})
                for (summ, hist, net, s), c in zip(run_meanfield(list(cfgs), list(seeds), ctx), cfgs)]
    out = []
    for i, (c, seed) in enumerate(zip(cfgs, seeds)):
        summ, hist, net, s = run_finite(c, seed, replace(ctx, seed=seed),
                                        "checkpoint.pt" if len(cfgs) == 1 else f"checkpoint-{i}.pt")
        if ctx.out is not None and len(cfgs) == 1:   # the trained weights, for the figures
            atomic_torch_save({k: v.detach().cpu() for k, v in net.state_dict().items()},
                              Path(ctx.out) / MODEL_FILE)
        out.append(ExperimentResult(extra(summ, c), hist, extra={"model": net, "samples": s}))
    return out


BATCH_KEYS = ("flow.lam",)


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Several weight decays (and seeds) as one batched flow (``meanfield``), else a loop."""
    return run_batch_with(cfgs, seeds, ctx, BATCH_KEYS)


# ----------------------------------------------------------------------------- figures
def _predictor(run, cfg, s):
    """x (n, d) -> f(x) (n,) of the trained model of a run directory, or None."""
    if cfg.model.name == "meanfield":
        P = run.particles
        return None if P is None else (
            lambda G: P.to(torch.float64).predict(G, backend="dense")[0, :, 0])
    path = run.path / MODEL_FILE
    if not path.exists():
        return None
    from ..models import build_model
    bias = cfg.bias_input if cfg.bias_input is not None else cfg.model.name == "deep"
    net = build_model(cfg.model, s.d + int(bias), _num_outputs(s), seed=0,
                      dtype=parse_dtype(cfg.dtype))
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - truncated, garbage or another model: name the file
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{path} is not a valid model file for this run ({type(e).__name__}: "
                         f"{msg}); re-run with --overwrite") from None
    net.eval()

    def f(G):
        G = G.to(parse_dtype(cfg.dtype))
        if bias:
            G = torch.cat([G, torch.ones_like(G[:, :1])], 1)
        with torch.no_grad():
            out = net(G)
        return out[:, 0].double() if out.shape[1] == 1 else (out[:, 1] - out[:, 0]).double()
    return f


def plot(run, title: str = "", extra_text: str = "") -> list[str]:
    """The trained decision function over the data (2-D inputs, mean-field particles), and the
    risk against time or epochs with the regime's statistic, from the run directory."""
    import matplotlib.pyplot as plt
    cfg, summ = run.config, run.summary
    seed = int(run.record.get("seed", 0))
    s = samples(cfg, seed)
    predict = _predictor(run, cfg, s)
    two_d = s.d == 2 and predict is not None
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(11 if two_d else 5.5, 4.8))
    axes = list(axes) if two_d else [axes]
    if two_d:
        ax = axes[0]
        X = s.X.double()
        lo, hi = X.min(0).values - 0.3, X.max(0).values + 0.3
        g0, g1 = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 161, dtype=torch.float64),
                                torch.linspace(float(lo[1]), float(hi[1]), 161, dtype=torch.float64),
                                indexing="xy")
        G = torch.stack([g0.reshape(-1), g1.reshape(-1)], 1)
        f = predict(G).reshape(g0.shape)
        vmax = float(f.abs().max()) or 1.0
        cs = ax.contourf(g0, g1, f, levels=torch.linspace(-vmax, vmax, 22).tolist(), cmap="RdBu",
                         alpha=0.55)
        ax.contour(g0, g1, f, levels=[0.0], colors="k", linewidths=1.5)
        fig.colorbar(cs, ax=ax, label="network output f(x)")
        names = s.class_names or tuple(str(c) for c in range(s.num_classes))
        for c in range(s.num_classes):
            idx = s.y == c
            ax.scatter(X[idx, 0], X[idx, 1], s=14, color=class_colour(c), edgecolor="k", lw=0.3,
                       label=f"class {names[c]}")
        ax.plot([], [], "k-", label="decision boundary f = 0")
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
        ax.set_title(f"trained output ({cfg.model.name}); accuracy {summ.get('accuracy', float('nan')):.3f}",
                     fontsize=9)
    ax = axes[-1]
    def objective(r):  # the summary's `risk`: data term + weight decay, for every model
        return r.get("risk", r.get("objective"))

    rows = [r for r in run.history if isinstance(objective(r), float) and r["t"] > 0]
    t = [r["t"] for r in rows]
    risk = [objective(r) for r in rows]
    if t:
        finite = cfg.model.name != "meanfield"
        ax.plot(t, risk, "o-", ms=3, lw=1.5, color="k",
                label="training risk (data term + weight decay)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import LogFormatter
        for axis in (ax.xaxis, ax.yaxis):  # label minor decades too: short ranges get ticks
            axis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.set_xlabel("epoch" if finite else "flow time t")
        ax.set_ylabel("risk")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper right")
    reg = regime_of(cfg)
    stat = _STATISTIC[reg]
    txt = (f"{reg} regime: {stat} = {summ.get(stat, float('nan')):.3g} "
           f"({'collapsed' if summ.get('collapsed') else 'not collapsed'}: threshold {THRESHOLD:g})\n"
           + ", ".join(f"{k} = {summ.get(k, float('nan')):.3g}"
                       for k in ("nc1", "spread", "spread_rel") if k != stat))
    ax.set_title(txt, fontsize=8)
    fig.suptitle(title or f"{cfg.data.name}: {cfg.model.name}, {cfg.flow.loss} loss, "
                 f"λ = {cfg.flow.lam:g}" + extra_text, fontsize=10)
    fig.tight_layout()
    run.savefig(fig, "collapse.png")
    return ["collapse.png"]


EXPERIMENT = Experiment(
    name="collapse",
    description="any distribution x any model (meanfield, two_layer, deep, mlp) x loss x weight "
                "decay x horizon: the collapse statistics of its regime, same columns for every model",
    config=CollapseConfig,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    small={"n": 60, "model.m": 60, "flow.t_end": 10.0},
    science=Science(
        claim="map: does training collapse the classes (outputs and penultimate features)? "
              "The statistic of the regime (docs/science.md §1) against its threshold",
        source="docs/science.md §1 (output collapse, NC metrics), §4",
        regime="bounded", statistic="statistic", threshold=THRESHOLD, collapsed_below=True,
        labels={"flow.lam": "weight decay λ", "flow.t_end": "flow time t (horizon)",
                "train.epochs": "epochs (horizon)", "statistic": "the regime's collapse statistic",
                "nc1": "NC1 of the penultimate features", "spread": "|within-class output spread|"}),
)
