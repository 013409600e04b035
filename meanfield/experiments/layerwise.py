"""Collapse layer by layer: NC1 at every layer and the weight / class-mean alignment (docs/science.md §5.3).

Rangamani, Lindegaard, Galanti & Poggio (ICML 2023) report, for deep classifiers trained on real
data, that the within-class covariance shrinks relative to the between-class covariance as one
moves up the layers, and that in the top layers the span of the class means aligns with the top
singular directions of the layer's weight matrix. An empirical claim: nothing here has a closed
form and no ``_agrees`` key is written.

Three nets on the same samples (``data``, standardised globally, drawn with seed 0):

- ``deep``: ``model`` (bias-free ReLU ``deep`` or ``mlp``; ``model.depth`` = L weight matrices)
  trained by ``train`` (SGD, cross-entropy, weight decay), measured at initialisation and trained;
- ``two_layer``: the finite two-layer net ``two_layer`` (biases) trained by the same ``train``;
- ``meanfield``: the two-layer net as a measure (``meanfield``, ``meanfield.m`` particles)
  following the Wasserstein flow ``flow`` (same loss; ``flow.lam`` its weight decay).

**Per layer** ``l = 1..L`` (layer 0 is the input ``h_0 = x``; ``h_L`` are the logits):
``nc1`` = Tr(Sigma_W Sigma_B^+)/C of the layer's output ``h_l`` (docs/science.md §1,
:func:`meanfield.metrics.layerwise_collapse`) and the **alignment score**

.. math::

    A_l = \\frac{\\|V_l^\\top Q_{l-1}\\|_F^2}{\\min(k, r)} \\in [0, 1],

``V_l`` (q x k) the top ``k = min(C-1, rank W_l)`` right singular vectors of ``W_l`` (out x q) and
``Q_{l-1}`` (q x r) an orthonormal basis of the span of the centred class means
``mu_c - mu_G`` of the layer's input ``h_{l-1}`` (``r`` their numerical rank, ``<= C-1``):
the mean squared cosine of the principal angles between the two subspaces; 1 when the smaller
lies in the larger. Two random subspaces of R^q give ``E A = max(k, r)/q`` (``align_chance``).
Mean-field hidden layer: ``W_1 = w`` (m x d), input x; output: ``W_2 = a^T`` (k x m) on the
features ``sigma(w.x + b)`` (scale-free, the ``1/m`` does not matter).

Summary: ``nc1_layer{l}``, ``align_layer{l}``, ``align_chance_layer{l}`` (trained deep net),
``nc1_init_layer{l}``, ``align_init_layer{l}`` (at initialisation), ``nc1_ratio`` (NC1 of the
penultimate layer over NC1 of the input), ``nc1_decreasing`` (fraction of the steps l-1 -> l,
l = 1..L-1, where NC1 drops), ``accuracy``; for ``two_layer`` and ``meanfield``: ``nc1_hidden_*``,
``align_w1_*``, ``align_w2_*``, ``accuracy_*``. History: one row per (net, stage, layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..deep.train import TrainConfig
from ..flow import FlowConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, flow_for, parse_dtype
from .weight_decay import checkpointer, load_data, num

DEEP_MODELS = ("deep", "mlp")
NETS = ("deep", "two_layer", "meanfield")


@dataclass(frozen=True)
class LayerwiseConfig:
    """Parameters of the layer-wise collapse experiment.

    Attributes:
        data: data set (digits, mnist_subset; mnist/cifar10 with data.folder), data.per_class images per class.
        model: the deep net: deep (bias-free ReLU) or mlp; model.depth = L weight matrices, model.width.
        train: SGD of the finite nets (deep and two_layer): loss, lr, epochs, train.weight_decay.
        two_layer: the finite two-layer net (two_layer, model.width hidden units).
        meanfield: the mean-field two-layer net (meanfield, meanfield.m particles, meanfield.activation).
        flow: the Wasserstein flow of the mean-field net (flow.loss, flow.lam, flow.dt, flow.t_end).
        shallow: also train and measure the two two-layer nets.
        dtype: float32 or float64.
    """

    data: DataSpec = DataSpec("digits", {"per_class": 100})
    model: ModelSpec = ModelSpec("deep", {"width": 128, "depth": 6})
    train: TrainConfig = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=150,
                                     batch_size=100, weight_decay=5e-4, loss="cross_entropy",
                                     log_every=50)
    two_layer: ModelSpec = ModelSpec("two_layer", {"width": 256})
    meanfield: ModelSpec = ModelSpec("meanfield", {"m": 256, "activation": "relu"})
    flow: FlowConfig = FlowConfig(loss="cross_entropy", lam=1e-3, integrator="euler", dt=0.5,
                                  t_end=40.0, backend="dense")
    shallow: bool = True
    dtype: str = "float32"


def class_mean_basis(H: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                     weights: Optional[torch.Tensor] = None, rtol: float = 1e-6) -> torch.Tensor:
    """(q, r) orthonormal basis of the span of the centred class means of ``H`` (n, q).

    Means are mass-weighted, centred at the mean of the class means (docs/science.md §1); ``r`` is
    their numerical rank (singular values above ``rtol`` times the largest), at most C - 1.
    """
    from ..metrics.core import labels_weights
    H = torch.as_tensor(H)
    if H.dim() != 2 or not torch.isfinite(H).all():
        raise ValueError(f"features must be a finite (n, q) matrix, got shape {tuple(H.shape)}"
                         f"{'' if H.dim() != 2 else ' with NaN/inf'}; flatten images and check the net")
    y, p, C, P = labels_weights(y, weights, H.shape[0], num_classes, dtype=H.dtype, device=H.device)
    R = torch.zeros(H.shape[0], C, dtype=H.dtype, device=H.device)
    R[torch.arange(H.shape[0], device=H.device), y] = p / P[y]
    M = R.T @ H
    M = M - M.mean(0, keepdim=True)
    U, S, _ = torch.linalg.svd(M.T, full_matrices=False)
    r = int((S > rtol * S.max()).sum()) if S.numel() and S.max() > 0 else 0
    return U[:, :r]


def subspace_alignment(W: torch.Tensor, H_in: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                       weights: Optional[torch.Tensor] = None, rtol: float = 1e-6) -> tuple[float, float]:
    """Alignment ``A`` of the top-(C-1) right singular subspace of W with the class-mean span of
    its input (module docstring), and its chance level ``max(k, r)/q``.

    Args:
        W ((out, q) Tensor): the layer's weight (x -> W x).
        H_in ((n, q) Tensor): the layer's input on the samples.
        y ((n,) int Tensor), num_classes, weights ((n,) Tensor or None): labels and masses.

    Returns:
        ``(A, chance)``; ``(nan, nan)`` when W is zero or the class means coincide.

    Raises:
        ValueError: shapes that do not match, NaN/inf.
    """
    W = torch.as_tensor(W).detach()
    H_in = torch.as_tensor(H_in).detach().to(W.dtype)
    if W.dim() != 2 or H_in.dim() != 2 or W.shape[1] != H_in.shape[1]:
        raise ValueError(f"W (out, q) must act on the input features (n, q); got W {tuple(W.shape)}, "
                         f"inputs {tuple(H_in.shape)}")
    if not torch.isfinite(W).all():
        raise ValueError("W contains NaN/inf; check the training")
    Q = class_mean_basis(H_in, y, num_classes, weights=weights, rtol=rtol)
    _, S, Vh = torch.linalg.svd(W, full_matrices=False)
    rank_w = int((S > rtol * S.max()).sum()) if S.numel() and S.max() > 0 else 0
    k, r, q = min(int(num_classes) - 1, rank_w), Q.shape[1], W.shape[1]
    if k == 0 or r == 0:
        return float("nan"), float("nan")
    V = Vh[:k].T
    return float((V.T @ Q).pow(2).sum() / min(k, r)), max(k, r) / q


def _table(net_rows, weights_inputs, s, *, net: str, stage: str) -> list[dict]:
    """History rows: layer 0 (input) and every layer l with its nc1, alignment and chance."""
    rows = [{"net": net, "stage": stage, "layer": 0, "name": "input", "dim": s.d,
             "nc1": _nc1_of(s.X.flatten(1), s), "align": float("nan"), "align_chance": float("nan")}]
    for l, (r, (W, H_in)) in enumerate(zip(net_rows, weights_inputs), start=1):
        a, ch = subspace_alignment(W, H_in, s.y, s.num_classes, weights=s.p)
        nc1 = r.metrics.nc1
        rows.append({"net": net, "stage": stage, "layer": l, "name": r.name, "dim": r.dim,
                     "nc1": float("nan") if nc1 is None else float(nc1), "align": a, "align_chance": ch})
    return rows


def _nc1_of(H, s) -> float:
    from ..metrics import neural_collapse
    v = neural_collapse(H, s.y, weights=s.p, num_classes=s.num_classes, strict=False).nc1
    return float("nan") if v is None else float(v)


def measure_net(net, s, *, net_name: str, stage: str) -> list[dict]:
    """The rows of a finite MLP (deep, mlp, two_layer) on samples ``s``."""
    from ..metrics import layerwise_collapse
    from ..metrics.layerwise import layer_outputs
    outs = layer_outputs(net, s.X)
    inputs = [s.X.flatten(1)] + [o.H for o in outs[:-1]]
    return _table(layerwise_collapse(net, s).rows, list(zip([o.weight for o in outs], inputs)), s,
                  net=net_name, stage=stage)


def measure_particles(P, s, *, stage: str) -> list[dict]:
    """The rows of a mean-field net (system 0): hidden layer ``w`` on x, output ``a^T`` on sigma(w.x + b)."""
    from ..metrics import layerwise_collapse
    H = P.features(s.X)[0]
    pairs = [(P.w[0], s.X), (P.a[0].T, H)]
    return _table(layerwise_collapse(P, s, backend="dense").rows, pairs, s, net="meanfield", stage=stage)


def _accuracy(f: torch.Tensor, s) -> float:
    return float((s.p * (f.argmax(1) == s.y).to(s.p.dtype)).sum() / s.p.sum())


def run(cfg: LayerwiseConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.train import train
    from ..flow import simulate
    from ..models import build_model
    if cfg.model.name not in DEEP_MODELS:
        raise ValueError(f"layerwise measures MLPs: model must be one of {', '.join(DEEP_MODELS)}, got "
                         f"{cfg.model.name!r}")
    if cfg.meanfield.name != "meanfield" or cfg.two_layer.name not in ("two_layer", "mlp"):
        raise ValueError(f"meanfield must be the meanfield model and two_layer two_layer (or mlp); got "
                         f"{cfg.meanfield.name!r}, {cfg.two_layer.name!r}")
    if cfg.train.epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    dtype = parse_dtype(cfg.dtype)
    s = load_data(cfg.data, standardise="global").sample(seed=0, dtype=dtype, device=ctx.device)
    s = replace(s, X=s.X.flatten(1))
    C = s.num_classes
    tc = replace(cfg.train, seed=cfg.train.seed + ctx.seed)
    net = build_model(cfg.model, s.d, C, seed=ctx.seed, dtype=dtype, device=ctx.device)
    history = measure_net(net, s, net_name="deep", stage="init")
    res = train(net, s, tc, progress=ctx.progress, checkpoint=checkpointer(ctx, "checkpoint-deep.pt"))
    history += measure_net(net, s, net_name="deep", stage="trained")
    with torch.no_grad():
        summary: dict = {"accuracy": _accuracy(net(s.X), s), "loss": res.final["loss"]}
    for r in history:
        tag = "" if r["stage"] == "trained" else "init_"
        summary[f"nc1_{tag}layer{r['layer']}"] = r["nc1"]
        if r["layer"] > 0:
            summary[f"align_{tag}layer{r['layer']}"] = r["align"]
            if not tag:
                summary[f"align_chance_layer{r['layer']}"] = r["align_chance"]
    L = max(r["layer"] for r in history)
    nc = [summary[f"nc1_layer{l}"] for l in range(L)]
    summary["nc1_ratio"] = nc[-1] / nc[0] if nc[0] > 0 else float("nan")
    drops = [b < a for a, b in zip(nc[:-1], nc[1:]) if math.isfinite(a) and math.isfinite(b)]
    summary["nc1_decreasing"] = sum(drops) / len(drops) if drops else float("nan")
    if cfg.shallow:
        two = build_model(cfg.two_layer, s.d, C, seed=ctx.seed, dtype=dtype, device=ctx.device)
        train(two, s, tc, progress=ctx.progress, checkpoint=checkpointer(ctx, "checkpoint-two_layer.pt"))
        rows = measure_net(two, s, net_name="two_layer", stage="trained")
        with torch.no_grad():
            summary["accuracy_two_layer"] = _accuracy(two(s.X), s)
        P0 = build_model(cfg.meanfield, s.d, C, seed=ctx.seed, dtype=dtype, device=ctx.device)
        fr = simulate(P0, s, flow_for(cfg.flow, ctx), seed=ctx.seed, progress=ctx.progress,
                      checkpoint=ctx.checkpoint("checkpoint-meanfield.pt"),
                      checkpoint_every=ctx.checkpoint_every)
        rows += measure_particles(fr.particles, s, stage="trained")
        summary["accuracy_meanfield"] = _accuracy(fr.particles.predict(s.X, backend="dense")[0], s)
        for r in rows:
            if r["layer"] == 1:
                summary[f"nc1_hidden_{r['net']}"] = r["nc1"]
            if r["layer"] > 0:
                summary[f"align_w{r['layer']}_{r['net']}"] = r["align"]
        history += rows
    summary.update({"depth": L, "n": s.n, "num_classes": C, "epochs": res.epochs})
    return ExperimentResult(summary, history)


def _rows(history, net, stage):
    return sorted([r for r in history if r.get("net") == net and r.get("stage") == stage],
                  key=lambda r: num(r, "layer"))


def plot(run) -> list[str]:
    """``layerwise.png``: NC1 and alignment per layer of the deep net (init and trained), and the
    two-layer nets (finite and mean-field) side by side at their hidden layer."""
    import matplotlib.pyplot as plt
    import numpy as np
    cfg, s, hist = run.config, run.summary, run.history
    fig, axes = plt.subplots(1, 3 if cfg.shallow else 2, figsize=(16 if cfg.shallow else 11, 4.8))
    ax1, ax2 = axes[0], axes[1]
    styles = {"init": dict(color="0.55", ls="--", marker="s", label="deep net at initialisation"),
              "trained": dict(color="tab:blue", ls="-", marker="o", label="deep net trained")}
    for stage, st in styles.items():
        rows = _rows(hist, "deep", stage)
        pts = [(num(r, "layer"), num(r, "nc1")) for r in rows if num(r, "nc1") is not None]
        ax1.plot(*zip(*pts), ms=5, **st)
        pts = [(num(r, "layer"), num(r, "align")) for r in rows if num(r, "align") is not None]
        ax2.plot(*zip(*pts), ms=5, **st)
    rows = _rows(hist, "deep", "trained")
    names = [str(r.get("name")) for r in rows]
    L = len(rows) - 1
    ch = [(num(r, "layer"), num(r, "align_chance")) for r in rows if num(r, "align_chance") is not None]
    ax2.plot(*zip(*ch), color="k", ls=":", marker="x", label="chance: two random subspaces, max(k, r)/q")
    for ax in (ax1, ax2):
        ax.set_xticks(range(L + 1), [f"{i}\n{n}" for i, n in enumerate(names)], fontsize=7)
        ax.set_xlabel("layer l (0 = input, L = logits)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("NC1 = Tr(Σ_W Σ_B⁺)/C of h_l (log)")
    ax1.set_title(f"NC1 per layer: penultimate/input = {s['nc1_ratio']:.3g}, drops at "
                  f"{100 * s['nc1_decreasing']:.0f}% of the steps", fontsize=10)
    ax2.set_ylim(-0.02, 1.05)
    ax2.set_ylabel("alignment A_l of top-(C−1) right sing. subspace\nof W_l with span of centred means of h_{l−1}")
    ax2.set_title("weight / class-mean alignment (1 = contained)", fontsize=10)
    if cfg.shallow:
        ax3 = axes[2]
        keys = [("nc1_layer0", None, "NC1\ninput x"), ("nc1_hidden_{}", None, "NC1\nhidden h"),
                ("align_w1_{}", None, "A₁: W₁ vs\nmeans of x"), ("align_w2_{}", None, "A₂: W₂ vs\nmeans of h")]
        x = np.arange(len(keys))
        for j, (net, col, lab) in enumerate((("two_layer", "tab:orange", "finite two-layer (SGD)"),
                                            ("meanfield", "tab:green", "mean-field (Wasserstein flow)"))):
            vals = [s[k.format(net)] for k, _, _ in keys]
            ax3.bar(x + (j - 0.5) * 0.38, vals, 0.38, color=col, edgecolor="k",
                    label=f"{lab}, acc {s[f'accuracy_{net}']:.3f}")
            for xi, v in zip(x + (j - 0.5) * 0.38, vals):
                ax3.text(xi, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        ax3.set_xticks(x, [k[2] for k in keys], fontsize=8)
        ax3.set_ylabel("NC1 (dimensionless) / alignment A (0–1)")
        ax3.set_title("two-layer nets at their hidden layer", fontsize=10)
        ax3.legend(fontsize=7)
        ax3.grid(axis="y", alpha=0.3)
    mp, tr = cfg.model.kwargs, cfg.train
    fig.suptitle(f"Collapse layer by layer — {cfg.data.name}, n = {int(s['n'])}, C = {int(s['num_classes'])}: "
                 f"{cfg.model.name} depth L = {int(s['depth'])}, width {mp.get('width')}, {tr.optimizer} "
                 f"{tr.loss}, λ = {tr.weight_decay:g}, {int(s['epochs'])} epochs, train acc {s['accuracy']:.3f}",
                 fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "layerwise.png")
    return ["layerwise.png"]


EXPERIMENT = Experiment(
    name="layerwise",
    description="NC1 and weight / class-mean alignment at every layer of a trained deep net, and of "
                "finite and mean-field two-layer nets (Rangamani et al. 2023; docs/science.md §5.3)",
    config=LayerwiseConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="In a trained deep classifier NC1 decreases with depth and, in the top layers, the "
              "top-(C-1) right singular subspace of W_l aligns with the span of the centred class "
              "means of its input (empirical: reported, not claimed)",
        source="docs/science.md §5.3; Rangamani, Lindegaard, Galanti & Poggio, Feature learning in "
               "deep classifiers through intermediate neural collapse (ICML 2023)",
        regime="bounded",
        statistic="nc1_ratio",
        threshold=None,
        collapsed_below=True,
        theory=None,
        labels={"model.depth": "depth L (weight matrices)", "model.width": "hidden width (units)",
                "train.weight_decay": "weight decay λ (every layer)", "train.epochs": "SGD epochs",
                "nc1_ratio": "NC1 penultimate / NC1 input",
                "nc1_decreasing": "fraction of layers where NC1 drops"}),
    large={"data": "mnist_subset", "data.per_class": 300, "model.width": 256, "model.depth": 8,
           "train.epochs": 200, "meanfield.m": 1000, "flow.t_end": 100.0},
    small={"data.per_class": 20, "model.width": 32, "model.depth": 4, "train.epochs": 10,
           "two_layer.width": 32, "meanfield.m": 32, "flow.t_end": 2.0},
)
