"""The unconstrained features model (UFM): features H as free parameters, optimised to high precision.

Balanced data, K classes, n samples per class (N = K n), ordered class by class:
``y = [0]*n + [1]*n + ...``.

.. math::

    \\text{MSE: } \\frac{1}{2N}\\|W H + b 1^T - Y\\|_F^2 + \\frac{\\lambda_W}{2}\\|W\\|_F^2
    + \\frac{\\lambda_H}{2}\\|H\\|_F^2 + \\frac{\\lambda_b}{2}\\|b\\|^2

    \\text{CE: } \\frac1N\\sum_i \\mathrm{CE}(W h_i + b, y_i) + \\text{the same penalties}

``label_smoothing`` (smoothing ``alpha``) and ``focal`` (focusing ``gamma``) replace CE by, with
``p = softmax(z)`` and ``q = (1 - alpha) e_y + alpha 1/K``,

.. math::

    \\ell_{LS}(z, y) = -\\sum_k q_k \\log p_k, \\qquad
    \\ell_{FL}(z, y) = -(1 - p_y)^{\\gamma} \\log p_y

(:func:`label_smoothing_loss`, :func:`focal_loss`; alpha = 0 and gamma = 0 are CE).

``bias``: ``none`` (b = 0, fixed), ``free`` (b trained, not penalised), ``regularised``
(b trained, penalty ``lb``). Closed forms: :mod:`meanfield.theory.ufm`.

Optimisers (full batch, float64 by default): ``lbfgs`` (torch L-BFGS with a strong-Wolfe line
search, restarted until the gradient norm is below ``tol_grad``) or ``gd`` (plain gradient
descent with a fixed step, no restarts, until the gradient norm is below ``tol_grad``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from ..losses import at_label

__all__ = ["UFMConfig", "UFMResult", "fit_ufm", "ufm_objective", "minimise", "MinimiseResult",
           "FeatureFit", "class_means", "label_smoothing_loss", "focal_loss"]

_LOSSES = ("mse", "cross_entropy", "label_smoothing", "focal")
_BIASES = ("none", "free", "regularised")
_METHODS = ("lbfgs", "gd")


@dataclass(frozen=True)
class UFMConfig:
    """A UFM problem and how to optimise it.

    Attributes:
        loss: ``mse``, ``cross_entropy``, ``label_smoothing`` or ``focal``.
        bias: ``none``, ``free`` or ``regularised``.
        lW, lH, lb: weight decays of W, H (summed over samples), b (``regularised`` only).
        feature_dim: d; default K + 1 (the closed forms need d >= K for MSE without bias).
        method: ``lbfgs`` or ``gd``.
        lr: the step of ``gd``.
        tol_grad: stop when the Euclidean norm of the full gradient is below this.
        max_iter: the most iterations (L-BFGS: inner iterations in all).
        init_scale: standard deviation of the Gaussian initialisation.
        seed: seed of the initialisation.
        dtype: torch dtype (float64 for the precision the closed forms are tested at).
        smoothing: alpha of ``label_smoothing``, in [0, 1).
        focal_gamma: gamma >= 0 of ``focal``.
    """

    loss: str = "mse"
    bias: str = "none"
    lW: float = 5e-3
    lH: float = 5e-3
    lb: float = 0.0
    feature_dim: Optional[int] = None
    method: str = "lbfgs"
    lr: float = 0.5
    tol_grad: float = 1e-9
    max_iter: int = 20_000
    init_scale: float = 1.0
    seed: int = 0
    dtype: torch.dtype = torch.float64
    smoothing: float = 0.1
    focal_gamma: float = 2.0

    def __post_init__(self):
        for name, valid in (("loss", _LOSSES), ("bias", _BIASES), ("method", _METHODS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        for name in ("lW", "lH", "lb"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
        if self.bias == "regularised" and self.lb <= 0:
            raise ValueError("bias='regularised' needs lb > 0; use bias='free' for an unpenalised bias")
        for name in ("lr", "tol_grad", "init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not (math.isfinite(self.smoothing) and 0 <= self.smoothing < 1):
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing!r}")
        if not (math.isfinite(self.focal_gamma) and self.focal_gamma >= 0):
            raise ValueError(f"focal_gamma must be finite and >= 0, got {self.focal_gamma!r}")


@dataclass(frozen=True)
class MinimiseResult:
    """Outcome of :func:`minimise`: final value, gradient norm, iterations, converged flag."""

    value: float
    grad_norm: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class FeatureFit:
    """An optimised free-features model without bias: the variables and how the optimiser ended.

    The result type shared by the UFM variants (:class:`meanfield.deep.ufm_imbalanced.ImbalancedFit`,
    :class:`meanfield.deep.ufm_sphere.SphereUFMResult` extend it with their own fields).

    Attributes:
        W ((K, d) Tensor): the classifier rows; H ((d, N) Tensor): the features, a column a sample.
        labels ((N,) Tensor): class of every column of H.
        value: the objective at (W, H).
        grad_norm: norm of its gradient there (the optimiser's: Riemannian on spheres).
        iterations: iterations taken; converged: ``grad_norm <= tol_grad``.
    """

    W: Tensor
    H: Tensor
    labels: Tensor
    value: float
    grad_norm: float
    iterations: int
    converged: bool

    @classmethod
    def from_minimise(cls, W: Tensor, H: Tensor, labels: Tensor, res: MinimiseResult, **extra):
        """The fit of ``(W, H, labels)`` with the outcome ``res`` of :func:`minimise` (``extra``:
        the fields a subclass adds)."""
        return cls(W, H, labels, res.value, res.grad_norm, res.iterations, res.converged, **extra)


@dataclass(frozen=True)
class UFMResult:
    """An optimised UFM.

    Attributes:
        W ((K, d) Tensor), H ((d, N) Tensor), b ((K,) Tensor): the optimised variables.
        Hbar ((d, K) Tensor): class means of H.
        labels ((N,) Tensor): class of every column of H.
        value: the objective at (W, H, b).
        grad_norm: Euclidean norm of its gradient there.
        iterations: iterations taken; converged: ``grad_norm <= tol_grad``.
        config: the configuration.
    """

    W: Tensor
    H: Tensor
    b: Tensor
    Hbar: Tensor
    labels: Tensor
    value: float
    grad_norm: float
    iterations: int
    converged: bool
    config: UFMConfig


def class_means(H: Tensor, labels: Tensor, K: int) -> Tensor:
    """(d, K) Tensor: the mean of the columns of ``H (d, N)`` in each class."""
    S = torch.zeros(H.shape[0], K, dtype=H.dtype, device=H.device).index_add_(1, labels, H)
    return S / torch.bincount(labels, minlength=K).to(H.dtype)


def label_smoothing_loss(f: Tensor, y: Tensor, smoothing: float) -> Tensor:
    """Per-sample label-smoothing cross-entropy ``-sum_k q_k log softmax(f)_k``.

    Args:
        f ((..., n, K) Tensor): logits; y ((..., n) Tensor): classes; smoothing: alpha in [0, 1).

    Returns:
        (..., n) Tensor, ``(1 - alpha) CE + alpha mean_k(-log p_k)``.
    """
    logp = torch.log_softmax(f, dim=-1)
    nll = -at_label(logp, y)
    return (1.0 - smoothing) * nll - smoothing * logp.mean(-1)


def focal_loss(f: Tensor, y: Tensor, gamma: float) -> Tensor:
    """Per-sample focal loss ``-(1 - p_y)^gamma log p_y``, ``p = softmax(f)`` (Lin et al. 2017).

    Args:
        f ((..., n, K) Tensor): logits; y ((..., n) Tensor): classes; gamma: focusing >= 0.

    Returns:
        (..., n) Tensor.
    """
    logpy = at_label(torch.log_softmax(f, dim=-1), y)
    return -(-torch.expm1(logpy)).clamp_min(0.0) ** gamma * logpy


def ufm_objective(W: Tensor, H: Tensor, b: Tensor, labels: Tensor, config: UFMConfig) -> Tensor:
    """The UFM objective (a 0-dim tensor); ``Z = W H + b`` are the logits/outputs."""
    K, N = W.shape[0], H.shape[1]
    Z = W @ H + b[:, None]
    if config.loss == "mse":
        Y = F.one_hot(labels, K).T.to(Z.dtype)
        data = 0.5 * ((Z - Y) ** 2).sum() / N
    elif config.loss == "label_smoothing":
        data = label_smoothing_loss(Z.T, labels, config.smoothing).sum() / N
    elif config.loss == "focal":
        data = focal_loss(Z.T, labels, config.focal_gamma).sum() / N
    else:
        data = F.cross_entropy(Z.T, labels, reduction="sum") / N
    reg = 0.5 * config.lW * (W ** 2).sum() + 0.5 * config.lH * (H ** 2).sum()
    if config.bias == "regularised":
        reg = reg + 0.5 * config.lb * (b ** 2).sum()
    return data + reg


def minimise(fn: Callable[[], Tensor], params: Sequence[Tensor], *, method: str, lr: float,
             tol_grad: float, max_iter: int) -> MinimiseResult:
    """Minimise ``fn()`` over ``params`` (leaf tensors with ``requires_grad``), full batch.

    ``lbfgs``: torch L-BFGS, strong-Wolfe line search, history 100, restarted (fresh history)
    until the gradient norm is below ``tol_grad`` or ``max_iter`` inner iterations are spent.
    ``gd``: ``theta <- theta - lr * grad`` until the gradient norm is below ``tol_grad``.
    """
    params = list(params)

    def value_and_grad() -> tuple[float, float]:
        for p in params:
            p.grad = None
        v = fn()
        v.backward()
        g = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
        return float(v.detach()), g

    if method == "gd":
        it = 0
        v, g = value_and_grad()
        while g > tol_grad and it < max_iter:
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
            v, g = value_and_grad()
            if not math.isfinite(v):
                raise ValueError(f"gradient descent diverged at iteration {it} (value {v}); "
                                 "use a smaller lr")
            it += 1
        return MinimiseResult(v, g, it, g <= tol_grad)
    if method != "lbfgs":
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(_METHODS)}")
    used = 0
    v, g = value_and_grad()
    while g > tol_grad and used < max_iter:
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=min(2000, max_iter - used),
                                tolerance_grad=tol_grad / 10, tolerance_change=1e-30,
                                history_size=100, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            val = fn()
            val.backward()
            return val

        opt.step(closure)
        n_it = opt.state[opt._params[0]].get("n_iter", 1)
        v_new, g_new = value_and_grad()
        used += max(1, n_it)
        stalled = n_it <= 1 and g_new >= g * (1 - 1e-12)
        v, g = v_new, g_new
        if stalled:
            break
    return MinimiseResult(v, g, used, g <= tol_grad)


def fit_ufm(K: int, n: int, config: UFMConfig = UFMConfig(), *, device=None) -> UFMResult:
    """Optimise a balanced UFM with K classes and n samples per class.

    Returns:
        :class:`UFMResult`; check ``converged`` (the gradient norm is stated in ``grad_norm``).

    Raises:
        ValueError: bad sizes or configuration.
    """
    if int(K) != K or K < 2 or int(n) != n or n < 1:
        raise ValueError(f"need K >= 2 classes and n >= 1 samples per class; got K={K!r}, n={n!r}")
    d = config.feature_dim or K + 1
    N = K * n
    g = torch.Generator().manual_seed(int(config.seed))
    kw = dict(dtype=config.dtype)
    W = (config.init_scale * torch.randn(K, d, generator=g, **kw)).to(device).requires_grad_()
    H = (config.init_scale * torch.randn(d, N, generator=g, **kw)).to(device).requires_grad_()
    b = torch.zeros(K, **kw, device=device).requires_grad_(config.bias != "none")
    labels = torch.arange(K, device=device).repeat_interleave(n)
    params = [W, H] + ([b] if config.bias != "none" else [])
    res = minimise(lambda: ufm_objective(W, H, b, labels, config), params, method=config.method,
                   lr=config.lr, tol_grad=config.tol_grad, max_iter=config.max_iter)
    W, H, b = W.detach(), H.detach(), b.detach()
    return UFMResult(W, H, b, class_means(H, labels, K), labels, res.value, res.grad_norm,
                     res.iterations, res.converged, config)
