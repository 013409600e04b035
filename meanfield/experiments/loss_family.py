"""Cross-entropy, label smoothing, focal loss and MSE reach the same simplex ETF (docs/science.md §5.2).

Zhou, You, Li, Liu, Liu, Qu and Zhu, "Are all losses created equal? A neural collapse perspective"
(NeurIPS 2022): in the unconstrained features model (UFM) the only global minimisers of CE, label
smoothing (LS) and focal loss (FL) are neural-collapse solutions, and so are those of MSE. Two parts:

**UFM.** K classes, n samples per class, feature dimension d = ``feature_dim`` (> K), the UFM of
:func:`meanfield.deep.ufm.fit_ufm` (L-BFGS, float64) for each loss in ``losses``; CE, LS and FL
with a bias penalised by ``lam_b`` (the paper's objective), MSE with an **unpenalised** bias
(without one the MSE optimum is an orthogonal frame, §3.5). ``starts`` random Gaussian starts per
loss, **all kept** (no selection). A start "reaches a simplex ETF" when nc1, nc2_etf_w, nc3 and
|gram_ortho_w - sqrt(2 - 2 sqrt((K-1)/K))| (the uncentred Gram of W is a simplex's, not an
orthogonal frame's) are all below ``etf_tol``; ``frac_etf_<loss>`` is the fraction of starts that do.

Theory on the ETF family (W W^T = a K/(K-1) (I - 11^T/K), hbar_k = sqrt(lam_W/(n lam_H)) w_k,
b = 0): the logit gap t = z_y - z_j of every sample sets the objective

.. math::

    g(t) = \\ell(t) + (K - 1)\\,\\mu\\, t, \\qquad \\mu = \\sqrt{n\\lambda_W\\lambda_H}, \\qquad
    \\|W\\|_F^2 = (K - 1)\\, t\\, \\sqrt{n\\lambda_H/\\lambda_W},

with l(t) the loss of the logits (t(K-1)/K, -t/K, ...). Its minimiser t* (a 1-D problem, solved on
a grid and refined; CE: t* = log(1/mu - (K-1)), LS: softmax probability q_y - (K-1) mu of the true
class) gives ``normW_<loss>_theory`` and ``value_<loss>_theory``; MSE with a free bias uses the
closed form of :func:`meanfield.theory.ufm.mse_ufm`. The trivial optimum t* = 0 (W = H = 0) takes
over beyond ``kmu_threshold_<loss>`` (K mu = 1 for CE and MSE, 1 - alpha for LS, larger than 1
for FL: ((K-1)/K)^gamma (1 + gamma log K/(K-1)) where g'(0) changes sign; found numerically as the
largest K mu with min g < g(0)); the run refuses a point within ``band`` of it.

Tolerances: ``normW`` (the start farthest from theory) ``norm_tol`` = 1e-4 absolute, the value
``1e-7`` relative (the optimiser stops at gradient norm ``tol_grad`` = 1e-8, which puts the
minimiser within ~1e-6 away from the thresholds, §3.5; L-BFGS stalls near 2e-9 in float64); ``frac_etf`` is claimed equal to 1 (tolerance 0) only for
CE, LS and MSE, whose UFM landscapes are proved benign (every critical point other than the
global minimisers is a strict saddle: Zhu et al. 2021, Zhou et al. 2022 for LS; §5.2); for FL the
paper proves this only near the optimum, so its fraction is reported, not claimed.

**Deep nets.** One network per loss (same initialisation and batch order) on ``data``
(``train_per_class`` training images per class, the rest as test set): test accuracy with its
Wilson 95% interval and, for every pair, the 95% interval of the paired accuracy difference
(normal approximation on the per-image differences). ``acc_diff`` = the largest |endpoint| of
these intervals; its ``_agrees`` (|every difference| within ``acc_tol`` = 2 points at 95%) is
written only when the test set has at least ``min_test`` = 1000 images.

Code: :mod:`~meanfield.experiments.loss_family_ufm` (the theory and the UFM starts),
:mod:`~meanfield.experiments.loss_family_deep` (the deep nets and the intervals),
:mod:`~meanfield.experiments.loss_family_plot` (the figure); this module holds the configuration,
``run`` and the declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .loss_family_deep import Z95, deep_loss_name, deep_part, paired_interval, wilson
from .loss_family_plot import plot
from .loss_family_ufm import CRITERIA, LOSSES, PROVED, SHORT, etf_optimum, loss_of_gap, ufm_part
from .registry import Experiment, ExperimentResult, RunContext, Science

__all__ = ["EXPERIMENT", "LossFamilyConfig", "run", "plot", "etf_optimum", "loss_of_gap",
           "deep_loss_name", "wilson", "paired_interval", "LOSSES", "SHORT", "PROVED", "CRITERIA",
           "Z95"]


@dataclass(frozen=True)
class LossFamilyConfig:
    """Parameters of loss_family.

    Attributes:
        losses: the losses compared (cross_entropy, label_smoothing, focal, mse), comma-separated.
        smoothing: alpha of label smoothing, in [0, 1).
        focal_gamma: gamma of the focal loss, >= 0.
        num_classes: K, classes of the UFM.
        per_class: n, UFM samples per class.
        feature_dim: d, UFM feature dimension (> K by default, as the landscape theorems assume).
        lam_w: UFM weight decay of W.
        lam_h: UFM weight decay of H (summed over samples).
        lam_b: UFM weight decay of the bias for CE, LS, FL (MSE: unpenalised bias).
        starts: random starts per loss, all kept.
        init_scale: standard deviation of the Gaussian starts.
        tol_grad: optimiser stop: gradient norm.
        max_iter: optimiser stop: iterations.
        etf_tol: a start reaches a simplex ETF when nc1, nc2_etf_w, nc3, |gram_ortho_w - ETF| are below this.
        norm_tol: tolerance of |W| against the theory (absolute).
        band: refuse K mu within this relative distance of a loss's collapse-to-zero threshold.
        deep: also train one deep network per loss (False: UFM only).
        data: data set of the deep part (digits, mnist_subset; mnist with data.folder).
        train_per_class: training images per class; the rest is the test set.
        model: the deep network (mlp: model.width, model.depth).
        train: training of every deep network (train.loss is set per arm).
        mse_loss_scale: train.loss_scale of the MSE arm (1: (1/2)|f - e_y|^2 per sample; None: 1/C).
        acc_tol: the accuracy differences claimed to lie within +-acc_tol (fraction).
        min_test: no acc_diff_agrees below this many test images.
    """

    losses: tuple[str, ...] = LOSSES
    smoothing: float = 0.1
    focal_gamma: float = 2.0
    num_classes: int = 4
    per_class: int = 5
    feature_dim: int = 5
    lam_w: float = 5e-3
    lam_h: float = 5e-3
    lam_b: float = 5e-3
    starts: int = 10
    init_scale: float = 1.0
    tol_grad: float = 1e-8
    max_iter: int = 20_000
    etf_tol: float = 1e-4
    norm_tol: float = 1e-4
    band: float = 0.1
    deep: bool = True
    data: DataSpec = DataSpec("digits")
    train_per_class: int = 50
    model: ModelSpec = ModelSpec("mlp", {"width": 256, "depth": 3})
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-3, epochs=30, batch_size=64,
                                     weight_decay=5e-4, loss="cross_entropy", log_every=5)
    mse_loss_scale: Optional[float] = 1.0
    acc_tol: float = 0.02
    min_test: int = 1000


def _check(cfg: LossFamilyConfig) -> None:
    bad = [l for l in cfg.losses if l not in LOSSES]
    if bad or not cfg.losses or len(set(cfg.losses)) != len(cfg.losses):
        raise ValueError(f"losses must be distinct names among {', '.join(LOSSES)}; got "
                         f"{cfg.losses!r}")
    K = cfg.num_classes
    if K < 2 or cfg.per_class < 1 or cfg.feature_dim < K - 1 or cfg.starts < 1:
        raise ValueError(f"need num_classes >= 2, per_class >= 1, feature_dim >= num_classes - 1, "
                         f"starts >= 1; got {K}, {cfg.per_class}, {cfg.feature_dim}, {cfg.starts}")
    for k in ("lam_w", "lam_h", "lam_b", "etf_tol", "norm_tol", "acc_tol"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v!r}")
    if not (math.isfinite(cfg.smoothing) and 0 <= cfg.smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1), got {cfg.smoothing!r}")
    if not (math.isfinite(cfg.focal_gamma) and cfg.focal_gamma >= 0):
        raise ValueError(f"focal_gamma must be finite and >= 0, got {cfg.focal_gamma!r}")


def run(cfg: LossFamilyConfig, ctx: RunContext) -> ExperimentResult:
    from ..threads import one_thread_on_cpu
    _check(cfg)
    summary: dict = {}
    # CPU: one torch thread; these problems are small, and two threads spin-wait on a busy machine
    with one_thread_on_cpu(ctx.device):
        rows = ufm_part(cfg, ctx, summary)
        if cfg.deep:
            rows += deep_part(cfg, ctx, summary)
    return ExperimentResult(summary, rows)


EXPERIMENT = Experiment(
    name="loss_family",
    description="CE, label smoothing, focal loss, MSE (free bias): every random UFM start reaches a "
                "simplex ETF; deep nets' test accuracies with intervals (docs/science.md §5.2)",
    config=LossFamilyConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="Below its collapse-to-zero threshold, every UFM start of CE, label smoothing, focal "
              "loss and MSE with a free bias reaches the same simplex ETF (NC1-NC3), and deep nets "
              "trained with these losses reach largely the same test accuracy",
        source="docs/science.md §5.2; Zhou, You, Li, Liu, Liu, Qu, Zhu, Are all losses created "
               "equal? A neural collapse perspective (NeurIPS 2022)",
        regime="bounded",
        statistic="frac_etf_min",
        threshold=1.0,
        collapsed_below=False,
        theory=None,
        labels={"lam_w": "λ_W (weight decay of W)", "lam_h": "λ_H (weight decay of H)",
                "smoothing": "label smoothing α", "focal_gamma": "focal γ",
                "frac_etf_min": "fraction of starts reaching a simplex ETF (worst loss)",
                "acc_diff": "largest |accuracy difference| at 95% (fraction)"}),
    large={"num_classes": 10, "per_class": 10, "feature_dim": 11, "starts": 20,
           "data": "mnist_subset", "train_per_class": 300, "model.width": 1024,
           "train.epochs": 60},
    # small: a smoke test; 897 test images (< min_test), so no accuracy claim is made
    small={"starts": 2, "train_per_class": 90, "model.width": 32, "train.epochs": 3,
           "max_iter": 3000},
)
