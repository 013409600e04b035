"""Minority collapse of trained two-layer nets on an imbalanced Gaussian mixture (docs/science.md §6.1).

A preset of :mod:`meanfield.experiments.collapse` (same machinery, same columns): K = k_a + k_b
isotropic Gaussian classes in R^K, class k centred at ``sep * e_k`` with std ``std``; class
masses ``ratio`` (majority) and 1 (minority), normalised (the ``weights`` of the registered
``gaussian_mixture``: ``n`` samples stratified by mass, each carrying its mass, so the risk is the
imbalanced population risk). Cross-entropy (``flow.loss``) plus weight decay ``flow.lam`` on every
parameter, models ``meanfield`` (particles, Wasserstein flow to ``flow.t_end``) or ``two_layer``
(finite, biases, full-batch Adam for ``train.epochs``).

Statistic: ``max_cos``, the largest cosine between two minority classifiers: the last layer's
rows (``two_layer``: ``classifier.weight``) or, mean-field, the outer-weight columns
``a[:, b]`` over the particles (the mean-field inner product of the readouts). No theory is
claimed: the UFM threshold of ``imbalance_ufm`` assumes free features and the global optimum; the
map says where a fixed training budget reaches minority collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from ..deep.train import TrainConfig
from ..flow import FlowConfig
from ..study.spec import DataSpec, ModelSpec
from . import collapse
from .imbalance_ufm import LABELS, THRESHOLD
from .registry import Experiment, RunContext, Science

BATCH_KEYS = ("flow.lam",)


@dataclass(frozen=True)
class ImbalanceMixtureConfig:
    """Parameters (a preset of ``collapse`` on an imbalanced Gaussian mixture).

    Attributes:
        k_a: K_A, majority classes.
        k_b: K_B, minority classes (>= 2).
        ratio: mass of a majority class over that of a minority class (> 0).
        sep: class k is centred at sep * e_k in R^K.
        std: the classes' standard deviation (> 0).
        n: samples, stratified by class mass (every class gets at least one).
        model: meanfield (model.m particles) or two_layer (model.width); model.activation.
        flow: the mean-field flow (dt, t_end); flow.lam (weight decay) and flow.loss apply to every model.
        train: full-batch Adam of the finite nets (train.epochs, train.lr).
        dtype: float64 or float32.
    """

    k_a: int = 2
    k_b: int = 2
    ratio: float = 10.0
    sep: float = 3.0
    std: float = 0.5
    n: int = 200
    model: ModelSpec = ModelSpec("meanfield", {"m": 100, "activation": "relu"})
    flow: FlowConfig = FlowConfig(loss="cross_entropy", lam=1e-2, integrator="heun", dt=0.05, t_end=100.0)
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-2, epochs=1000, loss="cross_entropy")
    dtype: str = "float64"


def to_collapse(cfg: ImbalanceMixtureConfig) -> "collapse.CollapseConfig":
    """The ``collapse`` config of this preset. Raises ValueError on bad sizes or masses."""
    from ..theory.imbalance import group_counts
    group_counts(cfg.k_a, 1, cfg.k_b, 1)
    if not (isinstance(cfg.ratio, (int, float)) and math.isfinite(cfg.ratio) and cfg.ratio > 0):
        raise ValueError(f"ratio must be finite and > 0, got {cfg.ratio!r}")
    for k in ("sep", "std"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be finite and > 0, got {v!r}")
    if cfg.model.name not in ("meanfield", "two_layer"):
        raise ValueError(f"model must be meanfield or two_layer, got {cfg.model.name!r}")
    K = cfg.k_a + cfg.k_b
    if cfg.n < K:
        raise ValueError(f"n = {cfg.n} samples cannot cover {K} classes; raise n")
    means = tuple(tuple(cfg.sep * float(i == k) for i in range(K)) for k in range(K))
    weights = tuple([float(cfg.ratio)] * cfg.k_a + [1.0] * cfg.k_b)
    data = DataSpec("gaussian_mixture", {"means": means, "stds": float(cfg.std), "weights": weights})
    return collapse.CollapseConfig(data=data, model=cfg.model, flow=cfg.flow,
                                   train=replace(cfg.train, loss=cfg.flow.loss), n=cfg.n,
                                   regime="bounded", bias_input=False, dtype=cfg.dtype)


def classifier_rows(model):
    """(K, p) numpy: the last layer's rows (two_layer) or the outer-weight columns (meanfield)."""
    if hasattr(model, "classifier"):
        return model.classifier.weight.detach().cpu().double().numpy()
    return model.a[0].detach().cpu().double().numpy().T


def run_batch(cfgs: list, seeds: list, ctx: RunContext) -> list:
    """Several weight decays (and seeds) as one batched flow (``meanfield``), else a loop."""
    from ..theory.imbalance import minority_max_cos, minority_zero
    from ..deep.ufm_imbalanced import one_thread
    ccs = [to_collapse(c) for c in cfgs]
    out = []
    with one_thread():  # small problems: torch's thread pool only spins
        res = collapse.run_batch_with(ccs, seeds, ctx, BATCH_KEYS)
    for c, r in zip(cfgs, res):
        W = classifier_rows(r.extra["model"])
        s = dict(r.summary)
        s.update(max_cos=minority_max_cos(W, c.k_a), normW=float((W ** 2).sum() ** 0.5),
                 minority_zero=minority_zero(W, c.k_a))
        out.append(replace(r, summary=s))
    return out


def plot(run) -> list[str]:
    """``imbalance_mixture.png``: the risk along training and the final largest minority cosine."""
    import matplotlib.pyplot as plt
    c, s = run.config, run.summary
    rows = [r for r in run.history if isinstance(r.get("risk"), float) and float(r.get("t", 0)) > 0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if rows:
        ax.loglog([float(r["t"]) for r in rows], [float(r["risk"]) for r in rows], "k.-")
    ax.set_xlabel("flow time t" if c.model.name == "meanfield" else "epoch")
    ax.set_ylabel("risk (cross-entropy + weight decay)")
    ax.set_title(f"{c.model.name} on a Gaussian mixture, mass ratio {c.ratio:g}, λ = {c.flow.lam:g}\n"
                 f"largest minority cosine at the end {s.get('max_cos', float('nan')):.4f} "
                 f"(collapsed if > {THRESHOLD:g})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    run.savefig(fig, "imbalance_mixture.png")
    return ["imbalance_mixture.png"]


EXPERIMENT = Experiment(
    name="imbalance_mixture",
    description="mean-field or finite two-layer net on a Gaussian mixture with K_A heavy and K_B "
                "light classes (mass ratio), CE + weight decay: the largest minority-classifier "
                "cosine after a fixed budget (a preset of collapse; docs/science.md §6.1)",
    config=ImbalanceMixtureConfig,
    run_batch=run_batch,
    batch_keys=BATCH_KEYS,
    plot=plot,
    science=Science(
        claim="trained two-layer nets on imbalanced mixtures show minority collapse where the ratio "
              "and the weight decay are large (measured, no theory claimed)",
        source="docs/science.md §6.1 (Fang et al. 2021 observe it in trained deep nets)",
        regime="bounded",
        statistic="max_cos",
        threshold=THRESHOLD,
        collapsed_below=False,
        theory=None,
        labels={**LABELS, "ratio": "class-mass ratio (majority / minority)",
                "flow.lam": "λ (weight decay on every parameter)"}),
    large={"model.m": 1000, "n": 2000, "flow.t_end": 1000.0},
    small={"model.m": 40, "n": 60, "flow.t_end": 10.0, "train.epochs": 100},
)
