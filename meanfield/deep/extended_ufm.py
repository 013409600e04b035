"""The extended UFM (Tirer & Bruna 2022): one more layer, linear or ReLU, on free features.

.. math::

    \\frac{1}{2N}\\|W_2\\, \\phi(W_1 H) - Y\\|_F^2 + \\frac{\\lambda_{W_2}}{2}\\|W_2\\|_F^2
    + \\frac{\\lambda_{W_1}}{2}\\|W_1\\|_F^2 + \\frac{\\lambda_H}{2}\\|H\\|_F^2,
    \\qquad \\phi \\in \\{\\mathrm{id}, \\mathrm{relu}\\}

Closed form: :func:`meanfield.theory.ufm.extended_ufm`. ``s = 0`` (W = H = 0) is always a local
minimum, so the initialisation must not be too small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .ufm import class_means, minimise

__all__ = ["ExtendedUFMConfig", "ExtendedUFMResult", "fit_extended_ufm", "extended_ufm_objective"]

_ACTS = ("linear", "relu")


@dataclass(frozen=True)
class ExtendedUFMConfig:
    """An extended-UFM problem and its optimiser (see :class:`meanfield.deep.ufm.UFMConfig`).

    Attributes:
        activation: ``linear`` or ``relu`` between W1 and W2.
        lW2, lW1, lH: weight decays.
        hidden_dim, feature_dim: sizes of W1 (hidden x feature); default K + 1 each.
    """

    activation: str = "linear"
    lW2: float = 5e-3
    lW1: float = 5e-3
    lH: float = 5e-3
    hidden_dim: Optional[int] = None
    feature_dim: Optional[int] = None
    method: str = "lbfgs"
    lr: float = 0.5
    tol_grad: float = 1e-9
    max_iter: int = 20_000
    init_scale: float = 1.0
    seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        if self.activation not in _ACTS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: {', '.join(_ACTS)}")
        if self.method not in ("lbfgs", "gd"):
            raise ValueError(f"unknown method {self.method!r}; valid: lbfgs, gd")
        for name in ("lW2", "lW1", "lH"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")


@dataclass(frozen=True)
class ExtendedUFMResult:
    """An optimised extended UFM.

    Attributes:
        W2 ((K, h) Tensor), W1 ((h, d) Tensor), H ((d, N) Tensor): the variables.
        Hbar ((d, K) Tensor): class means of H.
        hidden_means ((h, K) Tensor): ``phi(W1 Hbar)`` (equal to the class means of phi(W1 H)
            once H has collapsed).
        WHbar ((K, K) Tensor): ``W2 phi(W1 Hbar)``.
        value, grad_norm, iterations, converged, config: as for the UFM.
    """

    W2: Tensor
    W1: Tensor
    H: Tensor
    Hbar: Tensor
    hidden_means: Tensor
    WHbar: Tensor
    labels: Tensor
    value: float
    grad_norm: float
    iterations: int
    converged: bool
    config: ExtendedUFMConfig


def _phi(act: str, Z: Tensor) -> Tensor:
    return torch.relu(Z) if act == "relu" else Z


def extended_ufm_objective(W2: Tensor, W1: Tensor, H: Tensor, labels: Tensor,
                           config: ExtendedUFMConfig) -> Tensor:
    """The extended-UFM objective (0-dim tensor)."""
    K, N = W2.shape[0], H.shape[1]
    Z = W2 @ _phi(config.activation, W1 @ H)
    Y = F.one_hot(labels, K).T.to(Z.dtype)
    return (0.5 * ((Z - Y) ** 2).sum() / N + 0.5 * config.lW2 * (W2 ** 2).sum()
            + 0.5 * config.lW1 * (W1 ** 2).sum() + 0.5 * config.lH * (H ** 2).sum())


def fit_extended_ufm(K: int, n: int, config: ExtendedUFMConfig = ExtendedUFMConfig(), *,
                     device=None) -> ExtendedUFMResult:
    """Optimise a balanced extended UFM with K classes and n samples per class.

    Raises:
        ValueError: bad sizes or configuration.
    """
    if int(K) != K or K < 2 or int(n) != n or n < 1:
        raise ValueError(f"need K >= 2 classes and n >= 1 samples per class; got K={K!r}, n={n!r}")
    h = config.hidden_dim or K + 1
    d = config.feature_dim or K + 1
    g = torch.Generator().manual_seed(int(config.seed))
    kw = dict(dtype=config.dtype)
    s = config.init_scale
    W2 = (s * torch.randn(K, h, generator=g, **kw)).to(device).requires_grad_()
    W1 = (s * torch.randn(h, d, generator=g, **kw)).to(device).requires_grad_()
    H = (s * torch.randn(d, K * n, generator=g, **kw)).to(device).requires_grad_()
    labels = torch.arange(K, device=device).repeat_interleave(n)
    res = minimise(lambda: extended_ufm_objective(W2, W1, H, labels, config), [W2, W1, H],
                   method=config.method, lr=config.lr, tol_grad=config.tol_grad,
                   max_iter=config.max_iter)
    W2, W1, H = W2.detach(), W1.detach(), H.detach()
    Hbar = class_means(H, labels, K)
    hid = _phi(config.activation, W1 @ Hbar)
    return ExtendedUFMResult(W2, W1, H, Hbar, hid, W2 @ hid, labels, res.value, res.grad_norm,
                             res.iterations, res.converged, config)
