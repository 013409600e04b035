"""Fixed simplex-ETF classifier against a learned one: accuracy and memory (docs/science.md §3.5, last part).

Zhu et al. (2021): freezing the last layer to a simplex ETF ``sqrt(C/(C-1)) (I - 11^T/C)`` with
penultimate width C gives the same accuracy with less memory. Two MLPs are trained with
cross-entropy on the same balanced training split (``train_per_class`` images per class, the rest
is the test set; global standardisation with the training statistics):

- *learned*: ``model.depth - 1`` hidden layers of ``model.width`` and a trained ``C x width``
  classifier (``model=mlp`` with biases, or ``model=deep``, bias-free ReLU);
- *fixed*: the same with the last hidden layer of width C and the classifier frozen to the ETF
  (a buffer: no gradient, no optimiser state; :func:`meanfield.deep.fixed_etf.fix_classifier`).

Memory (:func:`meanfield.deep.memory.measure_memory`, same architecture, one SGD-momentum step on a
batch of ``train.batch_size``): bytes of trainable parameters, gradients, optimiser state and buffers,
and the measured peak of one training step (CUDA allocator peak on a GPU, profiler account on CPU).

**Activation.** With ReLU on the C-wide feature layer the frozen ETF pushes coordinate c down on the
``(C-1)/C`` of the samples outside class c; coordinates die (zero on every sample) and a class whose
coordinate is dead is never predicted, so accuracy falls to about ``(C - dead)/C`` (measured 0.5-0.7
on digits, 2-5 dead of 10). The default is therefore leaky ReLU for both arms (the learned arm is
unaffected either way); ``model.activation=relu`` shows the failure.

**Convention.** Cross-entropy ``(1/N) sum_n CE(f(x_n), y_n)`` (``loss_scale = 1``), ``train`` for
both arms (the data: ``data``, all of it, split here; ``train.seed`` offsets the batch order).
Every training checkpoints into the run directory; a killed run resumes bit for bit.

**Claims and tolerances.**

- ``test_acc_gap`` = (learned - fixed) test accuracy, mean over seeds; theory 0. Tolerance: three
  standard deviations of the difference of two accuracies measured on ``n_test`` points,
  ``3 sqrt(2 a (1 - a) / n_test)`` with ``a`` the learned arm's mean accuracy (``a (1 - a)``
  floored at 0.0099, i.e. a = 0.99, so that a perfect score does not give a zero tolerance): the
  binomial noise of the test set, the only error the comparison has if the claim holds. It is a
  statistical check: at this size it fails about 0.3% of the time when the claim is true.
- ``state_saving`` = ``1 - state_fixed / state_learned`` measured by ``measure_memory``; theory
  the exact count: with ``P`` trainable scalars, ``k`` copies per scalar (parameter, gradient and
  ``k - 2`` optimiser tensors: 3 for SGD with momentum) and the ``C x C`` ETF buffer,
  ``1 - (k P_fixed + C^2) / (k P_learned)``. Tolerance 1e-12 (byte counts are integers; only the
  float division rounds).
- ``peak_saving`` (the measured peak of one step) is reported, not claimed: it depends on the
  allocator and, on CPU, on the profiler's account.

**Preset ``resnet18``** (``--set preset=resnet18``; docs/science.md §5.6): the paper's scale. Two
ResNet-18s (:class:`meanfield.deep.resnet.ResNet18`, CIFAR variant, 11.2M parameters) on
CIFAR-shaped 3 x 32 x 32 inputs: synthetic class templates plus noise
(:func:`~meanfield.deep.resnet.synthetic_cifar`, no download) unless ``data=cifar10`` with
``data.folder``: *learned* (512-d features, trained ``C x 512`` classifier) and *fixed* (features
reduced to C by ``resnet.reduce``: ``linear``, a ``512 -> C`` layer after the pooling, or
``last_block``, the last block's output width C; classifier frozen to the ETF). Memory: the same
``measure_memory`` account (``step_memory``: parameter + gradient + optimiser-state + buffer bytes
counted from the tensors, and the profiler's peak of one SGD step) at the same batch
``resnet.batch``; ``state_saving`` against the exact count (1e-12), ``param_saving``, ``peak_saving``
(the step's own allocations, relative to its start) and ``total_saving`` (resident parameter,
optimiser and buffer bytes plus the step's peak: the whole training footprint) beside the published
"over 20 %" (``published_saving``, not a tolerance). Both arms then take
``resnet.steps`` SGD steps (``train.lr``, ``train.momentum``) on the same mini-batches: their losses
are reported; the accuracy half of the claim is not tested at this scale (CPU budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..data.base import Samples
from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement
from .weight_decay import checkpointer, load_data, num

ARMS = ("learned", "fixed")
PRESETS = ("mlp", "resnet18")
PUBLISHED_SAVING = 0.20  # Zhu et al. 2021: "reduces memory cost by over 20% on ResNet18"
MODELS = ("mlp", "deep")
_MEMORY_NAMES = {"mlp": "mlp", "deep": "homogeneous_mlp"}  # meanfield.deep.memory's names


@dataclass(frozen=True)
class ResNetPreset:
    """The ResNet-18 scale (``preset=resnet18``).

    Attributes:
        widths: the four stage widths (ResNet-18: 64,128,256,512).
        reduce: how the fixed arm's features become C-wide: linear (a 512 -> C layer after pooling) or last_block (the last block outputs C channels).
        batch: images per step, for the memory step and the training steps.
        steps: SGD steps of each arm (same mini-batches; 0: memory only).
        per_class: training images per class (synthetic, or drawn from data=cifar10).
        noise: standard deviation of the synthetic images around their class templates.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512)
    reduce: str = "linear"
    batch: int = 32
    steps: int = 8
    per_class: int = 32
    noise: float = 1.0


@dataclass(frozen=True)
class FixedETFConfig:
    """Parameters of the fixed-ETF experiment.

    Attributes:
        data: data set, all of it (digits, mnist_subset; mnist/cifar10 with data.folder); split below.
        train_per_class: training images per class; the rest of the data set is the test set.
        model: mlp (biases; model.activation, see above for why not relu) or deep (bias-free ReLU); model.width, model.depth >= 3.
        train: SGD with cross-entropy of both arms; train.seed offsets the batch order.
        seeds: initialisations per arm (seeds seed, seed + 1, ...).
        preset: mlp (the MLPs above) or resnet18 (the paper's scale: the resnet parameters, CIFAR-shaped inputs).
        resnet: the resnet18 preset's parameters.
    """

    data: DataSpec = DataSpec("digits")
    train_per_class: int = 120
    model: ModelSpec = ModelSpec("mlp", {"width": 256, "depth": 4, "activation": "leaky_relu"})
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=30,
                                     batch_size=64, loss="cross_entropy")
    seeds: int = 2
    preset: str = "mlp"
    resnet: ResNetPreset = ResNetPreset()


def split(samples: Samples, train_per_class: int, *, seed: int = 0) -> tuple[Samples, Samples]:
    """Balanced training split (``train_per_class`` per class) and the rest as test set, both
    standardised with the training set's global mean and std, equal masses.

    Raises:
        ValueError: a class with at most ``train_per_class`` samples (nothing left to test on).
    """
    g = torch.Generator().manual_seed(int(seed))
    tr, te = [], []
    for c in range(samples.num_classes):
        idx = (samples.y == c).nonzero().reshape(-1)
        if idx.numel() <= train_per_class:
            raise ValueError(f"class {c} has {idx.numel()} samples, not more than train_per_class="
                             f"{train_per_class}; lower train_per_class")
        idx = idx[torch.randperm(idx.numel(), generator=g).to(idx.device)]
        tr.append(idx[:train_per_class])
        te.append(idx[train_per_class:])
    tr, te = torch.cat(tr), torch.cat(te)
    X = samples.X
    mean, std = X[tr].mean(), X[tr].std(unbiased=False)

    def make(idx):
        n = idx.numel()
        return Samples(((X[idx] - mean) / std).contiguous(), samples.y[idx],
                       torch.full((n,), 1.0 / n, dtype=X.dtype, device=X.device),
                       samples.num_classes, samples.class_names, samples.image_shape)
    return make(tr), make(te)


def _trainable(model: str, d_in: int, C: int, widths: list, depth: int) -> int:
    dims = [d_in] + widths + [C]
    bias = model == "mlp"
    return sum(dims[i] * dims[i + 1] + (dims[i + 1] if bias else 0) for i in range(depth))


def state_saving_theory(model: str, d_in: int, C: int, width: int, depth: int, *,
                        copies: int = 3) -> float:
    """``1 - (k P_fixed + C^2) / (k P_learned)`` (module docstring), ``k = copies``; ``model``
    ``mlp`` (biases) or ``deep`` (bias-free)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    p_l = _trainable(model, d_in, C, [width] * (depth - 1), depth)
    p_f = _trainable(model, d_in, C, [width] * (depth - 2) + [C], depth)
    p_f -= C * C + (C if model == "mlp" else 0)  # the classifier is a buffer, its bias removed
    return 1.0 - (copies * p_f + C * C) / (copies * p_l)


def _shape(cfg: FixedETFConfig) -> tuple[int, int]:
    mp = {**cfg.model.defaults(), **cfg.model.kwargs}
    return int(mp["width"]), int(mp["depth"])


def _build(cfg: FixedETFConfig, arm: str, d: int, C: int, seed: int, dtype, device):
    from ..deep.fixed_etf import fix_classifier
    from ..models import build_model
    width, depth = _shape(cfg)
    widths = [width] * (depth - 1) if arm == "learned" else [width] * (depth - 2) + [C]
    net = build_model(cfg.model, d, C, seed=seed, dtype=dtype, device=device, width=widths)
    return fix_classifier(net) if arm == "fixed" else net


def run_resnet(cfg: FixedETFConfig, ctx: RunContext) -> ExperimentResult:
    """The ``resnet18`` preset (module docstring)."""
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


def run(cfg: FixedETFConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.memory import measure_memory
    from ..deep.train import evaluate, train

    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; valid: {', '.join(PRESETS)}")
    if cfg.preset == "resnet18":
        return run_resnet(cfg, ctx)
    if cfg.model.name not in MODELS:
        raise ValueError(f"fixed_etf compares MLPs: model must be one of {', '.join(MODELS)}, got "
                         f"{cfg.model.name!r}")
    width, depth = _shape(cfg)
    if depth < 3 or cfg.seeds < 1:
        raise ValueError(f"need model.depth >= 3 and seeds >= 1; got depth={depth}, seeds={cfg.seeds}")
    full = load_data(cfg.data, standardise="none").sample(dtype=torch.float32, device=ctx.device)
    train_s, test_s = split(full, cfg.train_per_class, seed=ctx.seed)
    C, d = train_s.num_classes, train_s.d
    history, finals = [], {arm: [] for arm in ARMS}
    for i in range(cfg.seeds):
        seed = ctx.seed + i
        for arm in ARMS:
            net = _build(cfg, arm, d, C, seed, torch.float32, ctx.device)
            tc = replace(cfg.train, seed=cfg.train.seed + seed)
            res = train(net, train_s, tc, test=test_s, progress=ctx.progress,
                        checkpoint=checkpointer(ctx, f"checkpoint-{seed}-{arm}.pt"))
            history += [dict(r, arm=arm, seed=seed) for r in res.history]
            finals[arm].append({"train": evaluate(net, train_s, tc)["accuracy"],
                                "test": evaluate(net, test_s, tc)["accuracy"]})
    summary: dict = {}
    for arm in ARMS:
        for k in ("train", "test"):
            vals = [f[k] for f in finals[arm]]
            summary[f"{k}_acc_{arm}"] = sum(vals) / len(vals)
            summary[f"{k}_acc_{arm}_spread"] = max(vals) - min(vals)
    a = summary["test_acc_learned"]
    tol = 3.0 * math.sqrt(2.0 * max(a * (1 - a), 0.0099) / test_s.n)
    agreement(summary, "test_acc_gap", a - summary["test_acc_fixed"], 0.0, tol)
    adam = cfg.train.optimizer in ("adam", "adamw")
    mem = measure_memory(model=_MEMORY_NAMES[cfg.model.name], d_in=d, num_classes=C, width=width,
                         depth=depth, batch=cfg.train.batch_size or train_s.n,
                         optimizer="adam" if adam else "sgd", device=ctx.device, seed=ctx.seed)
    agreement(summary, "state_saving", mem.state_saving,
              state_saving_theory(cfg.model.name, d, C, width, depth, copies=4 if adam else 3), 1e-12)
    summary["peak_saving"] = mem.peak_saving
    for arm in ARMS:
        st = getattr(mem, arm)
        summary.update({f"{arm}_{k}": getattr(st, k) for k in
                        ("num_trainable", "param_bytes", "grad_bytes", "optimizer_bytes",
                         "buffer_bytes", "state_bytes", "peak_step_bytes")})
    summary.update({"n_train": train_s.n, "n_test": test_s.n, "num_classes": C})
    return ExperimentResult(summary, history, extra={"memory": mem})


def _finals(history) -> dict:
    """Final train/test accuracy of every (arm, seed), from the history rows."""
    last: dict = {}
    for r in history:
        last[(r.get("arm"), num(r, "seed"))] = r
    return {arm: [{"train": num(r, "accuracy"), "test": num(r, "test_accuracy")}
                  for (a, _), r in last.items() if a == arm] for arm in ARMS}


def _memory_panel(ax, s, colors, unit: float, unit_name: str, buffers: str = "buffers (frozen ETF)") -> None:
    """Stacked training state (parameters, gradients, optimiser, buffers) and the step peak per arm."""
    parts = ("param_bytes", "grad_bytes", "optimizer_bytes", "buffer_bytes")
    names = ("parameters", "gradients", "optimiser state", buffers)
    for j, arm in enumerate(ARMS):
        bottom = 0.0
        for i, (p, nm) in enumerate(zip(parts, names)):
            v = s[f"{arm}_{p}"] / unit
            ax.bar(j, v, 0.5, bottom=bottom, color=("0.25", "0.5", "0.75", "tab:red")[i], edgecolor="k",
                   label=nm if j == 0 else None)
            bottom += v
        ax.text(j, bottom, f"{bottom:.0f} {unit_name}" if bottom >= 10 else f"{bottom:.2f} {unit_name}", ha="center", va="bottom", fontsize=8)
        pk = s[f"{arm}_peak_step_bytes"] / unit
        ax.bar(j + 2.2, pk, 0.5, color=colors[arm], edgecolor="k", hatch="//",
               label=f"peak of one step ({arm})")
        ax.text(j + 2.2, pk, f"{pk:.0f} {unit_name}" if pk >= 10 else f"{pk:.2f} {unit_name}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0, 1, 2.2, 3.2], ["learned\n(state)", "fixed ETF\n(state)", "learned\n(step peak)",
                                    "fixed ETF\n(step peak)"])
    ax.set_ylim(0, 1.12 * ax.get_ylim()[1])
    ax.set_ylabel(f"memory ({unit_name})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)


def plot_resnet(run) -> list[str]:
    """``fixed_etf.png`` of the resnet18 preset: training losses, memory account, savings."""
    import matplotlib.pyplot as plt
    cfg, s, r = run.config, run.summary, run.config.resnet
    colors = {"learned": "tab:blue", "fixed": "tab:green"}
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1, 1.3, 0.8]})
    for arm in ARMS:
        pts = [(num(q, "step"), num(q, "loss")) for q in run.history if q.get("arm") == arm]
        if pts:
            ax1.plot(*zip(*pts), "o-", ms=3, color=colors[arm], label=f"{arm} (last-3 mean "
                     f"{s[f'loss_{arm}']:.3g}, batch acc {s[f'batch_acc_{arm}']:.2f})")
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel("mini-batch cross-entropy (nats)")
    ax1.set_title(f"Training, same mini-batches ({int(s['batch'])} images, {cfg.train.optimizer} lr "
                  f"{cfg.train.lr:g})", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    _memory_panel(ax2, s, colors, 2 ** 20, "MiB", "buffers (BatchNorm stats, frozen ETF)")
    ax2.set_title(f"Training state (stacked) and measured step peak ({run.record.get('device', 'cpu')}, "
                  f"batch {int(s['batch'])})", fontsize=10)
    ax2.legend(fontsize=7, loc="upper left")
    keys = (("param_saving", "trainable\nscalars"), ("state_saving", "training\nstate"),
            ("peak_saving", "peak of\none step"), ("total_saving", "resident +\nstep peak"))
    vals = [100 * s[k] for k, _ in keys]
    ax3.bar(range(4), vals, 0.6, color=["0.4", "tab:purple", "tab:olive", "tab:cyan"], edgecolor="k")
    for i, v in enumerate(vals):
        ax3.text(i, v, f"{v:.1f}%", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax3.axhline(100 * s["published_saving"], color="k", ls="--", label="published: over 20 % (Zhu et al. 2021)")
    ax3.axhline(0, color="k", lw=0.8)
    ax3.set_xticks(range(4), [k[1] for k in keys], fontsize=8)
    ax3.set_ylabel("saving of the fixed arm, 1 − fixed/learned (%)")
    ax3.set_ylim(min(0.0, min(vals)) - 2, max(25.0, max(vals)) * 1.15)
    ax3.set_title(f"state saving {100 * s['state_saving']:.3g}% (exact count "
                  f"{100 * s['state_saving_theory']:.3g}%)", fontsize=10)
    ax3.legend(fontsize=8, loc="upper right")
    ax3.grid(axis="y", alpha=0.3)
    data = "synthetic CIFAR-shaped images" if s["synthetic"] else cfg.data.name
    fig.suptitle(f"Fixed simplex-ETF classifier at ResNet-18 scale — widths {','.join(map(str, r.widths))}, "
                 f"C = {int(s['num_classes'])}, fixed arm reduced to C by '{r.reduce}', {data} (3×32×32)",
                 fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "fixed_etf.png")
    return ["fixed_etf.png"]


def plot(run) -> list[str]:
    """``fixed_etf.png``: accuracies per arm and the memory account, from the run's files."""
    import matplotlib.pyplot as plt
    import numpy as np
    cfg, s = run.config, run.summary
    if cfg.preset == "resnet18":
        return plot_resnet(run)
    finals = _finals(run.history)
    width, depth = _shape(cfg)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.5]})
    colors = {"learned": "tab:blue", "fixed": "tab:green"}
    x = np.arange(2)
    for j, arm in enumerate(ARMS):
        for k, off in (("train", -0.18), ("test", 0.18)):
            vals = [f[k] for f in finals[arm]]
            m = sum(vals) / len(vals)
            ax1.bar(j + off, m, 0.34, color=colors[arm], alpha=1.0 if k == "test" else 0.45,
                    yerr=[[m - min(vals)], [max(vals) - m]], capsize=4,
                    label=f"{k} accuracy" if j == 0 else None, edgecolor="k")
            ax1.text(j + off, m + 0.003, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    lo = min(min(f[k] for f in finals[a] for k in ("train", "test")) for a in ARMS)
    ax1.set_ylim(max(0.0, lo - 0.1), 1.02)
    ax1.set_xticks(x, ["learned classifier", "fixed simplex ETF"])
    ax1.set_ylabel("accuracy (fraction correct)")
    gap, tol = s["test_acc_gap"], s["test_acc_gap_tol"]
    ax1.set_title(f"Accuracy (n_train = {int(s['n_train'])}, n_test = {int(s['n_test'])}; bars: mean,\n"
                  f"whiskers: min–max over {cfg.seeds} seeds); test gap {gap:+.3f}, tolerance "
                  f"±{tol:.3f}: {'agrees' if s['test_acc_gap_agrees'] else 'DISAGREES'}", fontsize=9)
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(axis="y", alpha=0.3)

    _memory_panel(ax2, s, colors, 1024, "KiB")
    ax2.set_title(f"Training state (stacked) and measured step peak ({run.record.get('device', 'cpu')})\n"
                  f"state saving {100 * s['state_saving']:.1f}% (theory "
                  f"{100 * s['state_saving_theory']:.1f}%), peak saving {100 * s['peak_saving']:.1f}%",
                  fontsize=10)
    act = cfg.model.get("activation", "relu") if cfg.model.name == "mlp" else "relu"
    fig.suptitle(f"Fixed simplex-ETF classifier vs learned — {cfg.data.name}, {cfg.model.name} ({act}) "
                 f"depth {depth}, width {width}, C = {int(s['num_classes'])}, {cfg.train.optimizer} + "
                 f"cross-entropy", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "fixed_etf.png")
    return ["fixed_etf.png"]


EXPERIMENT = Experiment(
    name="fixed_etf",
    description="Fixed simplex-ETF classifier vs learned on digits: test accuracy and training memory "
                "(Zhu et al.; docs/science.md §3.5); --set preset=resnet18: ResNet-18 memory (§5.6)",
    config=FixedETFConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="A classifier frozen to a simplex ETF (feature dim = C) reaches the same accuracy with "
              "less training memory",
        source="docs/science.md §3.5 (last part), §5.6 (preset resnet18); Zhu et al., A geometric analysis of neural "
               "collapse with unconstrained features (NeurIPS 2021)",
        regime="bounded",
        statistic="|test_acc_gap|",
        threshold=None,
        collapsed_below=True,
        theory=None,
        labels={"model.width": "hidden width (units)", "model.depth": "depth (weight matrices)",
                "train_per_class": "training images per class", "train.epochs": "SGD epochs",
                "test_acc_gap": "test accuracy, learned − fixed (fraction)",
                "state_saving": "training-state memory saved (fraction)"}),
    large={"data": "mnist_subset", "train_per_class": 400, "model.width": 2048, "train.epochs": 60,
           "seeds": 3, "train.batch_size": 128},
    small={"train.epochs": 6, "seeds": 1, "model.width": 64, "train_per_class": 30,
           "resnet.batch": 8, "resnet.steps": 2, "resnet.per_class": 2},
)
