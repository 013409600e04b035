"""Neural collapse of a deep homogeneous net on real data at one (weight decay, depth) point.

The per-point job of the atlas sweep "NC1 against (weight decay, depth)" (docs/science.md §3.4, §4): a
bias-free ReLU MLP ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` (``model=deep``: ``model.depth`` = L
weight matrices, ``model.width`` hidden units) trained with MSE on one-hot targets, the package's
``(1/2NC)`` convention (:mod:`meanfield.deep.train`), plus ``(lam/2) sum_k |W_k|^2`` with
``lam = train.weight_decay``, by mini-batch SGD with momentum (``train``), one seed per run (the seed
sets the initialisation and, offset by ``train.seed``, the batch order). Unlike ``weight_decay``
(two arms, several seeds inside one run, ``lam > 0`` required) this runs one configuration, so
``lam = 0`` is a valid point and a sweep spreads seeds itself.

Reported (bounded regime when ``lam > 0``, docs/science.md §1): the final NC1-NC4 of the penultimate
features with the raw classifier W_L (:func:`meanfield.metrics.neural_collapse`), training loss and
accuracy, and ``nc_loss_floor`` (the least loss of an NC solution, 1/(2C²)). Few epochs by default:
the atlas maps what a fixed training budget reaches; nothing is claimed. The data are the same
images for every seed (``data.per_class`` per class, drawn with seed 0).

Training checkpoints into the run directory; a killed run re-run with the same command resumes
bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, parse_dtype
from .weight_decay import checkpointer, load_data, num

METRICS = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc2_etf_w", "nc3", "nc4")


@dataclass(frozen=True)
class DeepCollapseConfig:
    """Parameters.

    Attributes:
        data: data set (digits, mnist_subset; mnist/cifar10 with data.folder), data.per_class images per class.
        model: the net: deep (bias-free ReLU; model.width, model.depth = L weight matrices), or mlp.
        train: SGD with MSE; train.weight_decay is lam on every layer (>= 0); train.seed offsets the batch order.
        record_every: NC metrics every this many epochs (None: train.epochs // 5).
        dtype: float32 or float64.
    """

    data: DataSpec = DataSpec("digits", {"per_class": 100})
    model: ModelSpec = ModelSpec("deep", {"width": 128, "depth": 4})
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, epochs=30,
                                     batch_size=100, weight_decay=1e-3, log_every=6)
    record_every: Optional[int] = None
    dtype: str = "float32"


def run(cfg: DeepCollapseConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.train import train
    from ..models import build_model
    from ..theory.deep import nc_loss_without_decay
    wd = cfg.train.weight_decay
    if not all(math.isfinite(w) and w >= 0 for w in (wd if isinstance(wd, tuple) else (wd,))):
        raise ValueError(f"train.weight_decay must be finite and >= 0, got {wd!r}")
    if cfg.train.epochs < 1 or (cfg.record_every is not None and cfg.record_every < 1):
        raise ValueError(f"need train.epochs >= 1 and record_every >= 1 (or None); got "
                         f"{cfg.train.epochs}, {cfg.record_every}")
    dtype = parse_dtype(cfg.dtype)
    s = load_data(cfg.data, standardise="global").sample(seed=0, dtype=dtype, device=ctx.device)
    C = s.num_classes
    model = build_model(cfg.model, s.d, C, seed=ctx.seed, dtype=dtype, device=ctx.device)
    tc = replace(cfg.train, seed=cfg.train.seed + ctx.seed)
    every = cfg.record_every or max(1, cfg.train.epochs // 5)
    res = train(model, s, tc, record_every=every, progress=ctx.progress,
                checkpoint=checkpointer(ctx, "checkpoint.pt"))
    last = res.history[-1]
    summary = {k: last.get(k, float("nan")) for k in METRICS}
    scale = 1.0 / C if cfg.train.loss_scale is None else cfg.train.loss_scale
    summary.update({"loss": last["loss"], "accuracy": last["accuracy"], "epochs": res.epochs,
                    "nc_degenerate": last.get("nc_degenerate", float("nan")),
                    "num_classes": C, "n": s.n,
                    "nc_loss_floor": nc_loss_without_decay((C - 1) / C, C, loss_scale=scale)})
    hist = [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in res.history]
    return ExperimentResult(summary, hist)


def plot(run) -> list[str]:
    """``collapse.png``: NC metrics and training loss against epochs, from the run's files."""
    import matplotlib.pyplot as plt
    cfg, s, hist = run.config, run.summary, run.history
    mp, tr = cfg.model.kwargs, cfg.train
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    names = {"nc1": "NC1 Tr(Σ_W Σ_B⁺)/C", "nc2_etf": "NC2 ETF distance of the means",
             "nc2_etf_w": "NC2 ETF distance of W", "nc3": "NC3 ‖Wᵀ/‖W‖ − M̃/‖M̃‖‖²",
             "nc4": "NC4 mismatch with nearest mean"}
    for key, lab in names.items():
        pts = [(num(r, "epoch"), num(r, key)) for r in hist if num(r, key) is not None]
        if pts:
            ax1.plot(*zip(*pts), "o-", ms=3, label=lab)
    thr = run.experiment.science.threshold
    ax1.axhline(thr, color="k", ls=":", label=f"NC1 collapsed below {thr:g} (atlas threshold)")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("NC metric (dimensionless, log)")
    ax1.set_title(f"final NC1 = {s['nc1']:.3g}, NC3 = {s['nc3']:.3g}", fontsize=10)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3, which="both")
    pts = [(num(r, "epoch"), num(r, "loss")) for r in hist if num(r, "loss") is not None]
    ax2.plot(*zip(*pts), "o-", ms=3, color="tab:blue", label="training loss (1/2NC) Σ‖y − f‖²")
    ax2.axhline(s["nc_loss_floor"], color="k", ls="--",
                label=f"least loss of an NC solution 1/(2C²) = {s['nc_loss_floor']:.3g}")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss (log)")
    ax2.set_title(f"final loss {s['loss']:.3g}, accuracy {s['accuracy']:.3f}", fontsize=10)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle(f"{cfg.model.name} net (depth {mp.get('depth')}, width {mp.get('width')}) on "
                 f"{cfg.data.name}, n = {int(s['n'])}, C = {int(s['num_classes'])}: weight decay "
                 f"λ = {tr.weight_decay}, SGD lr {tr.lr:g}, momentum {tr.momentum:g}", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "collapse.png")
    return ["collapse.png"]


EXPERIMENT = Experiment(
    name="deep_collapse",
    description="Deep homogeneous ReLU MLP (bias-free) on digits/MNIST, MSE + weight decay lam, depth L: "
                "final NC1-NC4 at one (lam, depth) point (atlas, docs/science.md §3.4/§4)",
    config=DeepCollapseConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="map: NC1 against (weight decay, depth) after a fixed SGD budget (reported, not claimed)",
        source="docs/science.md §3.4, §4; Rangamani & Banburski, Neural collapse in deep "
               "homogeneous classifiers and the role of weight decay (ICASSP 2022)",
        regime="bounded",
        statistic="nc1",
        threshold=0.1,
        collapsed_below=True,
        theory=None,
        labels={"train.weight_decay": "weight decay λ (every layer)",
                "model.depth": "depth L (weight matrices)", "model.width": "hidden width (units)",
                "data.per_class": "training images per class", "train.epochs": "SGD epochs",
                "nc1": "NC1 Tr(Σ_W Σ_B⁺)/C (final)", "nc3": "NC3 ‖Wᵀ/‖W‖ − M̃/‖M̃‖‖² (final)"}),
    large={"data": "mnist_subset", "data.per_class": 500, "model.width": 256, "train.epochs": 100},
    small={"data.per_class": 20, "model.width": 32, "train.epochs": 5},
)
