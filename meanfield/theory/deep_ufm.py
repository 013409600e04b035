"""The deep unconstrained features model (DUFM) with ReLU and MSE: the deep-collapse objective.

The L-DUFM (Súkeník, Mondelli & Lampert, NeurIPS 2023; Súkeník, Lampert & Mondelli, NeurIPS
2024): K balanced classes, n samples per class (N = K n), free features ``H_1`` (d, N), layers
``H_{l+1} = ReLU(W_l H_l)`` for l = 1, ..., L - 1, output ``W_L H_L`` (K, N), one-hot targets Y:

.. math::

    \\frac{1}{2N}\\|W_L H_L - Y\\|_F^2 + \\frac{\\lambda_W}{2}\\sum_{l=1}^L \\|W_l\\|_F^2
    + \\frac{\\lambda_H}{2}\\|H_1\\|_F^2 .

L = 1 is the plain MSE UFM without bias (:func:`meanfield.theory.ufm.mse_ufm`).

**Deep neural collapse (DNC).** Every sample equals its class mean and at every layer the class
means form an orthogonal frame (all K singular values equal; nonnegative after a ReLU), the
weights aligned with them, so the output is ``t I``. With ``s_l`` the singular value of ``W_l``
and ``h`` the norm of a class mean of ``H_1``, ``t = h prod_l s_l``, the penalties are
``lambda_W K s_l^2 / 2`` and ``lambda_H K n h^2 / 2`` and, balancing them at fixed t (AM-GM),

.. math::

    f_{DNC}(t) = \\tfrac12 (1 - t)^2 + \\tfrac{(L+1) K}{2}\\, c\\, t^{2/(L+1)},\\qquad
    c = (n \\lambda_H \\lambda_W^L)^{1/(L+1)},

minimised over ``t >= 0`` (:func:`dnc_objective`). For L >= 2 the penalty is concave near 0: the
minimum jumps from a nonzero t* to the trivial ``t = 0`` (value 1/2) at :func:`dnc_threshold`.

**Where DNC stops being optimal.** The 2023 theorem: for K = 2 DNC is the global optimum at any
depth L. The 2024 paper: beyond two layers or two classes DNC is not optimal; lower-rank
solutions reach a lower objective. The exact (K, L, lambda) conditions of the 2024 theorems could
not be verified here (docs/science.md §6.3); :func:`dnc_reference` draws the coarse reading
"DNC not optimal for K >= 3 and L >= 3" as a reference only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DNCValue", "dnc_objective", "dnc_threshold", "dnc_reference"]


@dataclass(frozen=True)
class DNCValue:
    """The DNC optimum: ``value`` of the objective, output scale ``t`` (``W_L H_L = t Y``),
    ``trivial`` (t = 0: the zero solution is better than any collapsed one)."""

    value: float
    t: float
    trivial: bool


def _check(K, n, L, lam_w, lam_h):
    if not (isinstance(K, int) and K >= 2):
        raise ValueError(f"K must be an integer >= 2, got {K!r}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n (samples per class) must be an integer >= 1, got {n!r}")
    if not (isinstance(L, int) and L >= 1):
        raise ValueError(f"L (layers) must be an integer >= 1, got {L!r}")
    for name, v in (("lam_w", lam_w), ("lam_h", lam_h)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite weight decay > 0, got {v!r}")


def _f(t: float, L: int, beta: float) -> float:
    return 0.5 * (1.0 - t) ** 2 + beta * t ** (2.0 / (L + 1))


def _tstar(L: int, beta: float) -> tuple[float, float]:
    """argmin over t in (0, 1] of f (golden section on the unimodal part past a grid)."""
    grid = [i / 400 for i in range(1, 401)]
    i = min(range(len(grid)), key=lambda j: _f(grid[j], L, beta))
    a, b = grid[max(i - 1, 0)] if i > 0 else 0.0, grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        c, d = b - g * (b - a), a + g * (b - a)
        if _f(c, L, beta) < _f(d, L, beta):
            b = d
        else:
            a = c
    t = 0.5 * (a + b)
    return t, _f(t, L, beta)


def dnc_objective(K: int, n: int, L: int, lam_w: float, lam_h: float) -> DNCValue:
    """The minimum of the L-DUFM objective over the DNC family (closed form in one scalar).

    For L = 1: ``t = max(0, 1 - K mu)``, value ``K mu - (K mu)^2 / 2`` with
    ``mu = sqrt(n lam_w lam_h)`` (the UFM, :func:`meanfield.theory.ufm.mse_ufm`).

    Raises:
        ValueError: K < 2, n < 1, L < 1 or a weight decay not > 0.
    """
    _check(K, n, L, lam_w, lam_h)
    c = (n * lam_h * lam_w ** L) ** (1.0 / (L + 1))
    beta = 0.5 * (L + 1) * K * c
    if L == 1:
        t = max(0.0, 1.0 - beta)
        return DNCValue(_f(t, 1, beta), t, t == 0.0)
    t, v = _tstar(L, beta)
    if v >= 0.5:
        return DNCValue(0.5, 0.0, True)
    return DNCValue(v, t, False)


def dnc_threshold(K: int, n: int, L: int) -> float:
    """The common weight decay ``lam = lam_w = lam_h`` above which the DNC optimum is trivial."""
    _check(K, n, L, 1.0, 1.0)
    lo, hi = 1e-12, 10.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if dnc_objective(K, n, L, mid, mid).trivial:
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi)


def dnc_reference(K: int, L: int) -> float:
    """Reference line (unverified conditions): negative where DNC is read as optimal
    (K = 2 at any depth, the 2023 theorem; L = 1, the UFM), positive for K >= 3 and L >= 3."""
    if L <= 2:
        return -1.0
    return K - 2.5
