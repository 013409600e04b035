"""Simplex equiangular tight frames, orthogonal frames, and the collapse metrics they must give.

Frames are returned as ``(p, C)`` matrices whose columns are the C class vectors (the layout of
the centred means ``M~`` in docs/science.md §1). Collapsed features are ``H = M.T[y]`` and the
classifier aligned with them is ``W = M.T``.

A simplex ETF ``M`` has unit columns, ``M 1 = 0`` and

.. math::

    M^\\top M = \\frac{C}{C-1}\\Big(I - \\frac{1}{C}\\mathbf 1\\mathbf 1^\\top\\Big).

An orthogonal frame has orthonormal columns (``M^T M = I``, needs ``p >= C``); centred on the mean
of its columns it *becomes* a simplex ETF (scaled by sqrt((C-1)/C)).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["simplex_etf", "orthogonal_frame", "centred_basis", "random_rotation",
           "simplex_etf_gram_ortho", "orthogonal_frame_nc3", "orthogonal_frame_nc2_etf_w",
           "collapsed_metrics"]


def _check_C(C: int) -> int:
    if int(C) != C or C < 2:
        raise ValueError(f"a frame needs C >= 2 classes (an integer); got {C!r}")
    return int(C)


def centred_basis(C: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Orthonormal basis of the hyperplane orthogonal to the all-ones vector (Helmert columns).

    Returns:
        (C, C-1) Tensor ``U`` with ``U^T U = I`` and ``U^T 1 = 0``; column k (k = 1..C-1) is
        ``(1, ..., 1, -k, 0, ..., 0) / sqrt(k (k+1))`` with k ones.
    """
    C = _check_C(C)
    U = torch.zeros(C, C - 1, dtype=dtype, device=device)
    for k in range(1, C):
        U[:k, k - 1] = 1.0
        U[k, k - 1] = -float(k)
        U[:, k - 1] /= math.sqrt(k * (k + 1))
    return U


def random_rotation(p: int, *, seed: int = 0, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """A Haar-random orthogonal ``(p, p)`` matrix (QR of a Gaussian matrix, signs fixed)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    A = torch.randn(p, p, generator=g, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))[None, :]
    return Q.to(dtype=dtype, device=device)


def _embed(M: Tensor, p: int, rotate: bool, seed: int) -> Tensor:
    r = M.shape[0]
    if p > r:
        M = torch.cat([M, M.new_zeros(p - r, M.shape[1])], 0)
    if rotate:
        M = random_rotation(p, seed=seed, dtype=M.dtype, device=M.device) @ M
    return M


def simplex_etf(C: int, p: Optional[int] = None, *, rotate: bool = False, seed: int = 0,
                dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The simplex ETF of C unit vectors in R^p.

    Args:
        C: number of classes (>= 2).
        p: ambient dimension, ``p >= C - 1`` (default C: the standard
            ``sqrt(C/(C-1)) (I - 11^T/C)``; ``p = C - 1`` uses the Helmert basis; ``p > C`` pads
            with zero rows).
        rotate: apply a Haar-random rotation of R^p (seeded by ``seed``).

    Returns:
        (p, C) Tensor with unit columns summing to zero and Gram ``C/(C-1) (I - 11^T/C)``.

    Raises:
        ValueError: ``p < C - 1`` (C - 1 dimensions are needed to hold a simplex).
    """
    C = _check_C(C)
    p = C if p is None else int(p)
    if p < C - 1:
        raise ValueError(f"a simplex ETF of C = {C} vectors needs dimension p >= C - 1 = {C - 1}; got p = {p}")
    s = math.sqrt(C / (C - 1))
    if p == C - 1:
        M = s * centred_basis(C, dtype=dtype, device=device).T
    else:
        M = s * (torch.eye(C, dtype=dtype, device=device) - 1.0 / C)
    return _embed(M, p, rotate, seed)


def orthogonal_frame(C: int, p: Optional[int] = None, *, rotate: bool = False, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """C orthonormal vectors in R^p (``p >= C``, default C: the identity), optionally rotated.

    Returns:
        (p, C) Tensor with ``M^T M = I``.
    """
    C = _check_C(C)
    p = C if p is None else int(p)
    if p < C:
        raise ValueError(f"an orthogonal frame of C = {C} vectors needs dimension p >= C; got p = {p}")
    return _embed(torch.eye(C, dtype=dtype, device=device), p, rotate, seed)


def simplex_etf_gram_ortho(C: int) -> float:
    """gram_ortho (w or h) of a simplex ETF: ``||J/sqrt(C-1) - I/sqrt(C)||_F``.

    .. math::

        \\sqrt{2 - 2\\sqrt{(C-1)/C}}
    """
    C = _check_C(C)
    return math.sqrt(2.0 - 2.0 * math.sqrt((C - 1) / C))


def orthogonal_frame_nc3(C: int) -> float:
    """nc3 of collapsed features at an orthogonal frame with ``W = Hbar^T`` (raw W vs centred means).

    .. math::

        2 - 2\\sqrt{(C-1)/C}
    """
    C = _check_C(C)
    return 2.0 - 2.0 * math.sqrt((C - 1) / C)


def orthogonal_frame_nc2_etf_w(C: int) -> float:
    """nc2_etf_w of an orthogonal-frame classifier (``W W^T = I``): ``||I/sqrt(C) - J/sqrt(C-1)||_F``."""
    return simplex_etf_gram_ortho(C)


def collapsed_metrics(frame: str, C: int) -> dict[str, float]:
    """Exact metric values of fully collapsed features at a frame, classifier ``W = M^T``.

    Args:
        frame: ``simplex`` (class means form a simplex ETF) or ``orthogonal`` (an orthogonal frame).
        C: number of classes.

    Returns:
        dict field -> value for every field of :class:`meanfield.metrics.NCMetrics`.
    """
    C = _check_C(C)
    zero = dict(nc1=0.0, nc2_equinorm=0.0, nc2_equinorm_w=0.0, nc2_equiangular=0.0, nc2_etf=0.0,
                nc4=0.0)
    if frame == "simplex":
        g = simplex_etf_gram_ortho(C)
        return {**zero, "nc2_etf_w": 0.0, "nc3": 0.0, "gram_ortho_w": g, "gram_ortho_h": g}
    if frame == "orthogonal":
        return {**zero, "nc2_etf_w": orthogonal_frame_nc2_etf_w(C), "nc3": orthogonal_frame_nc3(C),
                "gram_ortho_w": 0.0, "gram_ortho_h": 0.0}
    raise ValueError(f"unknown frame {frame!r}; valid: simplex, orthogonal")
