"""The unconstrained features model at one (lambda_W, lambda_H) point: NC metrics and |W|.

The per-point job of the atlas sweep "UFM: NC metrics against (lambda_W, lambda_H)" (docs/science.md §3.5).
Balanced data, ``num_classes`` = K classes, ``per_class`` = n samples per class; the UFM of
:func:`meanfield.deep.ufm.fit_ufm` (L-BFGS, float64) with ``case``

- ``ce``: cross-entropy with a regularised bias ``lam_b`` (Zhu et al.), feature dim K;
- ``mse_none`` / ``mse_free``: MSE without bias / with a free bias

(the cases of the ``ufm`` experiment). In all three cases the global minimiser is nonzero
(collapsed: H at its class means, a simplex ETF or, MSE without bias, an orthogonal frame) exactly
when

.. math::

    K \\sqrt{n \\lambda_W \\lambda_H} < 1 ,

(:func:`meanfield.theory.ufm.collapse_margin`, the experiment's theory line) and ``W = H = 0``
beyond. Reported: ``normW`` (Frobenius norm of W at the optimum) and its closed form
``normW_theory`` (:mod:`meanfield.theory.ufm`), ``normW_err`` = |normW - normW_theory| with
``normW_agrees`` at ``norm_tol`` (the optimiser's error away from the threshold, docs/science.md §3.5:
the band ``|K mu - 1| <= band`` is ill-conditioned and flagged ``near_threshold``), ``trivial``
(``normW < zero_tol``), ``collapses_theory`` (K mu < 1), and the NC metrics of (H, W, b)
(:func:`meanfield.metrics.neural_collapse`), NaN where the optimum is trivial (class means
coincide: undefined).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .registry import Experiment, ExperimentResult, RunContext, Science, Theory, agreement
from ..metrics import DegenerateMeansError

CASES = ("ce", "mse_none", "mse_free")
NC_KEYS = ("nc1", "nc2_etf", "nc2_etf_w", "nc3", "gram_ortho_w")


@dataclass(frozen=True)
class UFMCollapseConfig:
    """Parameters.

    Attributes:
        num_classes: K, classes.
        per_class: n, samples per class.
        lam_w: weight decay of W.
        lam_h: weight decay of H (summed over samples).
        lam_b: weight decay of the bias (case ce only; > 0).
        case: ce (cross-entropy, regularised bias), mse_none or mse_free (MSE without / with a free bias).
        tol_grad: optimiser stop: gradient norm.
        max_iter: optimiser stop: iterations.
        zero_tol: |W| below this is the trivial optimum W = H = 0.
        norm_tol: tolerance of normW against its closed form.
        band: half-width in K mu of the ill-conditioned band around the threshold.
    """

    num_classes: int = 4
    per_class: int = 3
    lam_w: float = 0.05
    lam_h: float = 0.05
    lam_b: float = 0.01
    case: str = "ce"
    tol_grad: float = 1e-10
    max_iter: int = 20_000
    zero_tol: float = 1e-3
    norm_tol: float = 1e-4
    band: float = 0.1


def boundary(p) -> float:
    """The theory line from flat parameters: ``K sqrt(n lam_w lam_h) - 1`` (negative: collapsed)."""
    from ..theory.ufm import collapse_margin
    return collapse_margin(p["num_classes"], p["per_class"], p["lam_w"], p["lam_h"])


def _theory_norm(cfg: UFMCollapseConfig) -> float:
    from ..theory.ufm import ce_ufm, mse_ufm
    K, n = cfg.num_classes, cfg.per_class
    if cfg.case == "ce":
        s = ce_ufm(K, n, cfg.lam_w, cfg.lam_h, cfg.lam_b)
    else:
        s = mse_ufm(K, n, cfg.lam_w, cfg.lam_h, bias=cfg.case[4:])
    return math.sqrt(max(float(s.norm_W2), 0.0))


def run(cfg: UFMCollapseConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.ufm import UFMConfig, fit_ufm
    from ..metrics import neural_collapse
    from ..theory.ufm import collapse_margin
    if cfg.case not in CASES:
        raise ValueError(f"unknown case {cfg.case!r}; valid: {', '.join(CASES)}")
    for k in ("lam_w", "lam_h"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be > 0 (the threshold needs both penalties), got {v!r}")
    if cfg.case == "ce" and not cfg.lam_b > 0:
        raise ValueError(f"case='ce' regularises the bias: lam_b must be > 0, got {cfg.lam_b!r}")
    K, n = cfg.num_classes, cfg.per_class
    kw = dict(lW=cfg.lam_w, lH=cfg.lam_h, tol_grad=cfg.tol_grad, max_iter=cfg.max_iter, seed=ctx.seed)
    if cfg.case == "ce":
        uc = UFMConfig(loss="cross_entropy", bias="regularised", lb=cfg.lam_b, feature_dim=K, **kw)
    else:
        uc = UFMConfig(loss="mse", bias=cfg.case[4:], **kw)
    from ..threads import one_thread_on_cpu
    with one_thread_on_cpu(ctx.device):  # tiny: one thread
        res = fit_ufm(K, n, uc, device=ctx.device)
    normW = float(res.W.norm())
    margin = collapse_margin(K, n, cfg.lam_w, cfg.lam_h)
    summary: dict = {}
    agreement(summary, "normW", normW, _theory_norm(cfg), cfg.norm_tol)
    summary.update({"normW_err": abs(normW - summary["normW_theory"]), "K_mu": margin + 1.0,
                    "collapses_theory": margin < 0.0, "trivial": normW < cfg.zero_tol,
                    "near_threshold": abs(margin) <= cfg.band, "value": res.value,
                    "grad_norm": res.grad_norm, "converged": res.converged})
    nc = None
    if normW >= cfg.zero_tol:
        try:
            nc = neural_collapse(res.H.T, res.labels, classifier=res.W,
                                 bias=res.b if cfg.case != "mse_none" else None)
        except DegenerateMeansError:
            nc = None
    for k in NC_KEYS:
        v = getattr(nc, k) if nc is not None else None
        summary[k] = float("nan") if v is None else float(v)
    return ExperimentResult(summary, [dict(summary)])


EXPERIMENT = Experiment(
    name="ufm_collapse",
    description="UFM (CE / MSE) at one (lam_w, lam_h): |W| against its closed form, NC metrics; "
                "collapsed iff K sqrt(n lam_w lam_h) < 1 (atlas, docs/science.md §3.5)",
    config=UFMCollapseConfig,
    run=run,
    science=Science(
        claim="the UFM optimum is collapsed (|W| > 0, NC) iff K·√(n λ_W λ_H) < 1, W = H = 0 beyond",
        source="docs/science.md §3.5; Zhu et al., A geometric analysis of neural collapse with "
               "unconstrained features (NeurIPS 2021)",
        regime="bounded",
        statistic="normW",
        threshold=1e-3,
        collapsed_below=False,
        theory=Theory(boundary, ("num_classes", "per_class", "lam_w", "lam_h"),
                      "theory: K·√(n λ_W λ_H) = 1", collapsed="negative"),
        labels={"lam_w": "λ_W (weight decay of W)", "lam_h": "λ_H (weight decay of H, summed over samples)",
                "lam_b": "λ_b (weight decay of the bias)", "num_classes": "classes K",
                "per_class": "samples per class n", "normW": "‖W‖_F at the optimum",
                "nc2_etf_w": "NC2: ETF distance of W W^T", "K_mu": "K·√(n λ_W λ_H)"}),
    large={"num_classes": 10, "per_class": 20},
    small={"max_iter": 3000, "tol_grad": 1e-8},
)
