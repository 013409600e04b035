"""Training loop for the finite-width models: GD / SGD with momentum / Adam, per-layer weight decay,
MSE or cross-entropy with sample masses, learning-rate schedules, NC metrics at chosen epochs.

The objective (p_j the masses of the :class:`meanfield.Samples`, summing to 1):

.. math::

    L(\\theta) = s \\sum_j p_j\\, \\ell(f(x_j), y_j) + \\sum_k \\frac{\\lambda_k}{2}\\|\\theta_k\\|^2

with ``l`` from :mod:`meanfield.losses` (``mse``: ``(1/2)|f - e_y|^2``) and the loss scale
``s = 1/C`` for ``mse`` with C >= 2 outputs by default, which is the ``(1/2NC) sum |y - f|^2``
convention of docs/science.md §3.4 on balanced data (pass ``loss_scale=1`` for the mean-field
convention of :mod:`meanfield.flow`). The penalty is applied through the optimiser's
``weight_decay`` (per layer, torch's coupled L2: ``grad += lambda_k theta``; ``adamw``: decoupled).
A mini-batch B estimates the data term without bias by ``s (n/|B|) sum_{j in B} p_j l_j``.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from ..data.base import Samples, as_samples
from ..divergence import DivergenceCheck, DivergenceError, EpochMonitor
from ..losses import get_loss

__all__ = ["TrainConfig", "TrainResult", "train", "objective", "collect_features", "evaluate"]

_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (shared by the API and the CLI).

    Attributes:
        optimizer: ``sgd`` (full-batch GD when ``batch_size`` is None and momentum 0), ``adam``,
            ``adamw``.
        lr: learning rate.
        momentum: SGD momentum; ``nesterov`` for Nesterov momentum.
        epochs: passes over the data (one step per epoch in full batch).
        batch_size: mini-batch size; None = full batch.
        weight_decay: lambda for every layer, or one value per layer of ``model.layers()``.
        loss: ``mse``, ``cross_entropy`` (or a binary loss of :mod:`meanfield.losses`).
        loss_scale: s above; None = 1/C for ``mse`` with C >= 2 outputs, else 1.
        schedule: ``constant``, ``cosine`` (to 0 at the last epoch) or ``step`` (multiply by
            ``gamma`` at each epoch in ``milestones``).
        seed: seed of the mini-batch order.
        weighted: use the sample masses p (False: uniform 1/n).
        input_shape: reshape every input row to ``(n, *input_shape)`` (images for a conv net).
        tol_grad: stop early once the full-batch gradient norm of L is below this (full batch only).
        log_every: compute the full-training-set loss/accuracy row every this many epochs.
        eval_batch: batch size of feature extraction and evaluation.
        divergence: blow-up check on the epoch-mean objective (mean mini-batch data term plus
            the penalty): NaN/inf, ``window`` consecutive rising epochs with a total rise
            above ``rtol`` (relative), or a jump to more than 1e3 times its best value so far
            (and 10 times the initial one) raise a DivergenceError (see
            :mod:`meanfield.divergence`; ``DivergenceCheck(enabled=False)`` keeps only the
            NaN/inf test).
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    epochs: int = 100
    batch_size: Optional[int] = None
    weight_decay: float | tuple[float, ...] = 0.0
    loss: str = "mse"
    loss_scale: Optional[float] = None
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    seed: int = 0
    weighted: bool = True
    input_shape: Optional[tuple[int, ...]] = None
    tol_grad: Optional[float] = None
    log_every: int = 1
    eval_batch: int = 4096
    divergence: DivergenceCheck = DivergenceCheck(window=5, rtol=0.5)

    def __post_init__(self):
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(_OPTIMIZERS)}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(_SCHEDULES)}")
        get_loss(self.loss)
        if not (_real(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (_whole(self.epochs) and self.epochs >= 0):
            raise ValueError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if self.batch_size is not None and not (_whole(self.batch_size) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        wds = self.weight_decay if isinstance(self.weight_decay, (tuple, list)) else (self.weight_decay,)
        if any(not (_real(w) and w >= 0) for w in wds):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")
        for name in ("log_every", "eval_batch"):
            if not (_whole(getattr(self, name)) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (_whole(self.seed) and -2 ** 63 <= self.seed < 2 ** 64):  # torch's manual_seed range
            raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {self.seed!r}")
        for name in ("momentum", "gamma", "loss_scale", "tol_grad"):
            v = getattr(self, name)
            if not (v is None and name in ("loss_scale", "tol_grad")) and not (_real(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def _real(v) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    """An integer value (an int, or a finite float without a fractional part; not a bool)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) or (_real(v) and v == int(v))


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        model: the trained model (the same object that was passed, trained in place).
        history: one dict per logged epoch: ``epoch``, ``step``, ``lr``, ``loss`` (data term),
            ``objective`` (with the penalty), ``accuracy``, ``grad_norm`` (full batch only) and the
            NC metrics (``nc1`` ...) at the recorded epochs.
        features: ``{epoch: (n, feature_dim) Tensor}`` penultimate features (eval mode, CPU) at the
            epochs in ``feature_epochs``.
        epochs: epochs run; steps: optimiser steps.
        grad_norm: full-batch gradient norm of L at the end (None for mini-batch runs).
        config: the configuration.
    """

    model: nn.Module
    history: list = field(default_factory=list)
    features: dict = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0
    grad_norm: Optional[float] = None
    config: Optional[TrainConfig] = None

    @property
    def final(self) -> dict:
        """The last history row."""
        return self.history[-1] if self.history else {}


def _inputs(X: Tensor, config: TrainConfig) -> Tensor:
    return X.view(X.shape[0], *config.input_shape) if config.input_shape else X


def _scale(config: TrainConfig, k: int) -> float:
    if config.loss_scale is not None:
        return float(config.loss_scale)
    return 1.0 / k if (config.loss == "mse" and k >= 2) else 1.0


def _layer_decays(model: nn.Module, config: TrainConfig) -> list[tuple[list, float]]:
    layers = model.layers() if hasattr(model, "layers") else [[p for p in model.parameters()]]
    layers = [[p for p in ps if p.requires_grad] for ps in layers]
    wd = config.weight_decay
    if isinstance(wd, (tuple, list)):
        if len(wd) != len(layers):
            raise ValueError(f"weight_decay has {len(wd)} values but the model has {len(layers)} "
                             "layers (model.layers()); give one per layer or a single number")
        return [(ps, float(w)) for ps, w in zip(layers, wd) if ps]
    return [(ps, float(wd)) for ps in layers if ps]


def _masses(samples: Samples, config: TrainConfig) -> Tensor:
    return samples.p if config.weighted else torch.full_like(samples.p, 1.0 / samples.n)


def objective(model: nn.Module, samples: Samples, config: TrainConfig, *,
              index: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The data term ``s sum_j p_j l_j`` (estimated on ``index`` if given) and the penalty.

    Returns:
        (data term, penalty ``sum_k lambda_k/2 |theta_k|^2``), 0-dim tensors.
    """
    data = _data_only(model, samples, config, index)
    pen = sum(0.5 * w * sum((q ** 2).sum() for q in ps) for ps, w in _layer_decays(model, config))
    return data, torch.as_tensor(pen, dtype=data.dtype, device=data.device)


@torch.no_grad()
def collect_features(model: nn.Module, samples: Samples, config: TrainConfig = TrainConfig()
                     ) -> tuple[Tensor, Tensor]:
    """Penultimate features and outputs on the whole sample set, in eval mode (mode restored).

    Returns:
        (features (n, feature_dim), outputs (n, k)).
    """
    was = model.training
    model.eval()
    try:
        hs, fs = [], []
        for i in range(0, samples.n, config.eval_batch):
            h = model.features(_inputs(samples.X[i:i + config.eval_batch], config))
            hs.append(h)
            fs.append(model.classifier(h))
        return torch.cat(hs), torch.cat(fs)
    finally:
        model.train(was)


def evaluate(model: nn.Module, samples: Samples, config: TrainConfig = TrainConfig(), *,
             metrics: bool = False) -> dict:
    """Loss, objective, (mass-weighted) accuracy and optionally the NC metrics, in eval mode.

    When the class means of the features are degenerate (features died), the NC metrics are NaN
    and ``nc_degenerate`` is 1 instead of the run stopping."""
    from ..metrics import NC_FIELDS, DegenerateMeansError, neural_collapse
    h, f = collect_features(model, samples, config)
    p = _masses(samples, config)
    loss = get_loss(config.loss)
    data = _scale(config, f.shape[-1]) * (p * loss.value(f, samples.y)).sum()
    pen = sum(0.5 * w * sum(float((q.detach() ** 2).sum()) for q in ps)
              for ps, w in _layer_decays(model, config))
    pred = (f[:, 0] > 0).long() if f.shape[-1] == 1 else f.argmax(-1)
    row = {"loss": float(data), "objective": float(data) + float(pen),
           "accuracy": float((p * (pred == samples.y).to(p.dtype)).sum())}
    if metrics:
        W = model.classifier.weight.detach()
        b = getattr(model.classifier, "bias", None)
        try:
            nc = neural_collapse(h, samples.y, classifier=W, bias=None if b is None else b.detach(),
                                 weights=p)
        except DegenerateMeansError:  # dead features: a training outcome, not an input error
            row.update({k: float("nan") for k in NC_FIELDS})
            row["nc_degenerate"] = 1.0
        else:
            row.update({k: v for k, v in nc.as_dict().items() if v is not None})
            row["nc_degenerate"] = 0.0
            if nc.nc1 is None:  # rank-deficient means: the NC fields keep their NaN/flag form,
                row.update({k: float("nan") for k in NC_FIELDS})  # the new measures stay
                row["nc_degenerate"] = 1.0
    return row


def _grad_norm(model: nn.Module, samples: Samples, config: TrainConfig) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    data, pen = objective(model, samples, config)
    grads = torch.autograd.grad(data + pen, params, allow_unused=True)
    return math.sqrt(sum(float((g ** 2).sum()) for g in grads if g is not None))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": ps, "weight_decay": w} for ps, w in _layer_decays(model, config)]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=config.lr)


def _scheduler(opt, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.milestones),
                                                    gamma=config.gamma)
    return None


def train(model: nn.Module, samples, config: TrainConfig = TrainConfig(), *,
          record_every: Optional[int] = None, record_epochs: Sequence[int] = (),
          feature_epochs: Sequence[int] = (), test: Optional[Samples] = None,
          progress: Optional[bool] = None, checkpoint=None) -> TrainResult:
    """Train ``model`` in place on weighted samples.

    Args:
        model: a model of :mod:`meanfield.deep.models` (``features``, ``classifier``, ``layers``).
        samples: :class:`meanfield.Samples` (or a tuple ``(X, y[, p])``); moved to the model's
            device and dtype.
        config: the training configuration.
        record_every: compute the NC metrics every this many epochs (and at the first and last).
        record_epochs: further epochs at which to compute the NC metrics.
        feature_epochs: epochs at which to keep the penultimate features in the result.
        test: optional held-out samples; their accuracy is logged as ``test_accuracy``.
        progress: progress bar (tqdm) over epochs; default only when stderr is a terminal.
        checkpoint: a :class:`meanfield.deep.checkpoint.TrainCheckpoint`: saved periodically and
            at the end; a run of the same config, initial model and data resumes from it bit for bit.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: bad data (NaN, wrong shapes, incompatible loss), bad configuration.
        DivergenceError: the loss became NaN/inf, or the epoch-mean objective kept rising or
            jumped by orders of magnitude (``config.divergence``; the message names the epoch and
            says to lower the lr). It is also a FloatingPointError, what this raised before.
    """
    p0 = next(model.parameters())
    samples = as_samples(samples, dtype=p0.dtype, device=p0.device)
    test = as_samples(test, dtype=p0.dtype, device=p0.device) if test is not None else None
    k = model.classifier.weight.shape[0]
    get_loss(config.loss).check(k, samples.num_classes)
    opt = _optimizer(model, config)
    sched = _scheduler(opt, config)
    gen = torch.Generator().manual_seed(int(config.seed))
    full = config.batch_size is None or config.batch_size >= samples.n
    metric_epochs = set(int(e) for e in record_epochs)
    if record_every:
        metric_epochs |= set(range(0, config.epochs + 1, int(record_every))) | {config.epochs}
    feature_epochs = set(int(e) for e in feature_epochs)
    history: list[dict[str, Any]] = []
    features: dict[int, Tensor] = {}
    steps, gnorm = 0, None

    def log(epoch: int, force: bool = False) -> None:
        nonlocal gnorm
        want_metrics = epoch in metric_epochs
        if not (force or want_metrics or epoch % config.log_every == 0):
            return
        row: dict[str, Any] = {"epoch": epoch, "step": steps, "lr": opt.param_groups[0]["lr"]}
        row.update(evaluate(model, samples, config, metrics=want_metrics))
        if full:
            gnorm = _grad_norm(model, samples, config)
            row["grad_norm"] = gnorm
        if test is not None:
            row["test_accuracy"] = evaluate(model, test, config)["accuracy"]
        if not math.isfinite(row["loss"]):
            raise DivergenceError(f"training diverged: the loss is {row['loss']} at epoch {epoch} "
                                  f"(step {steps}); lower the learning rate (train.lr) or add "
                                  "weight decay")
        history.append(row)

    def keep_features(epoch: int) -> None:
        if epoch in feature_epochs:
            features[epoch] = collect_features(model, samples, config)[0].cpu()

    bar = _bar(config.epochs, progress)
    start, epoch = 1, 0
    if checkpoint is not None:  # resume (meanfield.deep.checkpoint)
        checkpoint.begin(model, samples, config)
        saved = checkpoint.restore(model, opt, sched, gen)
        if saved is not None:
            history[:], steps, epoch = saved["history"], saved["steps"], saved["epoch"]
            features.update(saved["features"])
            gnorm = history[-1].get("grad_norm") if history else None
            start = config.epochs + 1 if saved["done"] else epoch + 1
            bar.update(epoch)
    if not history:  # a fresh run (a resumed one has its rows)
        log(0, force=True)
        keep_features(0)
    decays = _layer_decays(model, config)
    # the jump rule's start: the objective before the first step (row 0, kept by a resume too)
    start0 = history[0].get("objective") if history and history[0]["epoch"] == 0 else None
    monitor = EpochMonitor(config.divergence, start=start0)
    if checkpoint is not None:
        checkpoint.attach(monitor)  # its window of epoch objectives is saved and restored too
    stop = False
    model.train()
    for epoch in range(start, config.epochs + 1):
        if full:
            batches = [None]
        else:
            perm = torch.randperm(samples.n, generator=gen).to(samples.X.device)
            batches = list(torch.split(perm, int(config.batch_size)))
        ep_loss = torch.zeros((), dtype=samples.X.dtype, device=samples.X.device)
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            batch_loss = _data_only(model, samples, config, idx)
            batch_loss.backward()
            ep_loss = ep_loss + batch_loss.detach()
            if full and config.tol_grad is not None:
                g2 = sum(float(((q.grad if q.grad is not None else 0) + w * q.detach()).pow(2).sum())
                         for ps, w in decays for q in ps)
                if math.sqrt(g2) <= config.tol_grad:
                    stop = True
                    break
            opt.step()
            steps += 1
        if stop:
            epoch -= 1
            break
        with torch.no_grad():  # the epoch-mean objective, one host sync per epoch
            pen = sum(0.5 * w * sum((q ** 2).sum() for q in ps) for ps, w in decays)
            monitor.observe(float(ep_loss / len(batches) + pen), epoch=epoch, step=steps)
        if sched is not None:
            sched.step()
        log(epoch, force=epoch == config.epochs)
        keep_features(epoch)
        bar.update(1)
        if checkpoint is not None:
            checkpoint.step(epoch, steps, model, opt, sched, gen, history, features)
    bar.close()
    if history[-1]["epoch"] != epoch or history[-1]["step"] != steps:
        log(epoch, force=True)
    if checkpoint is not None:
        checkpoint.step(epoch, steps, model, opt, sched, gen, history, features, final=True)
    return TrainResult(model, history, features, epoch, steps, gnorm, config)


def _data_only(model: nn.Module, samples: Samples, config: TrainConfig, index) -> Tensor:
    """The data term only: the penalty goes through the optimiser's weight decay."""
    p = _masses(samples, config)
    X, y = samples.X, samples.y
    if index is not None:
        X, y, p = X[index], y[index], p[index] * (samples.n / index.numel())
    f = model(_inputs(X, config))
    return _scale(config, f.shape[-1]) * (p * get_loss(config.loss).value(f, y)).sum()


class _NoBar:
    def update(self, *_):
        pass

    def close(self):
        pass


def _bar(total: int, enabled: Optional[bool]):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="train", unit="epoch")
