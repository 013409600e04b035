"""NC1 of the features h_rho(x) entering the linear head, and a bound by the loss and the gradient.

Conventions of docs/science.md §1 (masses p_j normalised to sum 1, class masses P_c, class means
mu_c, centre mu_G = the unweighted mean of the class means):

- ``within`` = Tr Sigma_W = sum_j p_j ||h_j - mu_{y_j}||^2;
- ``between`` = Tr Sigma_B = (1/C) sum_c ||mu_c - mu_G||^2;
- ``nc1_tr`` = within / between (the package's ``nc1_trace``); ``nc1`` = Tr(Sigma_W Sigma_B^+)/C
  (the package's ``nc1``, :func:`meanfield.metrics.neural_collapse`).

**The bound** (derived in docs/science.md §6.4; it holds at *every* (rho, W) with lambda > 0,
not only along the flow). With P = W^+ W the projector on the row space of W and r_j the
residuals, ``within = within(P h) + within((I - P) h)`` exactly, and

.. math::

    \\mathrm{within}(Ph) = \\sum_j p_j \\|W^+(r_j - \\bar r_{y_j})\\|^2
        \\le \\frac{2\\,\\mathrm{loss}}{s_{\\min}(W)^2},\\qquad
    \\mathrm{within}((I-P)h) \\le \\frac{S}{\\lambda^2}\\, \\mathbb{E}_\\rho|(I-P)\\nabla_a V|^2
        \\le \\frac{S}{\\lambda^2}\\, \\|\\nabla_a V\\|_{L^2(\\rho)}^2,

with S = sum_j p_j E_rho sigma(w . x_j + b)^2 and s_min(W) the smallest non-zero singular value of
W: the within-class variability is controlled by the residual loss and the gradient norm, the
shape of Wu & Mondelli's theorem. ``bound`` is the middle (exact-projection) form, ``bound_loose``
the right-hand form.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..backends import Backend
from ..metrics import neural_collapse
from .flow import Prepared, VectorFlowConfig, _make_vel, forward
from .network import HeadedNetwork

__all__ = ["class_stats", "feature_energy", "nc1_bound", "nc1_record"]


def _per_class(v: Tensor, y: Tensor, p: Tensor, C: int) -> tuple[Tensor, Tensor]:
    """Class masses P (B, C) and mass-weighted class means of v (B, n, q) -> (B, C, q)."""
    B = v.shape[0]
    onehot = torch.nn.functional.one_hot(y.expand(B, -1), C).to(v.dtype) * p.expand(B, -1)[..., None]
    P = onehot.sum(1)                                                       # (B, C)
    if (P <= 0).any():
        raise ValueError("a class has no mass in the data; every class needs samples")
    return P, torch.matmul(onehot.transpose(1, 2), v) / P[..., None]


def class_stats(h: Tensor, y: Tensor, p: Tensor, C: int) -> dict:
    """Within- and between-class traces of features h (B, n, q) with labels y (1|B, n) and masses
    p (1|B, n) (normalised here): ``within``, ``between``, ``nc1_tr`` (B,) each, ``means`` (B, C, q).

    Raises:
        ValueError: NaN/inf features, or a class without mass.
    """
    if not torch.isfinite(h).all():
        raise ValueError("features have NaN/inf entries")
    p = p / p.sum(-1, keepdim=True)
    _, mu = _per_class(h, y, p, C)
    idx = y.expand(h.shape[0], -1)
    dev = h - torch.gather(mu, 1, idx[..., None].expand(-1, -1, h.shape[-1]))
    within = (p.expand(h.shape[0], -1) * (dev ** 2).sum(-1)).sum(-1)
    between = ((mu - mu.mean(1, keepdim=True)) ** 2).sum((-1, -2)) / C
    return {"within": within, "between": between, "nc1_tr": within / between, "means": mu}


def feature_energy(net: HeadedNetwork, data: Prepared, chunk: int = 2 ** 20) -> Tensor:
    """S = sum_j p_j (1/m) sum_i sigma(w_i . x_j + b_i)^2 for every system, (B,), in chunks of
    particles (never more than ``chunk`` pre-activations at once)."""
    P = net.particles
    n = data.X.shape[1]
    mc = max(1, chunk // max(n * P.batch, 1))
    S = P.a.new_zeros(P.batch)
    XT = data.X.transpose(1, 2)
    for i0 in range(0, P.m, mc):
        z = torch.baddbmm(P.b[:, i0:i0 + mc, None], P.w[:, i0:i0 + mc], XT.expand(P.batch, -1, -1))
        S += (P.act.fn(z) ** 2 * data.p[:, None, :]).sum((-1, -2))
    return S / P.m


def nc1_bound(net: HeadedNetwork, data: Prepared, cfg: VectorFlowConfig, be: Backend,
              rtol: Optional[float] = None) -> dict:
    """The two parts of the bound on ``within`` and its two forms, (B,) each:
    ``within_P`` (exact), ``orth_bound``, ``bound`` = within_P + orth_bound, ``bound_loose``,
    ``s_min`` (smallest singular value of W above ``rtol`` times the largest), ``energy`` (S).
    Infinite where lambda = 0 (no bound without weight decay on the measure)."""
    h, _, r = forward(net, data, be)
    W = net.W
    Wp = torch.linalg.pinv(W)                                               # (B, p, K)
    _, rbar = _per_class(r, data.y, data.p, data.C)
    dev = r - torch.gather(rbar, 1, data.y.expand(r.shape[0], -1)[..., None].expand(-1, -1, r.shape[-1]))
    within_P = (data.p * (torch.matmul(dev, Wp.transpose(1, 2)) ** 2).sum(-1)).sum(-1)
    va = _make_vel(net, data, cfg, be)(net.state())[0]                     # -grad_a V, (B, m, p)
    Q = torch.eye(net.p, dtype=W.dtype, device=W.device) - torch.matmul(Wp, W)  # I - P, (B, p, p)
    orth = (torch.matmul(va, Q.transpose(1, 2)) ** 2).sum(-1).mean(-1)
    S = feature_energy(net, data)
    sv = torch.linalg.svdvals(W)                                            # (B, min(K, p))
    tol = (rtol if rtol is not None else max(W.shape[1:]) * torch.finfo(W.dtype).eps) * sv[:, :1]
    s_min = torch.where(sv > tol, sv, torch.full_like(sv, float("inf"))).min(-1).values
    loss = 0.5 * (data.p * (r ** 2).sum(-1)).sum(-1)
    lam2 = cfg.lam ** 2 if cfg.lam > 0 else 0.0
    inf = torch.full_like(S, float("inf"))
    orth_bound = S * orth / lam2 if lam2 > 0 else inf
    loose = 2 * loss / s_min ** 2 + (S * (va ** 2).sum(-1).mean(-1) / lam2 if lam2 > 0 else inf)
    return {"within_P": within_P, "orth_bound": orth_bound, "bound": within_P + orth_bound,
            "bound_loose": loose, "s_min": s_min, "energy": S}


def nc1_record(cfg: VectorFlowConfig, *, package_nc1: bool = True):
    """A ``record`` callback for :func:`meanfield.vector.flow.simulate_vector`: NC1 of h (``within``,
    ``between``, ``nc1_tr``, ``nc1``), the bound parts, and ``ratio`` = nc1_tr / (loss + grad)."""

    def record(net: HeadedNetwork, data: Prepared, be: Backend, base: dict) -> dict:
        h, _, _ = forward(net, data, be)
        st = class_stats(h, data.y, data.p, data.C)
        out = {k: st[k] for k in ("within", "between", "nc1_tr")}
        out.update({k: v for k, v in nc1_bound(net, data, cfg, be).items()})
        out["ratio"] = st["nc1_tr"] / (base["loss"] + base["grad"])
        out["ratio_within"] = st["within"] / (base["loss"] + base["grad"])
        if package_nc1:
            vals = []
            for i in range(h.shape[0]):
                nc = neural_collapse(h[i], data.y[min(i, data.y.shape[0] - 1)],
                                     weights=data.p[min(i, data.p.shape[0] - 1)],
                                     num_classes=data.C, strict=False)
                vals.append(float("nan") if nc.nc1 is None else float(nc.nc1))
            out["nc1"] = torch.tensor(vals, dtype=h.dtype)
        return out

    return record
