"""Multi-label UFM with the pick-all-label (PAL) cross-entropy, and the tag-wise average measure.

Li, Wang, Li & Qu (ICML 2024, docs/science.md §5.1). K labels; a sample carries a label *set*
S (its multiplicity is |S|). The PAL loss sums the cross-entropy over every label of the set:

.. math::

    \\ell_{\\rm PAL}(z, S) = \\sum_{k \\in S} -\\log\\frac{e^{z_k}}{\\sum_j e^{z_j}} ,

and the UFM objective (features H free, one column per sample, N samples) is

.. math::

    \\frac1N\\sum_{i} \\ell_{\\rm PAL}(W h_i + b, S_i) + \\frac{\\lambda_W}2\\|W\\|_F^2
    + \\frac{\\lambda_H}2\\|H\\|_F^2 + \\frac{\\lambda_b}2\\|b\\|^2 .

The data are *balanced within each multiplicity* (the paper's assumption): every label set of
size m in ``multiplicities`` appears, each with the same number ``per_set`` of samples
(:func:`label_sets`). :func:`fit_multilabel_ufm` minimises the objective with the package's L-BFGS
(:func:`meanfield.deep.ufm.minimise`, float64).

:func:`tagwise_average` measures the "tag-wise average" property: with single-label means mu_k,
their centre mu_G = (1/K) sum_k mu_k, and a set mean mu_S,

.. math::

    a_S = \\frac1{|S|}\\sum_{k\\in S}(\\mu_k - \\mu_G),\\quad
    c_S = \\frac{\\langle \\mu_S - \\mu_G, a_S\\rangle}{\\|a_S\\|^2},\\quad
    \\delta_S = \\frac{\\|\\mu_S - \\mu_G - c_S a_S\\|}{\\|\\mu_S - \\mu_G\\|} ,

``c_S`` the scale and ``delta_S`` the deviation (the sine of the angle between mu_S - mu_G and the
average; 0 exactly when the property holds).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from .ufm import minimise

__all__ = ["label_sets", "multi_hot", "pal_loss", "MultiLabelUFMConfig", "MultiLabelUFMResult",
           "fit_multilabel_ufm", "TagWise", "tagwise_average", "set_means"]


def label_sets(K: int, multiplicities: Sequence[int]) -> list[tuple[int, ...]]:
    """Every label set of every size in ``multiplicities``, by size then lexicographically.

    Raises:
        ValueError: K < 2, a multiplicity outside 1..K-1, repeated multiplicities, or no 1 (the
            single-label means are what the tag-wise average is measured against).
    """
    if int(K) != K or K < 2:
        raise ValueError(f"need K >= 2 labels, got {K!r}")
    ms = [int(m) for m in multiplicities]
    if not ms or any(m != mm for m, mm in zip(ms, multiplicities)) or len(set(ms)) != len(ms):
        raise ValueError(f"multiplicities must be distinct integers, got {tuple(multiplicities)!r}")
    if any(m < 1 or m >= K for m in ms):
        raise ValueError(f"multiplicities must lie in 1..K-1 = 1..{K - 1} (a set of all K labels "
                         f"carries no information); got {tuple(ms)}")
    if 1 not in ms:
        raise ValueError("multiplicities must include 1: the single-label means are the reference "
                         "of the tag-wise average")
    return [S for m in sorted(ms) for S in itertools.combinations(range(int(K)), m)]


def multi_hot(sets: Sequence[Sequence[int]], K: int, *, dtype=torch.float64, device=None) -> Tensor:
    """(len(sets), K) 0/1 matrix: row i has ones at the labels of ``sets[i]``."""
    Y = torch.zeros(len(sets), K, dtype=dtype, device=device)
    for i, S in enumerate(sets):
        Y[i, list(S)] = 1.0
    return Y


def pal_loss(Z: Tensor, Y: Tensor) -> Tensor:
    """PAL cross-entropy of every sample: ``sum_k Y_ik (-log softmax(Z_i)_k)``.

    Args:
        Z ((N, K) Tensor): logits. Y ((N, K) Tensor): multi-hot label sets.

    Returns:
        (N,) Tensor.
    """
    if Z.shape != Y.shape:
        raise ValueError(f"logits {tuple(Z.shape)} and label sets {tuple(Y.shape)} must have one shape")
    return -(Y * torch.log_softmax(Z, dim=1)).sum(1)


@dataclass(frozen=True)
class MultiLabelUFMConfig:
    """A multi-label UFM problem and how to optimise it.

    Attributes:
        lW, lH, lb: weight decays of W, H (summed over samples), b (> 0).
        feature_dim: d; None = K.
        tol_grad: stop when the gradient norm is below this.
        max_iter: the most L-BFGS iterations.
        init_scale: standard deviation of the Gaussian start.
        seed: seed of the start.
        dtype: torch dtype.
    """

    lW: float = 1e-2
    lH: float = 1e-2
    lb: float = 1e-2
    feature_dim: Optional[int] = None
    tol_grad: float = 1e-10
    max_iter: int = 20_000
    init_scale: float = 1.0
    seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        for name in ("lW", "lH", "lb", "tol_grad", "init_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True)
class MultiLabelUFMResult:
    """An optimised multi-label UFM.

    Attributes:
        W ((K, d) Tensor), H ((d, N) Tensor), b ((K,) Tensor): the optimised variables.
        Y ((N, K) Tensor): multi-hot label set of every sample.
        set_index ((N,) Tensor): index into ``sets`` of every sample.
        sets: the label sets (:func:`label_sets`).
        value, grad_norm, iterations, converged: of the optimiser.
        config: the configuration.
    """

    W: Tensor
    H: Tensor
    b: Tensor
    Y: Tensor
    set_index: Tensor
    sets: list
    value: float
    grad_norm: float
    iterations: int
    converged: bool
    config: MultiLabelUFMConfig


def fit_multilabel_ufm(K: int, multiplicities: Sequence[int] = (1, 2), per_set: int = 2,
                       config: MultiLabelUFMConfig = MultiLabelUFMConfig(), *,
                       device=None) -> MultiLabelUFMResult:
    """Minimise the PAL-CE UFM on data balanced within each multiplicity.

    Args:
        K: labels. multiplicities: set sizes present (must include 1).
        per_set: samples per label set (>= 1).
        config: penalties and optimiser.

    Returns:
        :class:`MultiLabelUFMResult` (check ``converged``).
    """
    sets = label_sets(K, multiplicities)
    if int(per_set) != per_set or per_set < 1:
        raise ValueError(f"per_set must be an integer >= 1, got {per_set!r}")
    d = int(config.feature_dim or K)
    idx = torch.arange(len(sets), device=device).repeat_interleave(int(per_set))
    Y = multi_hot(sets, K, dtype=config.dtype, device=device)[idx]
    N = Y.shape[0]
    g = torch.Generator().manual_seed(int(config.seed))
    W = (config.init_scale * torch.randn(K, d, generator=g, dtype=config.dtype)).to(device).requires_grad_()
    H = (config.init_scale * torch.randn(d, N, generator=g, dtype=config.dtype)).to(device).requires_grad_()
    b = torch.zeros(K, dtype=config.dtype, device=device).requires_grad_()

    def objective() -> Tensor:
        data = pal_loss((W @ H).T + b, Y).mean()
        return data + 0.5 * (config.lW * (W ** 2).sum() + config.lH * (H ** 2).sum()
                             + config.lb * (b ** 2).sum())

    res = minimise(objective, [W, H, b], method="lbfgs", lr=1.0, tol_grad=config.tol_grad,
                   max_iter=config.max_iter)
    return MultiLabelUFMResult(W.detach(), H.detach(), b.detach(), Y, idx, sets, res.value,
                               res.grad_norm, res.iterations, res.converged, config)


def set_means(features: Tensor, set_index: Tensor, num_sets: int) -> Tensor:
    """(num_sets, p) mean feature of every label set; features (n, p), set_index (n,).

    Raises:
        ValueError: NaN/inf features, a set without samples, shape mismatch.
    """
    if features.ndim != 2 or set_index.shape != (features.shape[0],):
        raise ValueError(f"features must be (n, p) and set_index (n,); got {tuple(features.shape)} "
                         f"and {tuple(set_index.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf; check the training run")
    count = torch.bincount(set_index, minlength=num_sets)
    if count.numel() != num_sets or (count == 0).any():
        raise ValueError(f"every label set needs samples (counts {count.tolist()}); "
                         "give per_set >= 1 for every set")
    S = torch.zeros(num_sets, features.shape[1], dtype=features.dtype, device=features.device)
    return S.index_add_(0, set_index, features) / count[:, None].to(features.dtype)


@dataclass(frozen=True)
class TagWise:
    """The tag-wise average measure of every label set of size >= 2.

    Attributes:
        sizes ((S,) Tensor): multiplicity |S| of each measured set.
        scale ((S,) Tensor): c_S. deviation ((S,) Tensor): delta_S.
    """

    sizes: Tensor
    scale: Tensor
    deviation: Tensor

    def by_size(self) -> dict[int, tuple[float, float, float]]:
        """size -> (mean scale, max |scale - mean scale| over the sets of that size, max deviation)."""
        out = {}
        for m in sorted(set(self.sizes.tolist())):
            sel = self.sizes == m
            c = self.scale[sel]
            out[int(m)] = (float(c.mean()), float((c - c.mean()).abs().max()),
                           float(self.deviation[sel].max()))
        return out


def tagwise_average(means: Tensor, sets: Sequence[Sequence[int]], K: int) -> TagWise:
    """Scale and deviation of every multi-label set mean from the average of its labels' means.

    Args:
        means ((len(sets), p) Tensor): set means (:func:`set_means`), ``sets`` including every
            single-label set (k,).
        sets: the label sets, as in :func:`label_sets`.
        K: labels.

    Returns:
        :class:`TagWise` over the sets of size >= 2.
    """
    pos = {tuple(S): i for i, S in enumerate(sets)}
    if any((k,) not in pos for k in range(K)):
        raise ValueError("every single-label set (k,) must be present to measure the tag-wise average")
    single = means[[pos[(k,)] for k in range(K)]]
    centre = single.mean(0)
    sizes, scale, dev = [], [], []
    for S, i in pos.items():
        if len(S) < 2:
            continue
        a = (single[list(S)] - centre).mean(0)
        v = means[i] - centre
        c = (v @ a) / (a @ a)
        sizes.append(len(S))
        scale.append(c)
        dev.append((v - c * a).norm() / v.norm())
    if not sizes:
        raise ValueError("no label set of size >= 2: nothing to measure")
    return TagWise(torch.tensor(sizes), torch.stack(scale), torch.stack(dev))
