"""Softmax codes (Jiang et al., ICML 2024): the one-vs-rest distance of K points on a sphere.

For unit vectors ``w_1, ..., w_K`` in R^d (rows of W) the one-vs-rest distance of class k is the
Euclidean distance from ``w_k`` to the convex hull of the others,

.. math::

    \\rho_k(W) = \\min_{\\alpha \\in \\Delta_{K-1}} \\Big\\| w_k - \\sum_{j \\ne k} \\alpha_j w_j \\Big\\|
               = \\max_{\\|u\\| \\le 1} \\Big( u^\\top w_k - \\max_{j \\ne k} u^\\top w_j \\Big)_+ ,

and a softmax code maximises ``rho(W) = min_k rho_k(W)`` over ``W`` on the sphere (the paper's
Definition; not the smallest pairwise angle, the Tammes problem). The second form (minimum-norm
duality) is a margin: ``u`` is the feature that separates class k from the rest; it is the
small-temperature limit of the cross-entropy of the normalised UFM.

Known optima used as oracles here: ``K <= d + 1``, the simplex, ``rho = K / (K - 1)``; ``d = 2``,
K equally spaced points on the circle, ``rho = 1 - cos(2 pi / K)`` (K >= 3). The cross-polytope
(``K = 2d``, points ``±e_i``) has ``rho = 1`` (:func:`cross_polytope`); that it is optimal is not
claimed here (checked numerically only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["hull_distances", "code_value", "known_optimum", "simplex_code", "circle_code",
           "cross_polytope", "min_angle", "CodeSearch", "optimise_code", "sphere_rows"]


def _check_W(W) -> Tensor:
    W = torch.as_tensor(W)
    if W.dim() != 2 or W.shape[0] < 2 or W.shape[1] < 1:
        raise ValueError(f"W must be a (K, d) matrix with K >= 2 rows, got shape {tuple(W.shape)}")
    if not torch.isfinite(W).all():
        raise ValueError("W has NaN or infinite entries; pass finite unit vectors")
    return W


def _project_simplex(V: Tensor) -> Tensor:
    """Euclidean projection of every row of ``V`` (..., m) onto the probability simplex."""
    m = V.shape[-1]
    U, _ = torch.sort(V, dim=-1, descending=True)
    css = U.cumsum(-1) - 1.0
    ind = torch.arange(1, m + 1, dtype=V.dtype, device=V.device)
    cond = U - css / ind > 0
    rho = cond.to(V.dtype).cumsum(-1).argmax(-1, keepdim=True)   # last index where cond holds
    theta = css.gather(-1, rho) / (rho + 1).to(V.dtype)
    return (V - theta).clamp_min(0.0)


def hull_distances(W, *, iters: int = 3000, check: int = 25, tol: float = 1e-12) -> tuple[Tensor, Tensor]:
    """The one-vs-rest distances ``rho_k`` of the rows of ``W``, with a certificate.

    Accelerated projected gradient on the simplex, then an exact solve on the active set (the
    KKT system), batched over k (and over leading batch dimensions).

    Args:
        W ((..., K, d) Tensor): the points (unit rows for a code; any rows are accepted).
        iters: at most this many projected-gradient iterations.
        check, tol: every ``check`` iterations the active set is polished and the run stops
            once every certificate gap is below ``tol``.

    Returns:
        ``(rho, gap)``, both (..., K): the distance (a feasible point's distance: an upper
        bound) and its gap to the dual lower bound ``u.w_k - max_j u.w_j`` with
        ``u = (w_k - v) / |w_k - v|`` (0 up to rounding at the exact distance; where rho is 0,
        w_k lies in the hull of the others and the gap is 0).
    """
    W = torch.as_tensor(W)
    if W.dim() < 2 or W.shape[-2] < 2:
        raise ValueError(f"W must be (..., K, d) with K >= 2, got shape {tuple(W.shape)}")
    if not torch.isfinite(W).all():
        raise ValueError("W has NaN or infinite entries; pass finite unit vectors")
    K = W.shape[-2]
    idx = torch.tensor([[j for j in range(K) if j != k] for k in range(K)], device=W.device)
    O = W[..., idx, :]                                   # (..., K, K-1, d): the others of k
    w = W.unsqueeze(-2)                                  # (..., K, 1, d)
    G = O @ O.transpose(-1, -2)                          # (..., K, K-1, K-1)
    c = (O @ w.transpose(-1, -2)).squeeze(-1)            # (..., K, K-1)
    Lip = torch.linalg.eigvalsh(G)[..., -1].clamp_min(1e-12).unsqueeze(-1)
    a = torch.full(c.shape, 1.0 / (K - 1), dtype=W.dtype, device=W.device)
    z, t = a.clone(), 1.0
    for i in range(1, iters + 1):
        a_new = _project_simplex(z - ((G @ z.unsqueeze(-1)).squeeze(-1) - c) / Lip)
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        z = a_new + (t - 1) / t_new * (a_new - a)
        a, t = a_new, t_new
        if i % check == 0 or i == iters:
            rho, gap = _certify(W, O, _polish(G, c, a))
            if float(gap.abs().max()) <= tol:
                break
    return rho, gap


def _certify(W: Tensor, O: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    v = (a.unsqueeze(-2) @ O).squeeze(-2)                # (..., K, d)
    r = W - v
    rho = r.norm(dim=-1)
    u = r / rho.clamp_min(1e-300).unsqueeze(-1)
    lower = (u * W).sum(-1) - (O @ u.unsqueeze(-1)).squeeze(-1).max(-1).values
    gap = torch.where(rho > 1e-12, rho - lower, torch.zeros_like(rho))
    return rho, gap


def _polish(G: Tensor, c: Tensor, a: Tensor) -> Tensor:
    """Solve the equality-constrained least squares on the support of ``a``; keep it if feasible
    and no worse (objective ``a'Ga/2 - c'a``)."""
    m = a.shape[-1]
    S = (a > 1e-10).to(a.dtype)
    A = G * S.unsqueeze(-1) * S.unsqueeze(-2) + torch.diag_embed(1.0 - S)
    one = S.unsqueeze(-1)
    top = torch.cat([A, one], -1)
    bot = torch.cat([one.transpose(-1, -2), torch.zeros_like(one[..., :1, :])], -1)
    M = torch.cat([top, bot], -2)
    rhs = torch.cat([c * S, torch.ones_like(c[..., :1])], -1).unsqueeze(-1)
    try:
        sol = torch.linalg.solve(M, rhs).squeeze(-1)[..., :m] * S
    except RuntimeError:
        return a
    f = lambda x: 0.5 * ((x.unsqueeze(-2) @ G @ x.unsqueeze(-1)).squeeze(-1).squeeze(-1)) - (c * x).sum(-1)
    ok = torch.isfinite(sol).all(-1) & (sol >= -1e-12).all(-1) & (f(sol) <= f(a) + 1e-15)
    sol = sol.clamp_min(0.0)
    sol = sol / sol.sum(-1, keepdim=True).clamp_min(1e-300)
    return torch.where(ok.unsqueeze(-1), sol, a)


def code_value(W) -> float:
    """``rho(W) = min_k rho_k(W)``, the softmax-code objective of the rows of ``W`` (K, d)."""
    W = _check_W(W).to(torch.float64)
    return float(hull_distances(W)[0].min())


def min_angle(W) -> float:
    """The smallest pairwise angle (radians) of the rows of ``W``: the Tammes objective."""
    W = _check_W(W).to(torch.float64)
    Wn = W / W.norm(dim=1, keepdim=True)
    C = (Wn @ Wn.T).clamp(-1, 1)
    C.fill_diagonal_(-1.0)
    return float(torch.arccos(C.max()))


def known_optimum(K: int, d: int) -> Optional[float]:
    """The optimal ``rho`` where it is known (simplex K <= d + 1; circle d = 2), else None."""
    if K < 2 or d < 1:
        raise ValueError(f"need K >= 2 and d >= 1, got K={K}, d={d}")
    if K <= d + 1:
        return K / (K - 1)
    if d == 2:
        return 1.0 - math.cos(2 * math.pi / K)
    return None


def simplex_code(K: int, d: int, dtype=torch.float64) -> Tensor:
    """A regular simplex of K unit vectors in R^d (needs K <= d + 1), as (K, d) rows."""
    if K > d + 1:
        raise ValueError(f"a simplex of K={K} points needs d >= K - 1, got d={d}")
    E = torch.eye(K, dtype=dtype) - 1.0 / K
    Q, _ = torch.linalg.qr(E)                 # the first K - 1 columns span 1-perp
    M = E @ Q[:, :K - 1]
    M = M / M.norm(dim=1, keepdim=True)
    out = torch.zeros(K, d, dtype=dtype)
    out[:, :K - 1] = M
    return out


def circle_code(K: int, dtype=torch.float64) -> Tensor:
    """K equally spaced unit vectors in R^2, (K, 2)."""
    th = 2 * math.pi * torch.arange(K, dtype=dtype) / K
    return torch.stack([th.cos(), th.sin()], 1)


def cross_polytope(d: int, dtype=torch.float64) -> Tensor:
    """The 2d points ``±e_i`` in R^d, (2d, d)."""
    I = torch.eye(d, dtype=dtype)
    return torch.cat([I, -I], 0)


def sphere_rows(X: Tensor) -> Tensor:
    """Rows of ``X`` scaled to unit norm."""
    return X / X.norm(dim=-1, keepdim=True).clamp_min(1e-300)


@dataclass(frozen=True)
class CodeSearch:
    """A multi-start search for a softmax code.

    Attributes:
        W ((K, d) Tensor): the best code found (unit rows).
        value: its ``rho`` (exact, :func:`hull_distances`).
        values ((starts,) Tensor): ``rho`` of every start's result.
        gap: the certificate gap of the best (0 up to rounding).
    """

    W: Tensor
    value: float
    values: Tensor
    gap: float


def optimise_code(K: int, d: int, *, starts: int = 16, seed: int = 0,
                  smoothing: tuple = (0.1, 0.03, 0.01, 0.003, 0.001), max_iter: int = 300,
                  dtype=torch.float64) -> CodeSearch:
    """Maximise ``rho`` directly from ``starts`` random starts (batched).

    The max-min of the dual form, ``max_{W, U} min_k (u_k.w_k - max_{j != k} u_k.w_j)`` with rows
    on the sphere, is smoothed (soft-min over k, soft-max over j, temperature ``s``) and
    maximised by L-BFGS at each ``s`` in ``smoothing`` (annealed, warm-started); every start's
    ``W`` is then scored with the exact ``rho``.

    Raises:
        ValueError: K < 2, d < 1 or starts < 1.
    """
    from ..deep.ufm import minimise
    if K < 2 or d < 1 or starts < 1:
        raise ValueError(f"need K >= 2, d >= 1, starts >= 1; got K={K}, d={d}, starts={starts}")
    g = torch.Generator().manual_seed(int(seed))
    V = torch.randn(starts, K, d, generator=g, dtype=dtype)
    U = V.clone() + 0.1 * torch.randn(starts, K, d, generator=g, dtype=dtype)
    V.requires_grad_(True)
    U.requires_grad_(True)
    off = ~torch.eye(K, dtype=torch.bool)
    for s in smoothing:
        def fn(s=s):
            W, Uu = sphere_rows(V), sphere_rows(U)
            S = Uu @ W.transpose(-1, -2)                     # S[b, k, j] = u_k . w_j
            own = S.diagonal(dim1=-2, dim2=-1)
            rest = s * torch.logsumexp(S.masked_fill(~off, -float("inf")) / s, -1)
            m = own - rest
            return (s * torch.logsumexp(-m / s, -1)).sum()     # minus the soft-min margin
        minimise(fn, [V, U], method="lbfgs", lr=1.0, tol_grad=1e-10, max_iter=max_iter)
    W = sphere_rows(V.detach())
    rho, gap = hull_distances(W)
    vals = rho.min(-1).values
    b = int(vals.argmax())
    return CodeSearch(W[b], float(vals[b]), vals, float(gap[b].max()))
