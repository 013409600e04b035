"""The UFM and the layer-peeled model on imbalanced classes, every sample a free feature.

Classes ``0..K-1`` with ``counts[k]`` samples each, ordered class by class; W (K, d), H (d, N),
no bias, cross-entropy averaged over the N samples, float64, optimised by
:func:`meanfield.deep.ufm.minimise` (L-BFGS, restarted until the gradient norm is below ``tol_grad``).

- :func:`fit_imbalanced_ufm`: weight decay, ``(1/N) sum_i CE(W h_i, y_i) + lam_W/2 |W|^2 + lam_H/2 |H|^2``
  (the same convention as :mod:`meanfield.deep.ufm`: lam_H on the sum over samples).
- :func:`fit_lpm`: Fang et al.'s norm-constrained layer-peeled model,
  ``(1/K) sum_k |w_k|^2 <= E_W`` and ``(1/K) sum_k (1/n_k) sum_i |h_{k,i}|^2 <= E_H``, both
  active at the optimum (the loss falls along any scaling up of separating logits): W and H are
  parametrised on the constraint spheres, ``W = sqrt(K E_W) V / |V|_F`` and H the free ``G``
  rescaled to the feature budget, and ``(V, G)`` minimised without constraints.

Closed forms and the convex programs they are checked against: :mod:`meanfield.theory.imbalance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from ..threads import torch_threads
from .ufm import FeatureFit, minimise

__all__ = ["ImbalancedFit", "fit_imbalanced_ufm", "fit_lpm", "imbalanced_labels"]


@dataclass(frozen=True)
class ImbalancedFit(FeatureFit):
    """An optimised model: W (K, d), H (d, N), labels (N,), objective value, gradient norm,
    iterations, converged (gradient norm <= tol_grad); the fields of :class:`~meanfield.deep.ufm.FeatureFit`."""


def one_thread():
    """One torch thread (see :mod:`meanfield.threads`)."""
    return torch_threads(1)


def imbalanced_labels(counts: Sequence[int]) -> Tensor:
    """(N,) int64 labels ``[0]*counts[0] + [1]*counts[1] + ...``. Raises ValueError on an empty class."""
    counts = [int(c) for c in counts]
    if len(counts) < 2 or min(counts) < 1:
        raise ValueError(f"counts must give two or more classes, each >= 1 sample, got {counts}")
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def _init(K: int, d: int, N: int, seed: int, scale: float):
    g = torch.Generator().manual_seed(int(seed))
    W = (scale * torch.randn(K, d, generator=g, dtype=torch.float64)).requires_grad_(True)
    H = (scale * torch.randn(d, N, generator=g, dtype=torch.float64)).requires_grad_(True)
    return W, H


def _check_positive(**kw) -> None:
    for k, v in kw.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be finite and > 0, got {v!r}")


def fit_imbalanced_ufm(counts: Sequence[int], lam_w: float, lam_h: float, *, d: int | None = None,
                       seed: int = 0, tol_grad: float = 1e-10, max_iter: int = 20_000,
                       init_scale: float = 0.1) -> ImbalancedFit:
    """Minimise the weight-decay CE UFM on imbalanced classes (feature dim ``d``, default K)."""
    _check_positive(lam_w=lam_w, lam_h=lam_h, tol_grad=tol_grad)
    y = imbalanced_labels(counts)
    K, N = len(counts), len(y)
    W, H = _init(K, d or K, N, seed, init_scale)

    def fn():
        return (F.cross_entropy((W @ H).T, y, reduction="mean") + 0.5 * lam_w * (W ** 2).sum()
                + 0.5 * lam_h * (H ** 2).sum())

    with one_thread():
        r = minimise(fn, [W, H], method="lbfgs", lr=1.0, tol_grad=tol_grad, max_iter=max_iter)
    return ImbalancedFit.from_minimise(W.detach(), H.detach(), y, r)


def lpm_scaled(V: Tensor, G: Tensor, y: Tensor, counts: Sequence[int], E_W: float, E_H: float):
    """(W, H) on the LPM's constraint spheres from free (V (K, d), G (d, N))."""
    K = len(counts)
    inv_n = 1.0 / torch.as_tensor([float(c) for c in counts], dtype=G.dtype)[y]
    W = V * math.sqrt(K * E_W) / V.norm()
    H = G * torch.sqrt(K * E_H / ((G ** 2).sum(0) * inv_n).sum())
    return W, H


def fit_lpm(counts: Sequence[int], E_W: float, E_H: float, *, d: int | None = None, seed: int = 0,
            tol_grad: float = 1e-10, max_iter: int = 20_000, init_scale: float = 1.0) -> ImbalancedFit:
    """Minimise the norm-constrained layer-peeled model (both constraints active) on imbalanced classes."""
    _check_positive(E_W=E_W, E_H=E_H, tol_grad=tol_grad)
    y = imbalanced_labels(counts)
    K, N = len(counts), len(y)
    V, G = _init(K, d or K, N, seed, init_scale)

    def fn():
        W, H = lpm_scaled(V, G, y, counts, E_W, E_H)
        return F.cross_entropy((W @ H).T, y, reduction="mean")

    with one_thread():
        r = minimise(fn, [V, G], method="lbfgs", lr=1.0, tol_grad=tol_grad, max_iter=max_iter)
    with torch.no_grad():
        W, H = lpm_scaled(V, G, y, counts, E_W, E_H)
    return ImbalancedFit.from_minimise(W, H, y, r)
