"""Singular values behind the ranks: centred means, classifier, every layer of a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..theory.etf import centred_basis
from .core import as_features, classifier as _classifier, labels_weights


@dataclass(frozen=True)
class Spectra:
    """Singular values (each a 1-d Tensor, descending).

    Attributes:
        means ((C-1,) Tensor): of the centred class means M~ (p, C) on the complement of the ones
            vector (its C-th singular value is always 0); zeros included when rank < C - 1.
        classifier ((min(C, p),) Tensor): of W (raw), or None.
        layers: layer names (empty without a model).
        layer_means: ``means`` at every layer.
        layer_features: of the mass-weighted, globally centred feature matrix
            ``diag(sqrt p) (H - sum_j p_j h_j)`` at every layer (the square roots of the eigenvalues
            of the total covariance).
        layer_weights: of the weight that produces every layer (conv kernels flattened to
            (out, in * k * k)), or None where a layer has no weight (pooling).
    """

    means: Tensor
    classifier: Optional[Tensor] = None
    layers: tuple = ()
    layer_means: tuple = ()
    layer_features: tuple = ()
    layer_weights: tuple = ()


def numerical_rank(sigma: Tensor, rtol: float) -> int:
    """#{i : sigma_i > rtol * sigma_1} (0 for a zero spectrum)."""
    sigma = torch.as_tensor(sigma)
    if sigma.numel() == 0 or not sigma.max() > 0:
        return 0
    return int((sigma > rtol * sigma.max()).sum())


def effective_rank(sigma: Tensor) -> Optional[float]:
    """Entropy effective rank (Roy & Vetterli 2007), None for a zero spectrum.

    .. math::

        \\operatorname{erank} = \\exp\\Big(-\\sum_i s_i \\log s_i\\Big),\\qquad s = \\sigma / \\textstyle\\sum_i \\sigma_i
    """
    sigma = torch.as_tensor(sigma).clamp_min(0)
    tot = sigma.sum()
    if not tot > 0:
        return None
    s = sigma / tot
    s = s[s > 0]
    return float(torch.exp(-(s * s.log()).sum()))


def means_spectrum(H: Tensor, y: Tensor, p: Tensor, P: Tensor, C: int) -> Tensor:
    """(C-1,) singular values of the centred class means (Gram eigenvalues on 1-perp)."""
    R = torch.zeros(H.shape[0], C, dtype=H.dtype, device=H.device)
    R[torch.arange(H.shape[0], device=H.device), y] = p / P[y]
    Mu = R.T @ H
    Mt = Mu - Mu.mean(0, keepdim=True)
    B = centred_basis(C, dtype=H.dtype, device=H.device)
    lam = torch.linalg.eigvalsh(B.T @ (Mt @ Mt.T) @ B)
    return lam.clamp_min(0).sqrt().flip(0)


def feature_spectrum(H: Tensor, p: Tensor) -> Tensor:
    """Singular values of diag(sqrt p) (H - sum_j p_j h_j)."""
    F = p.sqrt()[:, None] * (H - (p[:, None] * H).sum(0))
    return torch.linalg.svdvals(F)


def spectra(features=None, labels=None, *, classifier=None, weights=None, num_classes=None,
            model=None, samples=None) -> Spectra:
    """Singular values of the centred means and of W; with ``model`` also of every layer.

    Either ``features, labels`` (and optionally ``classifier``, ``weights``) or ``model, samples``
    (a model of :mod:`meanfield.deep.models`; the top-level fields are then those of its
    penultimate features and classifier).

    Args:
        features ((n, p) Tensor), labels ((n,) int Tensor), weights ((n,) Tensor): as
            :func:`neural_collapse`.
        classifier ((C, p) Tensor): W (raw).
        model: a finite network; samples: :class:`meanfield.data.Samples` or ``(X, y[, p])``.

    Returns:
        :class:`Spectra`.
    """
    if model is not None:
        from .layerwise import layer_outputs, model_samples
        if features is not None or samples is None:
            raise ValueError("pass either features, labels or model=, samples= (not both)")
        X, y0, p0, C0 = model_samples(model, samples)
        outs = layer_outputs(model, X)
        y, p, C, P = labels_weights(y0, p0, X.shape[0], C0, dtype=X.dtype, device=X.device)
        pen = [o for o in outs if o.classifier is not None][-1]
        return Spectra(
            means=means_spectrum(pen.H, y, p, P, C),
            classifier=torch.linalg.svdvals(pen.classifier.detach()),
            layers=tuple(o.name for o in outs),
            layer_means=tuple(means_spectrum(o.H, y, p, P, C) for o in outs),
            layer_features=tuple(feature_spectrum(o.H, p) for o in outs),
            layer_weights=tuple(None if o.weight is None else
                                torch.linalg.svdvals(o.weight.detach().reshape(o.weight.shape[0], -1))
                                for o in outs))
    if features is None or labels is None:
        raise ValueError("pass features and labels (or model= and samples=)")
    H = as_features(features)
    y, p, C, P = labels_weights(labels, weights, H.shape[0], num_classes, dtype=H.dtype, device=H.device)
    W, _ = _classifier(classifier, None, C, H.shape[1], dtype=H.dtype, device=H.device)
    return Spectra(means=means_spectrum(H, y, p, P, C),
                   classifier=None if W is None else torch.linalg.svdvals(W))
