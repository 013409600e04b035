"""Minority collapse in the weight-decay cross-entropy UFM at one (imbalance ratio, lambda) point.

The per-point job of the atlas panel "UFM: ratio x lambda" (docs/science.md §6.1). ``k_a`` majority
classes with ``n_a = round(ratio * n_b)`` samples each, ``k_b`` minority classes with ``n_b``
samples each (N samples); every sample a free feature, feature dim ``d = K``, no bias,

    (1/N) sum_i CE(W h_i, y_i) + (lam/2) |W|_F^2 + (lam/2) |H|_F^2      (lam_W = lam_H = lam)

minimised by L-BFGS in float64 (:func:`meanfield.deep.ufm_imbalanced.fit_imbalanced_ufm`).

Statistic: ``max_cos``, the largest cosine between two minority classifiers (rows of W); 1 is
minority collapse, NaN where the optimum is ``W = 0`` or has the minority classifiers at 0 while
the majority ones are not (``minority_zero``: every |w_b| below 1e-3 of the longest row; a
collapsed state too, but one without directions to compare). Theory
(:mod:`meanfield.theory.imbalance`): the minority classifiers coincide exactly when

    lam >= lam* = sqrt(n_b) / N ,

reported as ``lam_star``, ``lam_ratio = lam / lam*`` and ``collapses_theory``; ``lam_trivial``
is where ``W = H = 0`` takes over. With ``convex_check`` the convex program over the class-mean
logits (nuclear norm, cvxpy/Clarabel) is solved too and ``max_cos`` is compared with its value
(``max_cos_theory``, ``max_cos_agrees`` at ``cos_tol``): an independent computation of the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .registry import Experiment, ExperimentResult, RunContext, Science, Theory, agreement

THRESHOLD = 0.999
LABELS = {"ratio": "imbalance ratio n_A / n_B", "lam": "λ = λ_W = λ_H (weight decay)",
          "E": "E = E_W = E_H (norm budgets)", "max_cos": "largest cosine between minority classifiers",
          "lam_ratio": "λ / λ*", "k_a": "majority classes K_A", "k_b": "minority classes K_B",
          "n_b": "samples per minority class n_B"}


@dataclass(frozen=True)
class ImbalanceUFMConfig:
    """Parameters.

    Attributes:
        k_a: K_A, majority classes.
        k_b: K_B, minority classes (>= 2).
        n_b: n_B, samples per minority class.
        ratio: n_A / n_B; each majority class has round(ratio * n_b) samples (>= 1).
        lam: weight decay of W and of H (summed over samples): lam_W = lam_H = lam.
        tol_grad: optimiser stop: gradient norm.
        max_iter: optimiser stop: L-BFGS iterations.
        zero_tol: |W|_F below this is the trivial optimum W = H = 0.
        convex_check: also solve the convex program (cvxpy) and compare max_cos with it.
        cos_tol: tolerance of max_cos against the convex program.
    """

    k_a: int = 2
    k_b: int = 2
    n_b: int = 1
    ratio: float = 10.0
    lam: float = 0.03
    tol_grad: float = 1e-8
    max_iter: int = 5000
    zero_tol: float = 1e-3
    convex_check: bool = False
    cos_tol: float = 1e-3


def majority_size(ratio: float, n_b: int) -> int:
    """``n_a = round(ratio * n_b)``; ValueError if the ratio is not finite or gives n_a < 1."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be finite and > 0, got {ratio!r}")
    n_a = int(round(ratio * n_b))
    if n_a < 1:
        raise ValueError(f"ratio * n_b = {ratio * n_b:g} rounds to no majority sample; raise ratio or n_b")
    return n_a


def boundary(p) -> float:
    """The theory line from flat parameters: ``log(lam* / lam)`` (negative: minority collapse).

    Drawn with ``n_a = ratio * n_b`` unrounded (a smooth line; equal to the run's n_a wherever
    ``ratio * n_b`` is an integer, as on the atlas grids).
    """
    k_a, k_b, n_b, lam = float(p["k_a"]), float(p["k_b"]), float(p["n_b"]), float(p["lam"])
    if not (lam > 0 and float(p["ratio"]) > 0):
        raise ValueError(f"lam and ratio must be > 0, got {lam!r}, {p['ratio']!r}")
    return math.log(math.sqrt(n_b) / (k_a * float(p["ratio"]) * n_b + k_b * n_b)) - math.log(lam)


def cosine_rows(W) -> list[dict]:
    """History rows ``{"i", "j", "cos"}``: the cosine matrix of the rows of W (NaN for a ~0 row)."""
    import numpy as np
    W = np.asarray(W, dtype=float)
    nrm = np.linalg.norm(W, axis=1)
    out = []
    for i in range(len(W)):
        for j in range(len(W)):
            ok = nrm[i] > 1e-12 and nrm[j] > 1e-12
            out.append({"i": i, "j": j, "cos": float(W[i] @ W[j] / (nrm[i] * nrm[j])) if ok else float("nan")})
    return out


def run(cfg: ImbalanceUFMConfig, ctx: RunContext) -> ExperimentResult:
    from ..deep.ufm_imbalanced import fit_imbalanced_ufm
    from ..theory.imbalance import (group_counts, minority_max_cos, minority_zero, ufm_convex,
                                    ufm_minority_threshold, ufm_trivial_threshold)
    if not (math.isfinite(cfg.lam) and cfg.lam > 0):
        raise ValueError(f"lam must be finite and > 0, got {cfg.lam!r}")
    n_a = majority_size(cfg.ratio, cfg.n_b)
    counts = group_counts(cfg.k_a, n_a, cfg.k_b, cfg.n_b)
    res = fit_imbalanced_ufm(counts, cfg.lam, cfg.lam, seed=ctx.seed, tol_grad=cfg.tol_grad,
                             max_iter=cfg.max_iter)
    W = res.W.numpy()
    normW = float(res.W.norm())
    trivial = normW < cfg.zero_tol
    max_cos = float("nan") if trivial else minority_max_cos(W, cfg.k_a)
    lam_star = ufm_minority_threshold(cfg.k_a, n_a, cfg.k_b, cfg.n_b)
    summary: dict = {"max_cos": max_cos, "n_a": n_a, "N": sum(counts), "lam_star": lam_star,
                     "lam_ratio": cfg.lam / lam_star, "collapses_theory": cfg.lam >= lam_star,
                     "lam_trivial": ufm_trivial_threshold(counts), "normW": normW, "trivial": trivial,
                     "normW_minority": float(res.W[cfg.k_a:].norm()),
                     "minority_zero": (not trivial) and minority_zero(W, cfg.k_a), "value": res.value,
                     "grad_norm": res.grad_norm, "converged": res.converged}
    if cfg.convex_check:
        cvx = ufm_convex(counts, cfg.lam, cfg.k_a)
        if math.isfinite(cvx.max_cos) and math.isfinite(max_cos):
            agreement(summary, "max_cos", max_cos, cvx.max_cos, cfg.cos_tol)
        summary["value_convex"] = cvx.value
    return ExperimentResult(summary, cosine_rows(W))


def plot_cosines(run, title: str, name: str) -> list[str]:
    """``name``: the cosine matrix of the classifiers (minority block boxed), from history.csv."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle
    rows = run.history
    K = int(max(int(float(r["i"])) for r in rows)) + 1
    C = np.full((K, K), np.nan)
    for r in rows:
        C[int(float(r["i"])), int(float(r["j"]))] = float(r["cos"])
    ka = int(run.config.k_a)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(C, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.add_patch(Rectangle((ka - 0.5, ka - 0.5), K - ka, K - ka, fill=False, lw=2.5, ec="k"))
    for i in range(K):
        for j in range(K):
            if np.isfinite(C[i, j]):
                ax.text(j, i, f"{C[i, j]:.3f}", ha="center", va="center", fontsize=7)
    names = [f"A{k}" for k in range(ka)] + [f"B{k}" for k in range(K - ka)]
    ax.set_xticks(range(K), names)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("classifier w_k (A: majority, B: minority; box: minority block)")
    fig.colorbar(im, ax=ax, label="cos(w_i, w_j)")
    s = run.summary
    mc = s.get("max_cos", float("nan"))
    ax.set_title(f"{title}\nlargest minority cosine {mc:.6f} (collapsed if > {THRESHOLD:g})", fontsize=9)
    fig.tight_layout()
    run.savefig(fig, name)
    return [name]


def plot(run) -> list[str]:
    s, c = run.summary, run.config
    return plot_cosines(run, f"UFM, CE + weight decay: ratio {c.ratio:g}, λ = {c.lam:g} = "
                             f"{s['lam_ratio']:.3g} λ* (theory: {'collapse' if s['collapses_theory'] else 'no collapse'})",
                        "imbalance_ufm.png")


EXPERIMENT = Experiment(
    name="imbalance_ufm",
    description="CE UFM with K_A majority / K_B minority classes at one (ratio, lam): the largest "
                "minority-classifier cosine; minority collapse iff lam >= sqrt(n_B)/N (docs/science.md §6.1)",
    config=ImbalanceUFMConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="the minority classifiers of the weight-decay CE UFM coincide iff √(λ_W λ_H) ≥ √n_B / N",
        source="docs/science.md §6.1 (derived from the nuclear-norm convex form; Hong & Ling 2023, "
               "arXiv 2309.09725, state a sharp two-group threshold)",
        regime="bounded",
        statistic="max_cos",
        threshold=THRESHOLD,
        collapsed_below=False,
        theory=Theory(boundary, ("k_a", "k_b", "n_b", "ratio", "lam"), "theory: λ = √n_B / N",
                      collapsed="negative"),
        labels=LABELS),
    large={"k_a": 5, "k_b": 5, "n_b": 2, "tol_grad": 1e-10, "max_iter": 20_000},
    small={"max_iter": 1000, "tol_grad": 1e-7},
)
