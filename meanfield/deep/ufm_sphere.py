"""The UFM with normalised features and classifier rows: Riemannian gradient descent on spheres.

Yaras, Wang, Zhu, Balzano & Qu (NeurIPS 2022, docs/science.md §5.4) constrain every feature column
h_i and every classifier row w_k to the unit sphere and minimise the cross-entropy with a
temperature (no bias, no weight decay):

.. math::

    f(W, H) = \\frac1N \\sum_{i=1}^N \\mathrm{CE}(\\tau\\, W h_i, y_i),\\qquad
    \\|w_k\\| = \\|h_i\\| = 1 ,

a problem on the product of spheres ``(S^{d-1})^K x (S^{d-1})^N`` (the oblique manifolds OB(d, K)
and OB(d, N)). ``tau`` multiplies the logits (the authors' code writes the features as
``tau * h / |h|``). At a simplex ETF with ``h_i = w_{y_i}`` the logits are ``tau`` for the own
class and ``-tau/(K-1)`` for the others, so the value there is

.. math::

    f_{\\rm ETF} = \\log\\Big(1 + (K-1)\\, e^{-\\tau K/(K-1)}\\Big)

(:func:`etf_value`), the global minimum on balanced data with ``d >= K - 1``.

:func:`fit_sphere_ufm` runs Riemannian gradient descent, float64: the Euclidean gradient of every
row / column is projected on the tangent space of its sphere, ``g - <g, x> x``, a step is taken and
every row / column is renormalised (the retraction ``x -> x / |x|``); the step starts at ``lr`` and
is halved until the Armijo condition ``f_new <= f - 1e-4 step |grad|^2`` holds (it is then allowed
to grow again by 2x per iteration). It stops when the norm of the Riemannian gradient is below
``tol_grad``.

:class:`NormalizedFeatures` wraps a model of :mod:`meanfield.deep.models` so that its penultimate
features are ``scale * h / |h|`` (the deep-net side of the same question).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .models import _Base
from .ufm import FeatureFit

__all__ = ["SphereUFMConfig", "SphereUFMResult", "fit_sphere_ufm", "sphere_objective", "etf_value",
           "riemannian_gradient", "NormalizedFeatures"]


@dataclass(frozen=True)
class SphereUFMConfig:
    """A normalised UFM problem and how to optimise it.

    Attributes:
        tau: temperature, multiplies the logits (> 0).
        feature_dim: d (the ETF needs d >= K - 1); None = K.
        lr: initial (and largest per-iteration growth reference) Riemannian step.
        tol_grad: stop when the Riemannian gradient norm is below this.
        max_iter: the most iterations.
        seed: seed of the random start (Gaussian rows / columns, normalised: uniform on spheres).
        dtype: torch dtype (float64 for the tolerances of the tests).
    """

    tau: float = 5.0
    feature_dim: int | None = None
    lr: float = 1.0
    tol_grad: float = 1e-9
    max_iter: int = 20_000
    seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        for name in ("tau", "lr", "tol_grad"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (int(self.max_iter) == self.max_iter and self.max_iter >= 0):
            raise ValueError(f"max_iter must be an integer >= 0, got {self.max_iter!r}")
        if self.feature_dim is not None and not (int(self.feature_dim) == self.feature_dim
                                                 and self.feature_dim >= 2):
            raise ValueError(f"feature_dim must be an integer >= 2 (or None for K), got "
                             f"{self.feature_dim!r}")


@dataclass(frozen=True)
class SphereUFMResult(FeatureFit):
    """An optimised normalised UFM: the fields of :class:`~meanfield.deep.ufm.FeatureFit` and two more.

    Attributes:
        W ((K, d) Tensor): unit classifier rows; H ((d, N) Tensor): unit feature columns.
        labels ((N,) Tensor): class of every column (class by class).
        value: f(W, H); grad_norm: Riemannian gradient norm there.
        iterations: iterations taken; converged: ``grad_norm <= tol_grad``.
        config: the configuration.
        trace: ``(iteration, value, grad_norm)`` every ``record_every`` iterations and at the end
            (empty when not recorded).
    """

    config: SphereUFMConfig
    trace: tuple = ()


def etf_value(K: int, tau: float) -> float:
    """The objective at a simplex ETF with ``h_i = w_{y_i}``: ``log(1 + (K-1) exp(-tau K/(K-1)))``."""
    if int(K) != K or K < 2:
        raise ValueError(f"need K >= 2 classes, got {K!r}")
    return math.log1p((K - 1) * math.exp(-tau * K / (K - 1)))


def sphere_objective(W: Tensor, H: Tensor, labels: Tensor, tau: float) -> Tensor:
    """``(1/N) sum_i CE(tau W h_i, y_i)`` (a 0-dim tensor); W (K, d), H (d, N), labels (N,)."""
    return F.cross_entropy(tau * (W @ H).T, labels)


def _project(X: Tensor, G: Tensor, dim: int) -> Tensor:
    """Tangent projection ``G - <G, X> X`` of every row (dim=1) or column (dim=0) of unit X."""
    return G - (G * X).sum(dim, keepdim=True) * X


def riemannian_gradient(W: Tensor, H: Tensor, labels: Tensor, tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """Value and Riemannian gradients (rows of W, columns of H on their spheres), explicit.

    With ``Z = tau W H``, ``P = softmax`` of every column of Z and ``G = (P - Y) / N``, the Euclidean
    gradients are ``tau G H^T`` and ``tau W^T G`` (autograd is the test oracle); each row / column
    is then projected on the tangent space of its sphere.

    Returns:
        (value (0-dim), grad_W (K, d), grad_H (d, N)).
    """
    N = H.shape[1]
    Z = tau * (W @ H)
    logP = torch.log_softmax(Z, dim=0)
    idx = torch.arange(N, device=H.device)
    v = -logP[labels, idx].mean()
    G = logP.exp()
    G[labels, idx] -= 1.0
    G /= N
    return v, _project(W, tau * (G @ H.T), 1), _project(H, tau * (W.T @ G), 0)


def _unit(X: Tensor, dim: int) -> Tensor:
    return X / X.norm(dim=dim, keepdim=True)


def fit_sphere_ufm(K: int, n: int, config: SphereUFMConfig = SphereUFMConfig(), *,
                   device=None, record_every: int = 0) -> SphereUFMResult:
    """Riemannian gradient descent on the normalised UFM, balanced: K classes, n samples each.

    ``record_every`` > 0 keeps ``(iteration, value, grad_norm)`` every this many iterations.

    Returns:
        :class:`SphereUFMResult` (check ``converged``).

    Raises:
        ValueError: bad sizes.
    """
    if int(K) != K or K < 2 or int(n) != n or n < 1:
        raise ValueError(f"need K >= 2 classes and n >= 1 samples per class; got K={K!r}, n={n!r}")
    K, n = int(K), int(n)
    d = int(config.feature_dim or K)
    g = torch.Generator().manual_seed(int(config.seed))
    W = _unit(torch.randn(K, d, generator=g, dtype=config.dtype), 1).to(device)
    H = _unit(torch.randn(d, K * n, generator=g, dtype=config.dtype), 0).to(device)
    labels = torch.arange(K, device=device).repeat_interleave(n)
    tau, step = float(config.tau), float(config.lr)
    v, gW, gH = riemannian_gradient(W, H, labels, tau)
    gn2 = float((gW ** 2).sum() + (gH ** 2).sum())
    it, trace = 0, []
    while math.sqrt(gn2) > config.tol_grad and it < config.max_iter:
        if record_every and it % record_every == 0:
            trace.append((it, float(v), math.sqrt(gn2)))
        while True:
            W_new, H_new = _unit(W - step * gW, 1), _unit(H - step * gH, 0)
            v_new = sphere_objective(W_new, H_new, labels, tau)
            if float(v_new) <= float(v) - 1e-4 * step * gn2 or step < 1e-12:
                break
            step *= 0.5
        W, H = W_new, H_new
        v, gW, gH = riemannian_gradient(W, H, labels, tau)
        gn2 = float((gW ** 2).sum() + (gH ** 2).sum())
        step = min(2.0 * step, float(config.lr) * 8.0)
        it += 1
        if not math.isfinite(float(v)):
            raise ValueError(f"Riemannian gradient descent diverged at iteration {it}; lower lr")
    gnorm = math.sqrt(gn2)
    if record_every:
        trace.append((it, float(v), gnorm))
    return SphereUFMResult(W, H, labels, float(v), gnorm, it, gnorm <= config.tol_grad, config,
                           tuple(trace))


class NormalizedFeatures(_Base):
    """A model whose penultimate features are put on a sphere of radius ``scale``.

    Wraps a model of :mod:`meanfield.deep.models` (``features``, ``classifier``, ``layers``):
    ``features(x) = scale * h(x) / |h(x)|`` with ``h`` the wrapped model's features, the same
    classifier, the same parameters and layers (so :func:`meanfield.deep.train.train` and the NC
    metrics use it unchanged). ``scale`` plays the role of the temperature ``tau``.

    Args:
        base: the wrapped model.
        scale: radius of the feature sphere (> 0).
        eps: added to the norm (a dead feature vector maps to 0 instead of NaN).
    """

    def __init__(self, base: nn.Module, scale: float = 1.0, eps: float = 1e-12):
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale (the feature radius) must be a finite number > 0, got {scale!r}")
        for attr in ("features", "classifier"):
            if not hasattr(base, attr):
                raise ValueError(f"the wrapped model needs .{attr} (a model of meanfield.deep.models)")
        self.base, self.scale, self.eps = base, float(scale), float(eps)
        self.classifier = base.classifier

    def features(self, x: Tensor) -> Tensor:
        h = self.base.features(x)
        return self.scale * h / (h.norm(dim=1, keepdim=True) + self.eps)

    def layers(self) -> list[list[nn.Parameter]]:
        return self.base.layers() if hasattr(self.base, "layers") else [list(self.base.parameters())]
