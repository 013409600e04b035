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
            (default 2**20: 4 MB in float32, so the passes over a chunk stay in cache —
            measured 3x faster per step than 2**24 at m = 1e5, n = 1e3 on a 2-core Xeon).
            Chunks run over particles and samples.
    """

    name = "dense"

    def __init__(self, budget: int = 2 ** 20):
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
        n, d = X.shape[1], X.shape[2]
        mc, nc = self._chunks(B, m, n)
        f = a.new_zeros(B, n, k)
        for j0 in range(0, n, nc):
            XcT = X[:, j0:j0 + nc].transpose(1, 2).expand(B, d, -1)
            acc = f[:, j0:j0 + nc]
            for i0 in range(0, m, mc):
                z = torch.baddbmm(b[:, i0:i0 + mc, None], w[:, i0:i0 + mc], XcT)  # (B, mc, nc)
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
        # (a_i . g_j) sigma'(z_ij) is never formed: with G2_j = (g_j x_j, g_j) in R^{k (d+1)},
        # sum_j sigma'(z_ij) (a_i . g_j) (x_j, 1) = sum_q a_iq (sigma'(Z) @ G2)_{i, q, :}
        Xe = torch.cat([X, X.new_ones(X.shape[0], n, 1)], -1).expand(B, n, d + 1)
        G2 = (g[..., :, None] * Xe[..., None, :]).reshape(B, n, k * (d + 1)) if inner else None
        for j0 in range(0, n, nc):
            XcT = X[:, j0:j0 + nc].transpose(1, 2).expand(B, d, -1)
            gc = g[:, j0:j0 + nc]
            for i0 in range(0, m, mc):
                z = torch.baddbmm(b[:, i0:i0 + mc, None], w[:, i0:i0 + mc], XcT)  # (B, mc, nc)
                va[:, i0:i0 + mc] -= torch.matmul(act.fn(z), gc)
                if inner:
                    t = torch.matmul(act.deriv(z), G2[:, j0:j0 + nc])          # (B, mc, k(d+1))
                    t = (a[:, i0:i0 + mc, :, None] * t.view(B, -1, k, d + 1)).sum(2)
                    vw[:, i0:i0 + mc] -= t[..., :d]
                    vb[:, i0:i0 + mc] -= t[..., d]
        return va, vw, vb
