"""Class-incremental learning: least-squares against random initialisation of the new classes' rows
(docs/science.md §5.5).

Harun and Kanan, "A good start matters: enhancing continual learning with data-driven weight
initialization" (CoLLAs 2025, arXiv:2503.06385): with MSE training, collapse makes the last layer
a least-squares classifier of the features, so initialising the rows of newly encountered classes
by least squares on the current features removes the loss spike of a random initialisation and
speeds up adaptation. The claim is **empirical**; this experiment measures it, with no theory
keys.

Protocol, per seed (``seeds`` seeds; both arms share everything up to the boundary):

1. *Task 1*: an MLP with ``num_old`` outputs is trained on classes ``0 .. num_old - 1`` of
   ``data`` (``train_per_class`` images per class, standardised with the training statistics)
   with ``train`` (MSE by default, ``loss_scale = 1``: ``(1/2)|f - e_y|^2`` per sample). Its
   final training loss on task 1 is ``L1``.
2. *Boundary*: the classifier grows to all C classes; the old rows are kept and the new rows are
   initialised either **randomly** (the rows a fresh model of C outputs gets from the model's own
   initialisation, seed + 1000) or by **least squares** on the task-2 features h_j (the frozen
   network's penultimate features of every task-2 training image, replay included):

   .. math::

       [W_{new}, b_{new}] = \\arg\\min \\sum_j \\|W h_j + b - e^{new}_{y_j}\\|^2 + \\rho \\|W\\|_F^2,

   with ``e^new_y`` the one-hot vector of y restricted to the new classes (0 for a replayed old
   image) and ``rho = ridge`` (0: the minimum-norm solution of ``torch.linalg.lstsq``). For MSE on
   equal masses this minimises the initial task-2 loss over the new rows exactly (the old rows'
   part does not depend on them): a check, not a claim.
3. *Task 2*: full-batch training (``task2``) of the whole network on the new classes' training
   images plus a small replay buffer (``replay_per_class`` images of every old class, the first
   ones of the task-1 set; every class needs samples), the data term logged at every step.

Reported, per arm (``ls``, ``random``), mean and 95% interval over seeds (normal approximation,
``1.96 sd / sqrt(seeds)``): ``spike`` = task-2 loss at step 0 divided by ``L1`` (how far above
the pre-boundary level the loss jumps), ``recover_steps`` = the first step at which the task-2
loss is below ``recover_factor * L1`` (``task2.epochs + 1`` if never: censored, counted in
``censored_<arm>``), the final task-2 loss, and the paired differences random - ls with their
intervals; ``frac_ls_lower_spike`` = fraction of seeds where the least-squares start is lower.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch

from ..data.base import Samples
from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science

ARMS = ("ls", "random")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class LSInitConfig:
    """Parameters of ls_init.

    Attributes:
        data: data set (digits, mnist_subset; mnist with data.folder).
        num_old: classes of task 1 (0 .. num_old - 1); the rest are task 2's new classes.
        train_per_class: training images per class.
        model: the network (mlp: model.width, model.depth).
        train: task-1 training (MSE with loss_scale 1 by default).
        task2: task-2 training after the boundary (full batch: one step per epoch, loss logged each step).
        ridge: ridge rho of the least-squares rows (0: minimum-norm least squares).
        recover_factor: recovered once the task-2 loss is below recover_factor times the task-1 loss L1.
        seeds: seeds (task-1 networks), each shared by both arms.
        replay_per_class: task-1 images of every old class replayed in task 2 (>= 1).
    """

    data: DataSpec = DataSpec("digits")
    num_old: int = 5
    train_per_class: int = 100
    model: ModelSpec = ModelSpec("mlp", {"width": 128, "depth": 3})
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-3, epochs=30, batch_size=64,
                                     weight_decay=5e-4, loss="mse", loss_scale=1.0, log_every=10)
    task2: TrainConfig = TrainConfig(optimizer="adam", lr=1e-3, epochs=150, batch_size=None,
                                     weight_decay=5e-4, loss="mse", loss_scale=1.0, log_every=1)
    ridge: float = 0.0
    recover_factor: float = 2.0
    seeds: int = 5
    replay_per_class: int = 10


def _subset(s: Samples, classes: range, num_classes: int, replay: int = 0) -> Samples:
    """The samples of ``classes`` (labels kept) plus the first ``replay`` of every other class."""
    idx = ((s.y >= classes.start) & (s.y < classes.stop)).nonzero().reshape(-1)
    if replay:
        idx = torch.cat([(s.y == c).nonzero().reshape(-1)[:replay] for c in range(num_classes)
                         if c not in classes] + [idx])
    n = idx.numel()
    return Samples(s.X[idx].contiguous(), s.y[idx], torch.full((n,), 1.0 / n, dtype=s.X.dtype,
                   device=s.X.device), num_classes, None, s.image_shape)


def least_squares_rows(H, y, new: range, *, ridge: float = 0.0):
    """Rows ``W (len(new), p)`` and bias ``b (len(new),)`` minimising
    ``sum_j |W h_j + b - e^new_{y_j}|^2 + ridge |W|^2`` over the features ``H (n, p)`` with labels
    ``y (n,)`` in ``0 .. new.stop - 1`` (``e^new_y``: one-hot over the new classes, 0 for an old y).

    Raises:
        ValueError: NaN features, mismatched shapes, a label outside 0 .. new.stop - 1, no sample
            of a new class, or ridge < 0.
    """
    if H.ndim != 2 or y.shape != (H.shape[0],):
        raise ValueError(f"need H (n, p) and y (n,); got {tuple(H.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(H).all():
        raise ValueError("features contain NaN or inf; train task 1 with a smaller lr")
    if (y < 0).any() or (y >= new.stop).any() or not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"labels must lie in 0..{new.stop - 1} and ridge must be >= 0 (got {ridge!r})")
    if any(not (y == c).any() for c in new):
        raise ValueError(f"every new class {new.start}..{new.stop - 1} needs samples")
    H = H.double()
    A = torch.cat([H, torch.ones(len(H), 1, dtype=H.dtype, device=H.device)], dim=1)
    Y = torch.nn.functional.one_hot(y.long(), new.stop)[:, new.start:].to(A.dtype)
    if ridge > 0:
        R = ridge * torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
        R[-1, -1] = 0.0  # the bias is not penalised
        sol = torch.linalg.solve(A.T @ A + R, A.T @ Y)
    else:
        sol = torch.linalg.lstsq(A.cpu(), Y.cpu(), driver="gelsd").solution.to(A.device)
    return sol[:-1].T, sol[-1]


def _grow(net, C: int, rows, cfg: LSInitConfig, d: int, seed: int, device):
    """A copy of ``net`` whose classifier has C rows: the old ones, then ``rows`` (W, b)."""
    from ..models import build_model
    new = copy.deepcopy(net)
    old = net.classifier
    fresh = build_model(cfg.model, d, C, seed=seed + 1000, dtype=old.weight.dtype, device=device)
    lin = fresh.classifier
    with torch.no_grad():
        lin.weight[:old.out_features] = old.weight
        lin.bias[:old.out_features] = old.bias
        if rows is not None:
            lin.weight[old.out_features:] = rows[0].to(lin.weight.dtype)
            lin.bias[old.out_features:] = rows[1].to(lin.bias.dtype)
    new.classifier = lin
    return new


def _stats(v: list) -> tuple[float, float, float]:
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    h = Z95 * sd / math.sqrt(len(v))
    return m, m - h, m + h


def run(cfg: LSInitConfig, ctx: RunContext) -> ExperimentResult:
    from ..threads import one_thread_on_cpu
    # CPU: one torch thread; these problems are small, and two threads spin-wait on a busy machine
    with one_thread_on_cpu(ctx.device):
        return _run(cfg, ctx)


def _run(cfg: LSInitConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.train import collect_features, train
    from ..models import build_model
    from .fixed_etf import split
    from .weight_decay import checkpointer, load_data
    full = load_data(cfg.data, standardise="none").sample(dtype=torch.float32, device=ctx.device)
    C = full.num_classes
    if not (1 <= cfg.num_old < C) or cfg.seeds < 1 or not cfg.recover_factor > 0:
        raise ValueError(f"need 1 <= num_old < {C} (classes of {cfg.data.name}), seeds >= 1, "
                         f"recover_factor > 0; got {cfg.num_old}, {cfg.seeds}, {cfg.recover_factor}")
    if not 1 <= cfg.replay_per_class <= cfg.train_per_class:
        raise ValueError(f"replay_per_class must be in 1..train_per_class={cfg.train_per_class} "
                         f"(every class needs samples in task 2), got {cfg.replay_per_class}")
    for name, tc in (("train", cfg.train), ("task2", cfg.task2)):
        if tc.loss not in ("mse", "cross_entropy"):
            raise ValueError(f"{name}.loss must be mse or cross_entropy, got {tc.loss!r}")
    if cfg.task2.batch_size is not None:
        raise ValueError("task2 is full batch (a loss per step): set task2.batch_size=none")
    tr, _ = split(full, cfg.train_per_class, seed=ctx.seed)
    old, new = range(0, cfg.num_old), range(cfg.num_old, C)
    t1, t2 = _subset(tr, old, cfg.num_old), _subset(tr, new, C, cfg.replay_per_class)
    history, per = [], {a: {"spike": [], "recover_steps": [], "final": [], "censored": []}
                        for a in ARMS}
    for i in range(cfg.seeds):
        seed = ctx.seed + i
        net = build_model(cfg.model, tr.d, cfg.num_old, seed=seed, dtype=torch.float32,
                          device=ctx.device)
        r1 = train(net, t1, replace(cfg.train, seed=cfg.train.seed + seed), progress=ctx.progress,
                   checkpoint=checkpointer(ctx, f"checkpoint-{seed}-task1.pt"))
        L1 = r1.final["loss"]
        H = collect_features(net, t2, cfg.task2)[0]
        rows = {"ls": least_squares_rows(H, t2.y, new, ridge=cfg.ridge), "random": None}
        for arm in ARMS:
            grown = _grow(net, C, rows[arm], cfg, tr.d, seed, ctx.device)
            r2 = train(grown, t2, replace(cfg.task2, seed=cfg.task2.seed + seed),
                       progress=ctx.progress,
                       checkpoint=checkpointer(ctx, f"checkpoint-{seed}-{arm}.pt"))
            losses = [(int(r["epoch"]), r["loss"]) for r in r2.history]
            below = [e for e, l in losses if l <= cfg.recover_factor * L1]
            steps = below[0] if below else cfg.task2.epochs + 1
            per[arm]["spike"].append(losses[0][1] / L1)
            per[arm]["recover_steps"].append(float(steps))
            per[arm]["censored"].append(float(not below))
            per[arm]["final"].append(losses[-1][1])
            history += [{"seed": seed, "arm": arm, "epoch": e, "loss": l, "loss_over_L1": l / L1,
                         "accuracy": r["accuracy"], "L1": L1} for (e, l), r in zip(losses, r2.history)]
    summary: dict = {"num_new": len(new), "n_task1": t1.n, "n_task2": t2.n,
                     "L1": sum(r["L1"] for r in history if r["epoch"] == 0) / (2 * cfg.seeds)}
    for arm in ARMS:
        for k in ("spike", "recover_steps", "final"):
            m, lo, hi = _stats(per[arm][k])
            summary.update({f"{k}_{arm}": m, f"{k}_{arm}_lo": lo, f"{k}_{arm}_hi": hi})
        summary[f"censored_{arm}"] = sum(per[arm]["censored"])
    for k in ("spike", "recover_steps"):
        m, lo, hi = _stats([r - l for r, l in zip(per["random"][k], per["ls"][k])])
        summary.update({f"{k}_gain": m, f"{k}_gain_lo": lo, f"{k}_gain_hi": hi})
    summary["frac_ls_lower_spike"] = sum(l < r for l, r in zip(per["ls"]["spike"],
                                                                per["random"]["spike"])) / cfg.seeds
    return ExperimentResult(summary, history)


def plot(run) -> list[str]:
    """``ls_init.png``: task-2 loss / L1 against steps per arm (every seed, and the mean), with the
    recovery level; the spike and the steps to recover per arm with their 95% intervals."""
    import matplotlib.pyplot as plt
    from .weight_decay import num
    cfg, s = run.config, run.summary
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    colors = {"ls": "tab:green", "random": "tab:red"}
    names = {"ls": "least-squares rows", "random": "random rows"}
    for arm in ARMS:
        rows = [r for r in run.history if r.get("arm") == arm and num(r, "loss_over_L1") is not None]
        seeds = sorted({num(r, "seed") for r in rows})
        curves = {}
        for sd in seeds:
            pts = sorted((num(r, "epoch"), num(r, "loss_over_L1")) for r in rows if num(r, "seed") == sd)
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[arm], alpha=0.25, lw=0.8)
            for e, v in pts:
                curves.setdefault(e, []).append(v)
        es = sorted(curves)
        ax1.plot(es, [sum(curves[e]) / len(curves[e]) for e in es], color=colors[arm], lw=2.2,
                 label=f"{names[arm]} (mean of {len(seeds)} seeds)")
    ax1.axhline(cfg.recover_factor, ls="--", color="k",
                label=f"recovered: loss = {cfg.recover_factor:g} × L1 (task-1 loss)")
    ax1.axhline(1.0, ls=":", color="0.4", label="L1: task-1 loss before the boundary")
    ax1.set_yscale("log")
    ax1.set_xlabel("task-2 optimiser step (full batch)")
    ax1.set_ylabel(f"task-2 training loss / L1 ({cfg.task2.loss})")
    ax1.set_title(f"{cfg.data.name}: classes 0–{cfg.num_old - 1}, then {int(s['num_new'])} new "
                  f"classes (+{cfg.replay_per_class} replayed per old class);\n{cfg.model.name} width {cfg.model.get('width', '?')}, "
                  f"task 2: {cfg.task2.optimizer} lr {cfg.task2.lr:g}", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    for j, (k, lab) in enumerate((("spike", "initial loss / L1"), ("recover_steps", "steps to recover"))):
        ax = ax2 if j == 0 else ax2.twinx()
        for i, arm in enumerate(ARMS):
            x = j * 3 + i
            m = s[f"{k}_{arm}"]
            ax.errorbar(x, m, yerr=[[m - s[f"{k}_{arm}_lo"]], [s[f"{k}_{arm}_hi"] - m]], fmt="o",
                        color=colors[arm], capsize=5, ms=7)
            ax.text(x + 0.12, m, f"{m:.3g}", fontsize=8, va="center")
        ax.set_ylabel(lab + (" (left)" if j == 0 else " (right)"))
        ax.set_ylim(bottom=0)
    ax2.set_xticks([0, 1, 3, 4], ["LS\n(spike)", "random\n(spike)", "LS\n(steps)", "random\n(steps)"])
    ax2.set_xlim(-0.6, 4.8)
    ax2.set_title(f"spike (left) and steps to recover (right): mean, 95% interval\n"
                  f"random − LS: spike {s['spike_gain']:+.3g}, steps {s['recover_steps_gain']:+.3g}"
                  f"; censored: LS {int(s['censored_ls'])}, random {int(s['censored_random'])}",
                  fontsize=10)
    fig.tight_layout()
    run.savefig(fig, "ls_init.png")
    return ["ls_init.png"]


EXPERIMENT = Experiment(
    name="ls_init",
    description="class-incremental: least-squares vs random rows for the new classes; initial loss "
                "spike and steps to recover over seeds (empirical; docs/science.md §5.5)",
    config=LSInitConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="Initialising new classes' classifier rows by least squares on the current features "
              "removes the initial loss spike of random rows and shortens recovery (empirical)",
        source="docs/science.md §5.5; Harun & Kanan, A good start matters (CoLLAs 2025, "
               "arXiv:2503.06385)",
        regime="bounded",
        statistic="spike_gain",
        threshold=0.0,
        collapsed_below=False,
        theory=None,
        labels={"num_old": "classes in task 1", "ridge": "ridge ρ of the least squares",
                "spike_gain": "initial loss / L1, random − LS",
                "recover_steps_gain": "steps to recover, random − LS"}),
    large={"data": "mnist_subset", "train_per_class": 400, "model.width": 512, "seeds": 10,
           "train.epochs": 40, "task2.epochs": 300},
    small={"seeds": 2, "train_per_class": 30, "replay_per_class": 5, "model.width": 32,
           "train.epochs": 5, "task2.epochs": 20},
)
