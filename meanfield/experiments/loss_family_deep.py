"""loss_family, the deep part: one network per loss, test accuracies and their paired differences.

Stated in :mod:`meanfield.experiments.loss_family` (docs/science.md §5.2): the same initialisation
and batch order for every loss; Wilson 95% intervals of the accuracies (:func:`wilson`) and 95%
intervals of the paired differences (:func:`paired_interval`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .loss_family_ufm import SHORT
from .registry import RunContext, agreement

if TYPE_CHECKING:
    from .loss_family import LossFamilyConfig

Z95 = 1.959963984540054


def deep_loss_name(loss: str, *, smoothing: float, focal_gamma: float) -> str:
    """The name of ``loss`` in :data:`meanfield.losses.LOSSES`, registered on first use.

    label_smoothing and focal enter as user losses ``label_smoothing(alpha=...)`` and
    ``focal(gamma=...)`` (the same per-sample functions as the UFM)."""
    from ..deep.ufm import focal_loss, label_smoothing_loss
    from ..losses import LOSSES, Loss
    if loss in ("cross_entropy", "mse"):
        return loss
    if loss == "label_smoothing":
        name, a = f"label_smoothing(alpha={smoothing:g})", smoothing

        def value(f, y):
            return label_smoothing_loss(f, y, a)

        def grad(f, y):
            k = f.shape[-1]
            q = (1 - a) * torch.nn.functional.one_hot(y.long(), k).to(f.dtype) + a / k
            return torch.softmax(f, dim=-1) - q
    else:
        name, gm = f"focal(gamma={focal_gamma:g})", focal_gamma

        def value(f, y):
            return focal_loss(f, y, gm)

        def grad(f, y):
            with torch.enable_grad():
                f = f.detach().requires_grad_()
                return torch.autograd.grad(focal_loss(f, y, gm).sum(), f)[0]
    if name not in LOSSES.list():
        # label smoothing has finite minimisers without weight decay; focal loss, like CE, does not
        LOSSES.register(name, Loss(name, value, grad, min_outputs=2, unbounded=loss == "focal"),
                        overwrite=True)
    return name


def wilson(k: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n."""
    p, z2 = k / n, Z95 ** 2
    c = (p + z2 / (2 * n)) / (1 + z2 / n)
    h = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return c - h, c + h


def paired_interval(a, b) -> tuple[float, float, float]:
    """Mean and 95% interval of the paired difference of two 0/1 vectors ((n,) Tensors)."""
    d = a.double() - b.double()
    m = float(d.mean())
    se = float(d.std(unbiased=True)) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    return m, m - Z95 * se, m + Z95 * se


def deep_part(cfg: LossFamilyConfig, ctx: RunContext, summary: dict) -> list[dict]:
    """Train one network per loss, write accuracies and paired differences into ``summary``; the
    training rows."""
    from ..deep.train import collect_features, train
    from ..models import build_model
    from .fixed_etf import split
    from .weight_decay import checkpointer, load_data
    full = load_data(cfg.data, standardise="none").sample(dtype=torch.float32, device=ctx.device)
    tr, te = split(full, cfg.train_per_class, seed=ctx.seed)
    rows, correct = [], {}
    for loss in cfg.losses:
        name = deep_loss_name(loss, smoothing=cfg.smoothing, focal_gamma=cfg.focal_gamma)
        net = build_model(cfg.model, tr.d, tr.num_classes, seed=ctx.seed, dtype=torch.float32,
                          device=ctx.device)
        tc = replace(cfg.train, loss=name, seed=cfg.train.seed + ctx.seed)
        if loss == "mse":
            tc = replace(tc, loss_scale=cfg.mse_loss_scale)
        res = train(net, tr, tc, test=te, progress=ctx.progress,
                    checkpoint=checkpointer(ctx, f"checkpoint-{loss}.pt"))
        rows += [dict(r, part="deep", loss=loss) for r in res.history]
        correct[loss] = (collect_features(net, te, tc)[1].argmax(-1) == te.y).cpu()
        s, k = SHORT[loss], int(correct[loss].sum())
        summary[f"test_acc_{s}"] = k / te.n
        summary[f"test_acc_{s}_lo"], summary[f"test_acc_{s}_hi"] = wilson(k, te.n)
        summary[f"train_acc_{s}"] = res.final["accuracy"]
    worst = 0.0
    for i, a in enumerate(cfg.losses):
        for b in cfg.losses[i + 1:]:
            m, lo, hi = paired_interval(correct[a], correct[b])
            key = f"diff_{SHORT[a]}_{SHORT[b]}"
            summary.update({key: m, f"{key}_lo": lo, f"{key}_hi": hi})
            worst = max(worst, abs(lo), abs(hi))
    summary.update({"n_train": tr.n, "n_test": te.n})
    if len(cfg.losses) > 1:
        if te.n >= cfg.min_test:
            agreement(summary, "acc_diff", worst, 0.0, cfg.acc_tol)
        else:
            summary["acc_diff"] = worst
    return rows
