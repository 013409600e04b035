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

Code: this module (configuration, the MLP arms, the declaration),
:mod:`~meanfield.experiments.fixed_etf_resnet` (the resnet18 preset) and
:mod:`~meanfield.experiments.fixed_etf_plot` (the figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..data.base import Samples
from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement
from .weight_decay import checkpointer, load_data

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


def width_depth(cfg: FixedETFConfig) -> tuple[int, int]:
    """(model.width, model.depth) of the configuration, the model's defaults filled in."""
    mp = {**cfg.model.defaults(), **cfg.model.kwargs}
    return int(mp["width"]), int(mp["depth"])


def _build(cfg: FixedETFConfig, arm: str, d: int, C: int, seed: int, dtype, device):
    from ..deep.fixed_etf import fix_classifier
    from ..models import build_model
    width, depth = width_depth(cfg)
    widths = [width] * (depth - 1) if arm == "learned" else [width] * (depth - 2) + [C]
    net = build_model(cfg.model, d, C, seed=seed, dtype=dtype, device=device, width=widths)
    return fix_classifier(net) if arm == "fixed" else net


def run(cfg: FixedETFConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.memory import measure_memory
    from ..deep.train import evaluate, train

    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; valid: {', '.join(PRESETS)}")
    if cfg.preset == "resnet18":
        from .fixed_etf_resnet import run_resnet
        return run_resnet(cfg, ctx)
    if cfg.model.name not in MODELS:
        raise ValueError(f"fixed_etf compares MLPs: model must be one of {', '.join(MODELS)}, got "
                         f"{cfg.model.name!r}")
    width, depth = width_depth(cfg)
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


def plot(run) -> list[str]:
    """``fixed_etf.png``: accuracies per arm and the memory account, from the run's files
    (:mod:`~meanfield.experiments.fixed_etf_plot`)."""
    from .fixed_etf_plot import plot_mlp, plot_resnet
    return plot_resnet(run) if run.config.preset == "resnet18" else plot_mlp(run)


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
