"""fixed_etf, the ``resnet18`` preset: two ResNet-18s, their memory account and a few SGD steps.

Stated in :mod:`meanfield.experiments.fixed_etf` (docs/science.md §5.6).
"""

from __future__ import annotations

import torch

from .fixed_etf import ARMS, PUBLISHED_SAVING, FixedETFConfig
from .registry import ExperimentResult, RunContext, agreement
from .weight_decay import load_data


def run_resnet(cfg: FixedETFConfig, ctx: RunContext) -> ExperimentResult:
    """The ``resnet18`` preset (stated in :mod:`meanfield.experiments.fixed_etf`)."""
    from ..deep import resnet as rn
    from ..deep.fixed_etf import fix_classifier
    from ..deep.memory import step_memory
    r = cfg.resnet
    if r.reduce not in rn.REDUCE or r.batch < 1 or r.steps < 0 or r.per_class < 1:
        raise ValueError(f"resnet: need reduce in {', '.join(rn.REDUCE)}, batch >= 1, steps >= 0, "
                         f"per_class >= 1; got {r.reduce!r}, {r.batch}, {r.steps}, {r.per_class}")
    if cfg.data.name == "cifar10":
        s = load_data(cfg.data, per_class=r.per_class, standardise="global").sample(
            seed=ctx.seed, dtype=torch.float32, device=ctx.device)
    else:
        s = rn.synthetic_cifar(r.per_class, 10, noise=r.noise, seed=ctx.seed, device=ctx.device)
    C, shape = s.num_classes, s.image_shape
    images = s.X.reshape(-1, *shape)
    g = torch.Generator().manual_seed(int(ctx.seed))
    perm = torch.cat([torch.randperm(s.n, generator=g) for _ in range(r.batch * max(r.steps, 1) // s.n + 1)])
    batches = [perm[i * r.batch:(i + 1) * r.batch].to(ctx.device) for i in range(max(r.steps, 1))]
    opt = "adam" if cfg.train.optimizer in ("adam", "adamw") else "sgd"

    def build(arm):
        kw = dict(widths=r.widths, seed=ctx.seed, device=ctx.device)
        if arm == "learned":
            return rn.ResNet18(shape[0], C, **kw)
        return fix_classifier(rn.ResNet18(shape[0], C, feature_dim=C, reduce=r.reduce, **kw))

    summary: dict = {}
    history: list = []
    x, y = images[batches[0]], s.y[batches[0]]
    stats = {arm: step_memory(build(arm), x, y, optimizer=opt) for arm in ARMS}
    for arm in ARMS:
        summary.update({f"{arm}_{k}": v for k, v in stats[arm].__dict__.items()})
        if r.steps:
            rows = rn.sgd_steps(build(arm), images, s.y, batches, optimizer=opt, lr=cfg.train.lr,
                                momentum=cfg.train.momentum)
            history += [dict(row, arm=arm) for row in rows]
            last = rows[-min(3, len(rows)):]
            summary[f"loss_{arm}"] = sum(q["loss"] for q in last) / len(last)
            summary[f"batch_acc_{arm}"] = sum(q["batch_accuracy"] for q in last) / len(last)
    st = {arm: stats[arm].state_bytes for arm in ARMS}
    theory = rn.state_saving_theory(in_channels=shape[0], num_classes=C, widths=r.widths,
                                    reduce=r.reduce, copies=4 if opt == "adam" else 3)
    agreement(summary, "state_saving", 1 - st["fixed"] / st["learned"], theory, 1e-12)
    total = {a: stats[a].param_bytes + stats[a].optimizer_bytes + stats[a].buffer_bytes
             + stats[a].peak_step_bytes for a in ARMS}  # resident before the step + the step's own peak
    summary.update({"param_saving": 1 - stats["fixed"].num_trainable / stats["learned"].num_trainable,
                    "total_saving": 1 - total["fixed"] / total["learned"],
                    "peak_saving": 1 - stats["fixed"].peak_step_bytes / max(stats["learned"].peak_step_bytes, 1),
                    "published_saving": PUBLISHED_SAVING, "n_train": s.n, "num_classes": C,
                    "batch": r.batch, "synthetic": cfg.data.name != "cifar10"})
    return ExperimentResult(summary, history, extra={"memory": stats})
