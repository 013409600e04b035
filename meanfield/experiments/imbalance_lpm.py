"""Minority collapse in Fang et al.'s norm-constrained layer-peeled model at one (ratio, E) point.

The per-point job of the atlas panels "LPM: ratio x E" (docs/science.md §6.1). Classes as in
``imbalance_ufm`` (``k_a`` majority classes of ``round(ratio * n_b)`` samples, ``k_b`` minority
classes of ``n_b``), cross-entropy, no weight decay but the norm budgets
``(1/K) sum_k |w_k|^2 <= E`` and ``(1/K) sum_k (1/n_k) sum_i |h_{k,i}|^2 <= E`` (E_W = E_H = E).
``method``:

- ``sdp``: Fang et al.'s convex program over the Gram matrix of class means and classifiers
  (:func:`meanfield.theory.imbalance.lpm_sdp`, cvxpy + Clarabel): the global optimum;
- ``optimised``: the nonconvex model itself, every sample a free feature, L-BFGS on the constraint
  spheres (:func:`meanfield.deep.ufm_imbalanced.fit_lpm`); with ``sdp_check`` its objective and
  ``max_cos`` are compared with the SDP's (``value_agrees``, ``max_cos_agrees``).

Statistic: ``max_cos``, the largest cosine between two minority classifiers (1: minority collapse;
NaN where the minority classifiers are 0, ``minority_zero``, as at small budgets and large ratios).
Fang et al. prove ``w_b - w_b' -> 0`` as ``n_A / n_B -> infinity`` at fixed budgets: a limit, not a
finite boundary, so no theory line is claimed; the panels measure where the collapse sets in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .imbalance_ufm import LABELS, THRESHOLD, cosine_rows, majority_size, plot_cosines
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement

METHODS = ("sdp", "optimised")


@dataclass(frozen=True)
class ImbalanceLPMConfig:
    """Parameters.

    Attributes:
        k_a: K_A, majority classes.
        k_b: K_B, minority classes (>= 2).
        n_b: n_B, samples per minority class.
        ratio: n_A / n_B; each majority class has round(ratio * n_b) samples (>= 1).
        E: the norm budgets E_W = E_H = E (> 0).
        method: sdp (Fang et al.'s convex program, cvxpy) or optimised (the nonconvex model, L-BFGS).
        tol_grad: optimised: stop at this gradient norm.
        max_iter: optimised: L-BFGS iterations at most.
        sdp_check: optimised: also solve the SDP and compare the objective and max_cos with it.
        value_tol: relative tolerance of the objective against the SDP.
        cos_tol: tolerance of max_cos against the SDP.
    """

    k_a: int = 2
    k_b: int = 2
    n_b: int = 1
    ratio: float = 10.0
    E: float = 1.0
    method: str = "sdp"
    tol_grad: float = 1e-8
    max_iter: int = 3000
    sdp_check: bool = False
    value_tol: float = 1e-5
    cos_tol: float = 1e-3


def run(cfg: ImbalanceLPMConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.ufm_imbalanced import fit_lpm
    import numpy as np
    from ..theory.imbalance import group_counts, lpm_sdp, minority_max_cos, minority_zero
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; valid: {', '.join(METHODS)}")
    if not (math.isfinite(cfg.E) and cfg.E > 0):
        raise ValueError(f"E must be finite and > 0, got {cfg.E!r}")
    n_a = majority_size(cfg.ratio, cfg.n_b)
    counts = group_counts(cfg.k_a, n_a, cfg.k_b, cfg.n_b)
    summary: dict = {"n_a": n_a, "N": sum(counts)}
    if cfg.method == "sdp":
        sol = lpm_sdp(counts, cfg.E, cfg.E, cfg.k_a)
        ev, U = np.linalg.eigh(sol.WWt)
        W = U * np.sqrt(np.clip(ev, 0, None))  # any W with W W^T = the solution's Gram block
        summary.update(max_cos=sol.max_cos, value=sol.value, status=sol.status,
                       normW_minority=float(np.sqrt(max(np.trace(sol.WWt[cfg.k_a:, cfg.k_a:]), 0.0))),
                       minority_zero=minority_zero(W, cfg.k_a))
        return ExperimentResult(summary, cosine_rows(W))
    res = fit_lpm(counts, cfg.E, cfg.E, seed=ctx.seed, tol_grad=cfg.tol_grad, max_iter=cfg.max_iter)
    max_cos = minority_max_cos(res.W.numpy(), cfg.k_a)
    summary.update(max_cos=max_cos, value=res.value, grad_norm=res.grad_norm, converged=res.converged,
                   iterations=res.iterations, normW_minority=float(res.W[cfg.k_a:].norm()),
                   minority_zero=minority_zero(res.W.numpy(), cfg.k_a))
    if cfg.sdp_check:
        sol = lpm_sdp(counts, cfg.E, cfg.E, cfg.k_a)
        agreement(summary, "value", res.value, sol.value, cfg.value_tol, relative=True)
        if math.isfinite(sol.max_cos) and math.isfinite(max_cos):
            agreement(summary, "max_cos", max_cos, sol.max_cos, cfg.cos_tol)
    return ExperimentResult(summary, cosine_rows(res.W.numpy()))


def plot(run) -> list[str]:
    c = run.config
    how = "Fang et al.'s SDP" if c.method == "sdp" else "optimised LPM (L-BFGS)"
    return plot_cosines(run, f"Layer-peeled model, {how}: ratio {c.ratio:g}, E_W = E_H = {c.E:g}",
                        "imbalance_lpm.png")


EXPERIMENT = Experiment(
    name="imbalance_lpm",
    description="norm-constrained layer-peeled model (Fang et al.) with K_A majority / K_B minority "
                "classes at one (ratio, E): the largest minority-classifier cosine, by the SDP or "
                "the optimised model (docs/science.md §6.1)",
    config=ImbalanceLPMConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="the minority classifiers of the layer-peeled model become parallel as n_A/n_B → ∞ "
              "(Minority Collapse); where it sets in at finite ratio is measured, not claimed",
        source="docs/science.md §6.1; Fang, He, Long & Su, PNAS 2021 (arXiv 2101.12699)",
        regime="bounded",
        statistic="max_cos",
        threshold=THRESHOLD,
        collapsed_below=False,
        theory=None,
        labels=LABELS),
    large={"k_a": 5, "k_b": 5, "n_b": 2},
    small={"max_iter": 500, "tol_grad": 1e-7},
)
