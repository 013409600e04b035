"""Dense backend: chunked torch matrix products under a memory budget (any device, any activation)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..activations import Activation
from .base import check_operands

__all__ = ["DenseBackend"]


class DenseBackend:
    """Chunked torch reductions: never materialises more than ``budget`` pre-activations at once.

    Args:
        budget: the largest number of (batch, particle, sample) pre-activations held at once
            (default 2**24: 64 MB in float32). Chunks run over particles and samples.
    """

    name = "dense"

    def __init__(self, budget: int = 2 ** 24):
        self.budget = int(budget)

    def available(self) -> bool:
        return True

    def supports(self, act: Activation, device: torch.device) -> bool:
        return True

    def _chunks(self, B: int, m: int, n: int) -> tuple[int, int]:
        nc = max(1, min(n, self.budget // max(B, 1)))
        mc = max(1, min(m, self.budget // max(B * nc, 1)))
        return mc, nc

    def outputs(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor) -> Tensor:
        """f ((B, n, k) Tensor) = (1/m) sum_i a_i sigma(w_i . x_j + b_i)."""
        check_operands(a, w, b, X)
        B, m, k = a.shape
        n = X.shape[1]
        mc, nc = self._chunks(B, m, n)
        f = a.new_zeros(B, n, k)
        for j0 in range(0, n, nc):
            Xc = X[:, j0:j0 + nc]
            acc = f[:, j0:j0 + nc]
            for i0 in range(0, m, mc):
                z = torch.matmul(w[:, i0:i0 + mc], Xc.transpose(1, 2)) + b[:, i0:i0 + mc, None]
                acc += torch.matmul(act.fn(z).transpose(1, 2), a[:, i0:i0 + mc])
        return f / m

    def velocities(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Tensor,
                   *, inner: bool = True) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Velocity field of the data term, see :mod:`meanfield.backends`."""
        check_operands(a, w, b, X, g)
        B, m, k = a.shape
        n, d = X.shape[1], X.shape[2]
        mc, nc = self._chunks(B, m, n)
        va = a.new_zeros(B, m, k)
        vw = a.new_zeros(B, m, d) if inner else None
        vb = a.new_zeros(B, m) if inner else None
        for i0 in range(0, m, mc):
            wi, bi, ai = w[:, i0:i0 + mc], b[:, i0:i0 + mc, None], a[:, i0:i0 + mc]
            for j0 in range(0, n, nc):
                Xc, gc = X[:, j0:j0 + nc], g[:, j0:j0 + nc]
                z = torch.matmul(wi, Xc.transpose(1, 2)) + bi          # (B, mc, nc)
                va[:, i0:i0 + mc] -= torch.matmul(act.fn(z), gc)
                if inner:
                    s = torch.matmul(ai, gc.transpose(1, 2)) * act.deriv(z)  # (B, mc, nc)
                    vw[:, i0:i0 + mc] -= torch.matmul(s, Xc)
                    vb[:, i0:i0 + mc] -= s.sum(-1)
        return va, vw, vb
