"""The multi-label PAL-CE UFM reduced to its symmetric form (docs/science.md §5.1).

If the global minimiser has the multi-label NC form of Li et al. (ICML 2024) -- W = rho M^T with M a
simplex ETF of unit columns m_k, b = 0, and every sample with a label set S of size m at

.. math::

    h_S = t_m \\frac{\\sum_{k\\in S} m_k}{\\|\\sum_{k\\in S} m_k\\|},\\qquad
    \\Big\\|\\sum_{k\\in S} m_k\\Big\\|^2 = \\frac{m (K - m)}{K - 1} ,

then the logits are ``a = s (K-m)/(K-1)`` on the labels of S and ``c = -s m/(K-1)`` off them, with
``s = rho t_m / sqrt(m (K-m)/(K-1))``, and the objective is a function of ``(rho, t_1, t_2, ...)``
only:

.. math::

    F = \\frac1N \\sum_m N_m\\, m\\,\\big[-a + \\log(m e^{a} + (K-m) e^{c})\\big]
      + \\frac{\\lambda_W}{2} K \\rho^2 + \\frac{\\lambda_H}{2}\\sum_m N_m t_m^2 ,

``N_m = C(K, m) n`` samples of multiplicity m. Its minimiser gives the optimal value and the
tag-wise scale of every multiplicity, ``c_m = (t_m / t_1) sqrt(m (K-1) / (K-m))`` (the mean of a set
of size m is ``c_m`` times the average of its labels' single-label means).

This is an independent low-dimensional computation (a few variables, L-BFGS in float64), used as
the test oracle of :func:`meanfield.deep.ufm_multilabel.fit_multilabel_ufm`; it presumes the
symmetric form rather than proving it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["SymmetricPAL", "symmetric_pal_ufm"]


@dataclass(frozen=True)
class SymmetricPAL:
    """Minimiser of the reduced objective.

    Attributes:
        value: the least value of F.
        rho: norm of every classifier row.
        t: {m: norm of the feature of a set of size m}.
        scale: {m: tag-wise scale c_m} (c_1 = 1).
    """

    value: float
    rho: float
    t: dict
    scale: dict


def symmetric_pal_ufm(K: int, multiplicities: Sequence[int], per_set: int, lW: float, lH: float,
                      *, tol_grad: float = 1e-12) -> SymmetricPAL:
    """Minimise the reduced PAL-CE UFM objective (see the module docstring).

    Raises:
        ValueError: bad sizes (as :func:`meanfield.deep.ufm_multilabel.label_sets`), penalties <= 0.
    """
    from ..deep.ufm import minimise
    from ..deep.ufm_multilabel import label_sets
    label_sets(K, multiplicities)  # validates
    if not (lW > 0 and lH > 0 and math.isfinite(lW) and math.isfinite(lH)):
        raise ValueError(f"lW and lH must be finite and > 0, got {lW!r}, {lH!r}")
    ms = sorted(int(m) for m in multiplicities)
    Nm = {m: math.comb(K, m) * int(per_set) for m in ms}
    N = sum(Nm.values())
    x = torch.full((1 + len(ms),), 1.0, dtype=torch.float64, requires_grad=True)

    def F() -> torch.Tensor:
        rho, total = x[0], 0.0
        for j, m in enumerate(ms):
            t = x[1 + j]
            s = rho * t / math.sqrt(m * (K - m) / (K - 1))
            a, c = s * (K - m) / (K - 1), -s * m / (K - 1)
            lse = torch.logsumexp(torch.stack([a + math.log(m), c + math.log(K - m)]), 0)
            total = total + Nm[m] * m * (lse - a) / N + 0.5 * lH * Nm[m] * t ** 2
        return total + 0.5 * lW * K * rho ** 2

    res = minimise(F, [x], method="lbfgs", lr=1.0, tol_grad=tol_grad, max_iter=5000)
    v = x.detach().abs()
    t = {m: float(v[1 + j]) for j, m in enumerate(ms)}
    scale = {m: (t[m] / t[1]) * math.sqrt(m * (K - 1) / (K - m)) if t[1] > 0 else float("nan")
             for m in ms}
    return SymmetricPAL(res.value, float(v[0]), t, scale)
