"""Neural collapse of a deep homogeneous net on real data at one (weight decay, depth) point (issue 10).

The per-point job of the atlas sweep "NC1 against (weight decay, depth)" (science.md §3.4, §4): a
bias-free ReLU MLP ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` (:class:`meanfield.deep.models.DeepHomogeneousMLP`,
``depth`` = L weight matrices) trained with MSE on one-hot targets, the package's ``(1/2NC)``
convention (:mod:`meanfield.deep.train`), plus ``(lam/2) sum_k |W_k|^2``, by mini-batch SGD with
momentum, one seed per run (the seed sets the initialisation and the batch order). Unlike
``weight_decay`` (two arms, several seeds inside one run, ``lam > 0`` required) this runs one
configuration, so ``lam = 0`` is a valid point and a sweep spreads seeds itself.

Reported (bounded regime when ``lam > 0``, science.md §1): the final NC1-NC4 of the penultimate
features with the raw classifier W_L (:func:`meanfield.metrics.neural_collapse`), training loss and
accuracy, and ``nc_loss_floor`` (the best loss of an NC solution at lam = 0). Few epochs by
default: the atlas maps what a fixed training budget reaches; nothing is claimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


from .registry import Experiment, ExperimentResult, RunContext, parse_dtype

METRICS = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc2_etf_w", "nc3", "nc4")


@dataclass(frozen=True)
class DeepCollapseConfig:
    """Parameters.

    Attributes:
        lam: weight decay on every layer (>= 0).
        depth: number of weight matrices L (>= 2).
        width: hidden width.
        dataset: ``digits``, ``mnist_subset``, ``mnist_files``, ``cifar10_files`` (see ``weight_decay``).
        data_dir: folder of the ``*_files`` datasets.
        per_class: training images per class (balanced).
        epochs, lr, momentum, batch_size: SGD.
        dtype: float32 or float64.
    """

    lam: float = 1e-3
    depth: int = 4
    width: int = 128
    dataset: str = "digits"
    data_dir: Optional[str] = None
    per_class: int = 100
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 100
    dtype: str = "float32"


def run(cfg: DeepCollapseConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.models import DeepHomogeneousMLP
    from ..deep.train import TrainConfig, train
    from ..theory.deep import nc_loss_without_decay
    from .weight_decay import load_dataset
    if not (math.isfinite(cfg.lam) and cfg.lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {cfg.lam!r}")
    if cfg.depth < 2 or cfg.width < 1 or cfg.epochs < 1 or cfg.per_class < 1 or cfg.batch_size < 1:
        raise ValueError(f"need depth >= 2, width, epochs, per_class, batch_size >= 1; got "
                         f"depth={cfg.depth}, width={cfg.width}, epochs={cfg.epochs}, "
                         f"per_class={cfg.per_class}, batch_size={cfg.batch_size}")
    dtype = parse_dtype(cfg.dtype)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, per_class=cfg.per_class)
    s = data.sample(seed=0, dtype=dtype, device=ctx.device)  # the same images for every seed
    C = s.num_classes
    model = DeepHomogeneousMLP(s.d, cfg.width, cfg.depth, C, seed=ctx.seed, dtype=dtype, device=ctx.device)
    tc = TrainConfig(optimizer="sgd", lr=cfg.lr, momentum=cfg.momentum, epochs=cfg.epochs,
                     batch_size=cfg.batch_size, weight_decay=cfg.lam, seed=ctx.seed,
                     log_every=max(1, cfg.epochs // 5))
    res = train(model, s, tc, record_every=max(1, cfg.epochs // 5), progress=ctx.progress)
    last = res.history[-1]
    summary = {k: last.get(k, float("nan")) for k in METRICS}
    summary.update({"loss": last["loss"], "accuracy": last["accuracy"], "epochs": res.epochs,
                    "nc_degenerate": last.get("nc_degenerate", float("nan")),
                    "num_classes": C, "n": s.n,
                    "nc_loss_floor": nc_loss_without_decay((C - 1) / C, C, loss_scale=1.0 / C)})
    hist = [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in res.history]
    return ExperimentResult(summary, hist)


EXPERIMENT = Experiment(
    name="deep_collapse",
    description="Deep homogeneous ReLU MLP (bias-free) on digits/MNIST, MSE + weight decay lam, depth L: "
                "final NC1-NC4 at one (lam, depth) point (atlas, science.md §3.4/§4)",
    config=DeepCollapseConfig,
    run=run,
    claim="map: NC1 against (weight decay, depth) after a fixed SGD budget (reported, not claimed)",
    large={"dataset": "mnist_subset", "per_class": 500, "width": 256, "epochs": 100},
)
