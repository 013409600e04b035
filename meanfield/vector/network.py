"""The three-layer network of Wu & Mondelli: a mean-field feature map into R^p and a linear head.

.. math::

    h_\\rho(x) = \\frac1m \\sum_{i=1}^m a_i\\, \\sigma(w_i \\cdot x + b_i) \\in \\mathbb{R}^p,
    \\qquad f(x) = W h_\\rho(x) \\in \\mathbb{R}^K,

with particles theta_i = (a_i, w_i, b_i), a_i in R^p, and a head W in R^{K x p} (docs/science.md
§6.4). The feature map *is* a :class:`meanfield.particles.Particles` with ``k = p`` outputs, so
its two reductions (outputs and velocities) run on every backend of :mod:`meanfield.backends`
(dense torch on CPU or CUDA, numba, KeOps); only the head is new.

Shapes (B independent networks): ``a (B, m, p)``, ``w (B, m, d)``, ``b (B, m)``, ``W (B, K, p)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from ..backends import Backend, resolve_backend
from ..particles import Particles, _generator

__all__ = ["HeadedNetwork"]


@dataclass(frozen=True)
class HeadedNetwork:
    """B networks x -> W h_rho(x): a measure of m particles with outputs in R^p and a K x p head.

    Attributes:
        particles: the feature map (``particles.k`` = p).
        W ((B, K, p) Tensor): the linear head.
    """

    particles: Particles
    W: Tensor

    def __post_init__(self):
        P, W = self.particles, self.W
        if not isinstance(P, Particles):
            raise ValueError(f"particles must be Particles, got {type(P).__name__}")
        if not isinstance(W, Tensor) or W.dim() != 3:
            raise ValueError(f"W must be a (B, K, p) Tensor; got {getattr(W, 'shape', W)!r} "
                             "(use W[None] for one network)")
        if W.shape[0] != P.batch or W.shape[2] != P.k:
            raise ValueError(f"W has shape {tuple(W.shape)} but the particles have B = {P.batch} "
                             f"systems and p = {P.k} outputs; W must be (B, K, p) = "
                             f"({P.batch}, K, {P.k})")
        if W.shape[1] < 1:
            raise ValueError("the head needs at least one output row (K >= 1)")
        if W.dtype != P.dtype or W.device != P.device:
            raise ValueError(f"W ({W.dtype}, {W.device}) must match the particles ({P.dtype}, "
                             f"{P.device}); cast one with .to(...)")
        if not torch.isfinite(W).all():
            raise ValueError("W has NaN/inf entries; pass finite values")

    # ----------------------------------------------------------------- sizes
    @property
    def batch(self) -> int:
        return self.particles.batch

    @property
    def m(self) -> int:
        return self.particles.m

    @property
    def p(self) -> int:
        return self.particles.k

    @property
    def K(self) -> int:
        return self.W.shape[1]

    @property
    def d(self) -> int:
        return self.particles.d

    @property
    def dtype(self) -> torch.dtype:
        return self.particles.dtype

    @property
    def device(self) -> torch.device:
        return self.particles.device

    # ----------------------------------------------------------- constructors
    @classmethod
    def gaussian(cls, m: int, d: int, p: int, K: int, *, scale_a: float = 1.0,
                 scale_w: float = 1.0, scale_b: float = 1.0, scale_W: Optional[float] = None,
                 batch: int = 1, activation: str = "relu", seed: Optional[int] = 0,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
                 ) -> "HeadedNetwork":
        """i.i.d. Gaussian particles (:meth:`Particles.gaussian` with k = p) and a Gaussian head
        with entries N(0, scale_W^2), default scale_W = 1/sqrt(p)."""
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"K (head outputs, the number of classes) must be an integer >= 1, got {K!r}")
        sW = 1.0 / math.sqrt(p) if scale_W is None else scale_W
        if isinstance(sW, bool) or not isinstance(sW, (int, float)) or not math.isfinite(sW):
            raise ValueError(f"scale_W must be a finite number, got {scale_W!r}")
        P = Particles.gaussian(m, d, p, scale_a=scale_a, scale_w=scale_w, scale_b=scale_b,
                               batch=batch, activation=activation, seed=seed, dtype=dtype,
                               device=device)
        g = _generator(None if seed is None else int(seed) + 7919)
        W = (sW * torch.randn(batch, K, p, generator=g, dtype=dtype)).to(device)
        return cls(P, W)

    # ----------------------------------------------------------------- methods
    def features(self, X: Tensor, *, backend: str | Backend = "auto") -> Tensor:
        """h_rho(x_j) for every network: (B, n, p)."""
        return self.particles.predict(X, backend=backend) if isinstance(backend, str) else \
            backend.outputs(self.particles.act, self.particles.a, self.particles.w,
                            self.particles.b, self.particles._inputs(X))

    def predict(self, X: Tensor, *, backend: str | Backend = "auto") -> Tensor:
        """f(x_j) = W h_rho(x_j): (B, n, K)."""
        return torch.matmul(self.features(X, backend=backend), self.W.transpose(1, 2))

    def backend_for(self, name: str | Backend, n: int) -> Backend:
        """The backend that runs this network's reductions on n samples (``auto`` resolved)."""
        P = self.particles
        return resolve_backend(name, act=P.act, device=P.device, m=P.m, n=n, d=P.d,
                               batch=P.batch, dtype=P.dtype)

    def state(self) -> tuple:
        """The flow state ``(a, w, b, W)``."""
        P = self.particles
        return (P.a, P.w, P.b, self.W)

    def with_state(self, s: tuple) -> "HeadedNetwork":
        """This network with the state ``(a, w, b, W)``."""
        return HeadedNetwork(replace(self.particles, a=s[0], w=s[1], b=s[2]), s[3])

    def select(self, index: int) -> "HeadedNetwork":
        """Network ``index`` of the batch, as a batch of one."""
        i = int(index) % self.batch
        return HeadedNetwork(self.particles.select(i), self.W[i:i + 1])

    def to(self, *args, **kwargs) -> "HeadedNetwork":
        """Move/cast like ``Tensor.to``."""
        return HeadedNetwork(self.particles.to(*args, **kwargs), self.W.to(*args, **kwargs))

    def state_dict(self) -> dict:
        """Plain tensors (for ``torch.save``): the particles' state and ``W``."""
        return {**self.particles.state_dict(), "W": self.W}
