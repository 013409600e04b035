"""Minority collapse under class imbalance: thresholds and the convex programs (docs/science.md §6.1).

Two groups of classes: ``k_a`` majority classes with ``n_a`` samples each and ``k_b`` minority
classes with ``n_b`` samples each, ``N = k_a n_a + k_b n_b``; classes ``0..k_a-1`` are the
majority, ``k_a..K-1`` the minority. *Minority collapse*: the minority classifiers
``w_b`` (rows of W) are equal, so their largest pairwise cosine is 1.

UFM with cross-entropy and weight decay (no bias, feature dim d >= K)::

    min_{W, H}  (1/N) sum_i CE(W h_i, y_i) + (lam_W/2) |W|_F^2 + (lam_H/2) |H|_F^2

equals (``Z = W H``, ``min_{WH=Z} ... = sqrt(lam_W lam_H) |Z|_*``) the convex program
``min_Z (1/N) sum_i CE(z_i, y_i) + lam |Z|_*`` with ``lam = sqrt(lam_W lam_H)``; with the class
means ``Zbar`` (K, K) and ``D = diag(n_k)`` the nuclear norm is ``|Zbar D^{1/2}|_*``
(:func:`ufm_convex`). Its subgradient condition splits into the minority-difference block, whose
gradient has spectral norm ``sqrt(n_b)/N`` at a minority-collapsed point, and the rest, so

    the minority classifiers coincide at the optimum  iff  sqrt(lam_W lam_H) >= sqrt(n_b) / N

(:func:`ufm_minority_threshold`; derivation in docs/science.md §6.1; for n_a = n_b it is Zhu et
al.'s ``K sqrt(n lam_W lam_H) = 1``), and ``W = H = 0`` iff ``lam >= |grad at 0|_2``
(:func:`ufm_trivial_threshold`).

Layer-peeled model (Fang et al. 2021), norm constraints instead of weight decay::

    min (1/N) sum_k sum_i CE(W h_{k,i}, k)  s.t.  (1/K) sum_k |w_k|^2 <= E_W,
                                                   (1/K) sum_k (1/n_k) sum_i |h_{k,i}|^2 <= E_H

and its convex relaxation, the semidefinite program in the Gram matrix X (2K, 2K) of
``[h_1 .. h_K, w_1 .. w_K]`` (:func:`lpm_sdp`), solved with cvxpy (Clarabel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["group_counts", "ufm_minority_threshold", "ufm_minority_margin", "ufm_trivial_threshold",
           "minority_max_cos", "minority_zero", "ufm_convex", "lpm_sdp", "lpm_nuclear", "ConvexSolution"]


def group_counts(k_a: int, n_a: int, k_b: int, n_b: int) -> list[int]:
    """Samples per class ``[n_a]*k_a + [n_b]*k_b``. Raises ValueError on bad sizes."""
    for name, v, lo in (("k_a", k_a, 1), ("k_b", k_b, 2), ("n_a", n_a, 1), ("n_b", n_b, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}"
                             + (" (minority collapse compares two or more minority classes)"
                                if name == "k_b" else "") + f", got {v!r}")
    return [int(n_a)] * int(k_a) + [int(n_b)] * int(k_b)


def ufm_minority_threshold(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """``sqrt(n_b) / N``: the minority classifiers coincide iff ``sqrt(lam_W lam_H)`` is at least this."""
    c = group_counts(k_a, n_a, k_b, n_b)
    return math.sqrt(n_b) / sum(c)


def ufm_minority_margin(k_a, n_a, k_b, n_b, lam_w: float, lam_h: float) -> float:
    """``log(threshold / sqrt(lam_W lam_H))``: <= 0 where minority collapse is predicted."""
    if not (lam_w > 0 and lam_h > 0 and math.isfinite(lam_w) and math.isfinite(lam_h)):
        raise ValueError(f"lam_w and lam_h must be finite and > 0, got {lam_w!r}, {lam_h!r}")
    return math.log(ufm_minority_threshold(k_a, n_a, k_b, n_b)) - 0.5 * math.log(lam_w * lam_h)


def ufm_trivial_threshold(counts: Sequence[int]) -> float:
    """The ``lam = sqrt(lam_W lam_H)`` from which ``W = H = 0`` is optimal: ``|G|_2`` with
    ``G = (1/N) (1 1^T / K - I) diag(sqrt(n_k))`` (the gradient at Z = 0)."""
    n = np.asarray(counts, dtype=float)
    K, N = len(n), n.sum()
    G = (np.full((K, K), 1.0 / K) - np.eye(K)) * np.sqrt(n)[None, :] / N
    return float(np.linalg.norm(G, 2))


def minority_max_cos(W: np.ndarray, k_a: int, *, rel_tol: float = 1e-3, eps: float = 1e-6) -> float:
    """The largest cosine between two minority rows ``W[k_a:]`` of ``W (K, d)``.

    NaN where it is undefined: a minority row shorter than ``rel_tol`` times the longest row, or
    than ``eps`` (the optimum can put the minority classifiers at 0 while the majority ones are
    not; an optimiser or solver leaves rows of ~1e-7 there, whose directions are noise).
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] - k_a < 2:
        raise ValueError(f"need two or more minority rows, got W of shape {W.shape} with k_a={k_a}")
    return _gram_cos(W @ W.T, k_a, rel_tol=rel_tol, eps=eps)


def minority_zero(W: np.ndarray, k_a: int, *, rel_tol: float = 1e-3) -> bool:
    """True if every minority row of ``W (K, d)`` is shorter than ``rel_tol`` times the longest row."""
    nrm = np.linalg.norm(np.asarray(W, dtype=float), axis=1)
    return bool(nrm.max() > 0 and (nrm[k_a:] < rel_tol * nrm.max()).all())


def _gram_cos(G: np.ndarray, k_a: int, *, rel_tol: float = 1e-3, eps: float = 1e-6) -> float:
    """minority_max_cos from a Gram matrix ``G = W W^T`` (K, K): NaN if a minority ``|w_b|`` is below
    ``rel_tol`` times the longest row or below ``eps`` (a solver's ~1e-8 accuracy on G leaves rows
    of norm ~1e-4 where the optimum has them at 0)."""
    d = np.sqrt(np.clip(np.diag(G), 0, None))
    db = d[k_a:]
    if (db < max(rel_tol * d.max(), eps)).any():
        return float("nan")
    C = G[k_a:, k_a:] / np.outer(db, db)
    iu = np.triu_indices(len(db), 1)
    return float(np.clip(C[iu].max(), -1.0, 1.0))


@dataclass(frozen=True)
class ConvexSolution:
    """A convex program's solution: objective value, ``WWt`` (K, K) = W W^T, the minority max cosine."""

    value: float
    WWt: np.ndarray
    max_cos: float
    status: str


def _ce_terms(L, counts):
    """sum_k (n_k/N) CE(row k of L (K, K), k) as a cvxpy expression (row k: logits of class k)."""
    import cvxpy as cp
    N = float(sum(counts))
    return sum((c / N) * (cp.log_sum_exp(L[k, :]) - L[k, k]) for k, c in enumerate(counts))


def _solve(prob) -> str:
    import cvxpy as cp
    try:
        prob.solve(solver=cp.CLARABEL)
    except cp.error.SolverError:
        prob.solve(solver=cp.SCS, eps=1e-9, max_iters=200_000)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise ValueError(f"the convex program did not solve (status {prob.status})")
    return prob.status


def ufm_convex(counts: Sequence[int], lam: float, k_a: int) -> ConvexSolution:
    """The weight-decay CE UFM as its convex program over class-mean logits.

    ``min_{Zbar (K,K)} sum_k (n_k/N) CE(Zbar[:, k], k) + lam |Zbar diag(sqrt n)|_*`` (columns of
    Zbar: the logits of each class). ``W W^T = (M M^T)^{1/2}`` with ``M = Zbar diag(sqrt n)``.
    """
    import cvxpy as cp
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be finite and > 0, got {lam!r}")
    K = len(counts)
    Z = cp.Variable((K, K))  # Z[j, k]: logit j of class k
    M = Z @ np.diag(np.sqrt(np.asarray(counts, dtype=float)))
    prob = cp.Problem(cp.Minimize(_ce_terms(Z.T, counts) + lam * cp.normNuc(M)))
    status = _solve(prob)
    Mv = Z.value @ np.diag(np.sqrt(np.asarray(counts, dtype=float)))
    U, s, _ = np.linalg.svd(Mv)
    WWt = (U * s) @ U.T
    return ConvexSolution(float(prob.value), WWt, _gram_cos(WWt, k_a, eps=1e-3), status)


def lpm_sdp(counts: Sequence[int], E_W: float, E_H: float, k_a: int) -> ConvexSolution:
    """Fang et al.'s convex program for the imbalanced layer-peeled model (cross-entropy).

    ``min_{X (2K, 2K) PSD} sum_k (n_k/N) CE(X[k, K:], k)`` s.t. ``(1/K) tr X[:K, :K] <= E_H``,
    ``(1/K) tr X[K:, K:] <= E_W`` (X: the Gram matrix of class-mean features and classifiers).
    """
    import cvxpy as cp
    for name, v in (("E_W", E_W), ("E_H", E_H)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    K = len(counts)
    X = cp.Variable((2 * K, 2 * K), PSD=True)
    cons = [cp.trace(X[:K, :K]) / K <= E_H, cp.trace(X[K:, K:]) / K <= E_W]
    prob = cp.Problem(cp.Minimize(_ce_terms(X[:K, K:], counts)), cons)
    status = _solve(prob)
    WWt = np.asarray(X.value[K:, K:])
    return ConvexSolution(float(prob.value), WWt, _gram_cos(WWt, k_a, eps=1e-3), status)


def lpm_nuclear(counts: Sequence[int], E_W: float, E_H: float) -> float:
    """The LPM's optimal value another way: ``min sum_k (n_k/N) CE(Zbar[:, k], k)`` over
    ``|Zbar|_* <= K sqrt(E_W E_H)`` (``min |W|_F |Hbar|_F`` over ``W Hbar = Zbar`` is ``|Zbar|_*``)."""
    import cvxpy as cp
    K = len(counts)
    Z = cp.Variable((K, K))
    prob = cp.Problem(cp.Minimize(_ce_terms(Z.T, counts)), [cp.normNuc(Z) <= K * math.sqrt(E_W * E_H)])
    _solve(prob)
    return float(prob.value)
