"""Simplex symmetry is optimal for expressive classes (docs/science.md §3.1, Wojtowytsch & E).

Hypotheses ``h = A f`` with features ``|f(x)| <= R`` and a classifier of operator norm ``<= 1``;
k balanced classes and the cross-entropy risk

.. math::

    \\mathcal R(z_1..z_k, A) = \\frac1k\\sum_{i=1}^k
        \\log\\sum_{j=1}^k \\exp\\big((A z_i)_j - (A z_i)_i\\big).

The unique minimiser (up to rotations) maps class i to ``z_i = R u_i`` with ``u_i`` a centred
regular simplex (pairwise cosines ``-1/(k-1)``) and A an isometry on their span, and

.. math::

    \\min \\mathcal R = \\log\\Big(1 + (k-1)\\, e^{-R\\sqrt{k/(k-1)}}\\Big).

Over an l^p ball with logits ``z`` themselves (A = I), the per-class optimum is
``z_i = R (alpha e_i + beta sum_{j != i} e_j)`` (:func:`lp_optimum`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .etf import simplex_etf

__all__ = ["optimal_risk", "optimal_gap", "simplex_solution", "ce_risk", "LpOptimum", "lp_optimum"]


def _check(k, R) -> tuple[int, float]:
    if isinstance(k, bool) or int(k) != k or k < 2:
        raise ValueError(f"k must be an integer >= 2 (number of classes); got {k!r}")
    if not (isinstance(R, (int, float)) and math.isfinite(R) and R > 0):
        raise ValueError(f"R must be a positive finite radius; got {R!r}")
    return int(k), float(R)


def optimal_gap(k: int, R: float) -> float:
    """The logit gap ``(A z_i)_i - (A z_i)_j`` at the optimum: ``R sqrt(k/(k-1))``."""
    k, R = _check(k, R)
    return R * math.sqrt(k / (k - 1))


def optimal_risk(k: int, R: float) -> float:
    """``log(1 + (k-1) exp(-R sqrt(k/(k-1))))``, the minimal CE risk over the R-ball (stable form)."""
    k, R = _check(k, R)
    return math.log1p((k - 1) * math.exp(-optimal_gap(k, R)))


def simplex_solution(k: int, R: float, *, p: Optional[int] = None, dtype=torch.float64,
                     device=None) -> tuple[Tensor, Tensor]:
    """A minimiser: features ``Z = R M^T`` (M the simplex ETF) and ``A = sqrt((k-1)/k) M^T``.

    Returns:
        (Z ((k, p) Tensor) with rows z_i, A ((k, p) Tensor) with operator norm 1).
    """
    k, R = _check(k, R)
    M = simplex_etf(k, p, dtype=dtype, device=device)          # (p, k), unit columns
    return R * M.T.contiguous(), math.sqrt((k - 1) / k) * M.T.contiguous()


def ce_risk(Z: Tensor, A: Tensor) -> Tensor:
    """The balanced CE risk ``(1/k) sum_i CE(A z_i, i)`` (differentiable).

    Args:
        Z ((..., k, p) Tensor): class features, row i for class i.
        A ((..., k, p) Tensor): classifier.

    Returns:
        (...) Tensor.
    """
    if Z.shape[-2] != A.shape[-2] or Z.shape[-1] != A.shape[-1]:
        raise ValueError(f"Z and A must both be (k, p); got {tuple(Z.shape)} and {tuple(A.shape)}")
    logits = Z @ A.transpose(-1, -2)                             # (..., k, k): row i = A z_i
    return (torch.logsumexp(logits, -1) - torch.diagonal(logits, dim1=-2, dim2=-1)).mean(-1)


@dataclass(frozen=True)
class LpOptimum:
    """Per-class optimum over the l^p ball of radius R (logits = features).

    Attributes:
        alpha, beta: ``z_i = R (alpha e_i + beta sum_{j != i} e_j)``.
        gap: ``R (alpha - beta)``; risk: ``log(1 + (k-1) exp(-gap))``.
    """

    alpha: float
    beta: float
    gap: float
    risk: float


def lp_optimum(k: int, R: float, p: float = 2.0) -> LpOptimum:
    """Minimiser of ``log sum_j exp(z_j - z_i)`` over ``|z|_p <= R`` (1 <= p <= inf).

    By symmetry and convexity every ``z_j, j != i`` is equal; maximising ``alpha - beta`` on
    ``alpha^p + (k-1)|beta|^p = 1`` gives ``|beta| = alpha (k-1)^{-1/(p-1)}`` (p = 2: the
    centred simplex, ``alpha = sqrt((k-1)/k)``, ``beta = -alpha/(k-1)``).
    """
    k, R = _check(k, R)
    if not (p >= 1):
        raise ValueError(f"p must be >= 1 (or inf); got {p!r}")
    if p == 1:
        alpha, beta = 1.0, 0.0
    elif math.isinf(p):
        alpha, beta = 1.0, -1.0
    else:
        r = (k - 1) ** (-1.0 / (p - 1))
        alpha = (1.0 + (k - 1) * r ** p) ** (-1.0 / p)
        beta = -alpha * r
    gap = R * (alpha - beta)
    return LpOptimum(alpha, beta, gap, math.log1p((k - 1) * math.exp(-gap)))
