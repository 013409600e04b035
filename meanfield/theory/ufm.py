"""Closed forms of the unconstrained features model (UFM) and the extended UFM (docs/science.md §3.5).

Balanced data: K classes, n samples per class, N = K n; ``mu = sqrt(n lW lH)``.

MSE UFM

.. math::

    \\frac{1}{2N}\\|W H + b 1^T - Y\\|_F^2 + \\frac{\\lambda_W}{2}\\|W\\|_F^2 + \\frac{\\lambda_H}{2}\\|H\\|_F^2

CE UFM (Zhu et al. 2021), the H penalty summed over samples:

.. math::

    \\frac1N \\sum_i \\mathrm{CE}(W h_i + b, y_i) + \\frac{\\lambda_W}{2}\\|W\\|_F^2
    + \\frac{\\lambda_H}{2}\\|H\\|_F^2 + \\frac{\\lambda_b}{2}\\|b\\|^2

Extended UFM (Tirer & Bruna 2022): ``W2 W1 H`` (or ``W2 relu(W1 H)``) with penalties
``lW2, lW1, lH``; ``tau = (n lH lW1 lW2)^(1/3)``.

Every function returns a frozen dataclass holding the optimal value, the scalar (c, a or s), the
K x K matrix ``WHbar`` (``W Hbar``, resp. ``W2 W1 Hbar``), for the UFM also ``WWt`` (``W W^T``) and
``b``, and the squared norms at the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["UFMSolution", "ExtendedUFMSolution", "mse_ufm", "ce_ufm", "extended_ufm",
           "extended_ufm_roots", "collapse_margin", "collapse_threshold"]


def collapse_margin(K: int, n: int, lW: float, lH: float) -> float:
    """``K sqrt(n lW lH) - 1``: the UFM's collapse boundary (MSE without or with a free bias, CE).

    Negative: the global minimiser is collapsed (nonzero, H at its class means, W dual to them);
    positive: it is ``W = H = 0``; zero on the boundary (docs/science.md §3.5; Zhu et al. 2021 for CE).
    The one place this boundary is written: experiments, phase diagrams and the atlas use it.
    """
    return K * math.sqrt(n * lW * lH) - 1.0


def collapse_threshold(K: int, n: int, ratio: float = 1.0) -> float:
    """The weight decay ``lam`` on the boundary with ``lW = lam``, ``lH = ratio lam``:
    ``collapse_margin(K, n, lam, ratio lam) = 0``, i.e. ``lam = 1 / (K sqrt(n ratio))``."""
    return 1.0 / (K * math.sqrt(n * ratio))


@dataclass(frozen=True)
class UFMSolution:
    """A UFM global minimiser in closed form.

    Attributes:
        loss: ``mse`` or ``cross_entropy``.
        bias: ``none``, ``free`` or ``regularised``.
        value: the optimal objective value.
        scale: c (MSE: ``W Hbar = c I`` or ``c J``) or a (CE: ``|w_k|^2 = a``).
        WHbar ((K, K) ndarray): ``W Hbar`` (Hbar: the d x K matrix of class means).
        WWt ((K, K) ndarray): ``W W^T``.
        b ((K,) ndarray): the bias (0 without one; for CE with ``lb = 0`` any multiple of 1 is
            optimal and 0 is returned).
        norm_W2: ``|W|_F^2``.
        norm_Hbar2: ``|Hbar|_F^2`` (``|H|_F^2 = n |Hbar|_F^2``).
        mu: ``sqrt(n lW lH)``.
        collapsed_to_zero: True when the optimum is W = H = 0 (past the threshold).
    """

    loss: str
    bias: str
    value: float
    scale: float
    WHbar: np.ndarray
    WWt: np.ndarray
    b: np.ndarray
    norm_W2: float
    norm_Hbar2: float
    mu: float
    collapsed_to_zero: bool


def _check(K: int, n: int, **lams) -> None:
    if int(K) != K or K < 2:
        raise ValueError(f"K must be an integer >= 2 classes, got {K!r}")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer (samples per class), got {n!r}")
    for name, v in lams.items():
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r} "
                             "(the closed forms need every weight decay > 0)")


def mse_ufm(K: int, n: int, lW: float, lH: float, *, bias: str = "none") -> UFMSolution:
    """MSE UFM minimiser without bias (orthogonal frame) or with a free bias (simplex ETF).

    .. math::

        \\text{none: } W\\bar H = c I,\\quad c = \\max(0, 1 - K\\mu),\\quad
        \\text{value} = K\\mu - (K\\mu)^2/2 \\ (1/2 \\text{ if } K\\mu \\ge 1)

        \\text{free: } W\\bar H = c J,\\ b = 1/K,\\quad
        \\text{value} = \\frac{K-1}{2K}(1-c)^2 + \\mu (K-1) c

    with ``W = sqrt(n lH/lW) Hbar^T``, so ``W W^T = c sqrt(n lH/lW) I`` (resp. ``J``). Needs the
    feature dimension ``d >= K`` (none) or ``d >= K - 1`` (free).

    Raises:
        ValueError: bad sizes, non-positive weight decay, unknown ``bias``.
    """
    _check(K, n, lW=lW, lH=lH)
    mu = math.sqrt(n * lW * lH)
    c = max(0.0, 1.0 - K * mu)
    I = np.eye(K)
    J = I - np.ones((K, K)) / K
    if bias == "none":
        value = 0.5 if K * mu >= 1 else K * mu - (K * mu) ** 2 / 2
        P, b = I, np.zeros(K)
    elif bias == "free":
        value = (K - 1) / (2 * K) * (1 - c) ** 2 + mu * (K - 1) * c
        P, b = J, np.full(K, 1.0 / K)
    else:
        raise ValueError(f"unknown bias {bias!r} for the MSE closed form; valid: none, free "
                         "(the regularised-bias MSE UFM has no closed form here)")
    ratio = math.sqrt(n * lH / lW)
    WWt = c * ratio * P
    return UFMSolution("mse", bias, float(value), c, c * P, WWt, b, float(np.trace(WWt)),
                       float(np.trace(WWt)) * lW / (n * lH), mu, c == 0.0)


def ce_ufm(K: int, n: int, lW: float, lH: float, lb: float = 0.0) -> UFMSolution:
    """CE UFM minimiser (Zhu et al. 2021): a simplex ETF, ``b = 0`` (unique when ``lb > 0``).

    .. math::

        W W^T = a\\frac{K}{K-1} J,\\quad \\bar h_k = \\sqrt{\\lambda_W/(n\\lambda_H)}\\, w_k,\\quad
        a = |w_k|^2 = \\frac{K-1}{K}\\sqrt{\\frac{n\\lambda_H}{\\lambda_W}}
            \\log\\Big(\\frac1\\mu - (K-1)\\Big)

    nonzero only when ``K mu < 1``. With the logit margin ``z = log(1/mu - (K-1))`` the optimal
    value is ``log(1 + (K-1) e^{-z}) + (K-1) mu z`` (``log K`` when ``K mu >= 1``). Needs the
    feature dimension ``d >= K - 1``.
    """
    _check(K, n, lW=lW, lH=lH)
    if not (math.isfinite(lb) and lb >= 0):
        raise ValueError(f"lb must be finite and >= 0, got {lb!r}")
    mu = math.sqrt(n * lW * lH)
    J = np.eye(K) - np.ones((K, K)) / K
    if K * mu < 1:
        z = math.log(1 / mu - (K - 1))
        value = math.log1p((K - 1) * math.exp(-z)) + (K - 1) * mu * z
        a = (K - 1) / K * math.sqrt(n * lH / lW) * z
    else:
        z, a, value = 0.0, 0.0, math.log(K)
    WWt = a * K / (K - 1) * J
    # W Hbar = sqrt(lW/(n lH)) W W^T
    WHbar = math.sqrt(lW / (n * lH)) * WWt
    bias = "regularised" if lb > 0 else "free"
    return UFMSolution("cross_entropy", bias, float(value), a, WHbar, WWt, np.zeros(K),
                       float(K * a), float(K * a) * lW / (n * lH), mu, a == 0.0)


@dataclass(frozen=True)
class ExtendedUFMSolution:
    """Extended-UFM minimiser: ``W2 W1 Hbar = s I`` (linear; ReLU: same optimal value).

    Attributes:
        value: optimal value ``min(1/2, (1/2)(s-1)^2 + (3K/2) tau s^(2/3))``.
        s: the scale of ``W2 W1 Hbar = s I`` (0 past the threshold).
        t: ``s^(1/3)``.
        tau: ``(n lH lW1 lW2)^(1/3)``.
        WHbar ((K, K) ndarray): ``W2 W1 Hbar = s I``.
        value_at_zero: the objective at ``s = 0`` (always 1/2, a local minimum).
        value_at_root: the objective at the largest non-negative root (None when there is none).
        norm_W2_2, norm_W1_2, norm_Hbar2: squared Frobenius norms at the optimum; the three
            penalties are balanced, ``lW2 |W2|^2 = lW1 |W1|^2 = n lH |Hbar|^2 = K tau s^(2/3)``.
    """

    value: float
    s: float
    t: float
    tau: float
    WHbar: np.ndarray
    value_at_zero: float
    value_at_root: float | None
    norm_W2_2: float
    norm_W1_2: float
    norm_Hbar2: float


def extended_ufm_roots(K: int, tau: float) -> list[float]:
    """Non-negative real roots of ``t^4 - t + K tau = 0``, ascending."""
    r = np.roots([1.0, 0.0, 0.0, -1.0, K * tau])
    out = sorted(float(x.real) for x in r if abs(x.imag) < 1e-10 and x.real >= 0)
    return out


def extended_ufm_value(K: int, tau: float, s: float) -> float:
    """The objective at ``W2 W1 Hbar = s I``: ``(1/2)(s-1)^2 + (3K/2) tau s^(2/3)``."""
    return 0.5 * (s - 1) ** 2 + 1.5 * K * tau * s ** (2.0 / 3.0)


def extended_ufm(K: int, n: int, lW2: float, lW1: float, lH: float) -> ExtendedUFMSolution:
    """Extended-UFM minimiser, linear ``W2 W1 H`` (and the optimal value of ``W2 relu(W1 H)``).

    ``s = t^3`` with t the best non-negative root of ``t^4 - t + K tau = 0``, compared against the
    always-local minimum ``s = 0`` (value 1/2). Needs hidden and feature dimensions ``>= K``.
    """
    _check(K, n, lW2=lW2, lW1=lW1, lH=lH)
    tau = (n * lH * lW1 * lW2) ** (1.0 / 3.0)
    roots = extended_ufm_roots(K, tau)
    v0 = 0.5
    t, vr = 0.0, None
    if roots:
        t_r = max(roots)  # the larger root is the local minimum, the smaller a maximum
        vr = extended_ufm_value(K, tau, t_r ** 3)
        if vr < v0:
            t = t_r
    s = t ** 3
    value = min(v0, vr) if vr is not None else v0
    e = K * tau * s ** (2.0 / 3.0)
    return ExtendedUFMSolution(float(value), float(s), float(t), float(tau), s * np.eye(K), v0, vr,
                               e / lW2, e / lW1, e / (n * lH))
