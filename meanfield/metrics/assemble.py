"""From class means and per-sample sums to :class:`NCMetrics` (shared by every path).

:func:`geometry` needs only the class means (C x C Grams); :func:`sample_sums` turns a batch of
per-sample inner products into sums that add over batches; :func:`finish` combines the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..theory.etf import centred_basis
from .core import DegenerateMeansError, NCMetrics, too_narrow


class _Undefined(Exception):
    """A measure is undefined for these inputs; the message says why."""


def _fro(G: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(G)


def _gram_distance(G: Tensor, target: Tensor, what: str) -> float:
    nG = _fro(G)
    if not nG > 0:
        raise _Undefined(f"{what} is zero; its normalised Gram is undefined")
    return float(_fro(G / nG - target / _fro(target)))


def _equinorm(norms: Tensor, what: str) -> float:
    mean = norms.mean()
    if not mean > 0:
        raise _Undefined(f"{what} are all zero; equinormness is undefined")
    return float(norms.std(unbiased=False) / mean)


@dataclass
class Geometry:
    """Everything that needs only the class means (and W, the OOD mean); see :func:`geometry`."""

    C: int
    Mu: Tensor
    Mt: Tensor
    G: Tensor
    Gmu: Tensor
    B: Tensor
    lam: Tensor
    V: Tensor
    rank: int
    rtol: float
    values: dict
    reasons: dict

    @property
    def full_rank(self) -> bool:
        return self.rank == self.C - 1


@dataclass
class SampleSums:
    """Sums over samples that add over batches (tensors on the features' device).

    Attributes:
        nc1 (0-dim): sum_j p_j ||M~^+ (h_j - mu_{y_j})||^2, or None when M~ is rank deficient.
        within ((C,)): sum_{j in c} p_j ||h_j - mu_c||^2.
        nc4 (0-dim): mass where argmax(W h + b) differs from the nearest class mean, or None.
    """

    nc1: Optional[Tensor]
    within: Tensor
    nc4: Optional[Tensor]

    def __add__(self, other: "SampleSums") -> "SampleSums":
        add = lambda a, b: None if a is None or b is None else a + b
        return SampleSums(add(self.nc1, other.nc1), self.within + other.within, add(self.nc4, other.nc4))


def _put(values: dict, reasons: dict, name: str, fn) -> None:
    try:
        values[name] = fn()
    except _Undefined as e:
        reasons[name] = str(e)


def geometry(Mu: Tensor, W: Optional[Tensor], mu_ood: Optional[Tensor], C: int, q: int, rtol: float,
             strict: Optional[bool], what: str = "feature dimension p") -> Geometry:
    """The measures of the class means alone.

    Args:
        Mu ((C, q) Tensor): uncentred class means (rows) in a Euclidean representation.
        W ((C, q) Tensor): classifier in the same representation, or None.
        mu_ood ((q,) Tensor): mean of out-of-distribution features, or None.
        q: the feature dimension (C - 1 > q makes the means rank deficient).
        strict: True raises on any rank deficiency; None only when the centred means vanish.

    Raises:
        DegenerateMeansError: as ``strict`` says.
        ValueError: a zero classifier (unless ``strict=False``).
    """
    Mt = Mu - Mu.mean(0, keepdim=True)
    G = Mt @ Mt.T
    Gmu = Mu @ Mu.T
    J = torch.eye(C, dtype=G.dtype, device=G.device) - 1.0 / C
    I = torch.eye(C, dtype=G.dtype, device=G.device)
    # NC1 on the rank-(C-1) range: restrict the Gram to the complement of the ones vector
    B = centred_basis(C, dtype=G.dtype, device=G.device)
    lam, V = torch.linalg.eigh(B.T @ G @ B)
    cut = rtol * lam[-1].clamp_min(0)
    rank = int((lam > cut).sum()) if lam[-1] > 0 else 0
    eps = torch.finfo(G.dtype).eps
    vanish = rank == 0 or (rank < C - 1 and float(lam[-1]) <= (C * eps) ** 2 * float(torch.diagonal(Gmu).max()))
    values: dict = {"rank_means": 0 if vanish else rank}
    reasons: dict = {}
    if rank < C - 1:
        if strict and C - 1 > q:
            raise ValueError(too_narrow(C, q, what))
        msg = (f"the centred class means are degenerate: they span {rank} < C-1 = {C - 1} "
               f"dimensions (Gram eigenvalues {lam.tolist()}, cutoff {float(cut):.3g}); "
               "Sigma_B has no rank-(C-1) pseudo-inverse. Two class means coincide or "
               "all features are equal")
        if strict or (strict is None and vanish):
            raise DegenerateMeansError(msg)
        reasons["nc1"] = (too_narrow(C, q, what) if C - 1 > q else msg) + " (nc1 needs rank C-1)"
    sig = torch.where(lam > cut, lam.clamp_min(0).sqrt(), 0.0).flip(0)   # below the cut: Gram noise
    if vanish:
        why = ("the class means coincide (the centred means vanish): no measure that divides by "
               "the between-class scale is defined")
        for k in ("nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc3", "nc1_trace", "nc1_cdnv",
                  "gnc2_log", "gnc2_riesz", "unc3", "nc5", "erank_means", "nc4"):
            reasons[k] = why
        reasons.setdefault("nc1", why)
    else:
        norms = torch.diagonal(G).clamp_min(0).sqrt()
        cos = G / (norms[:, None] * norms[None, :])
        off = ~torch.eye(C, dtype=torch.bool, device=G.device)
        nodir = (norms <= math.sqrt(rtol / 2) * norms.max()).nonzero().flatten()

        def directions():
            if nodir.numel():
                raise _Undefined(f"class {int(nodir[0])}'s mean is (numerically) the centre mu_G: "
                                 "its direction u_c is undefined")
            return cos

        _put(values, reasons, "nc2_equinorm", lambda: _equinorm(norms, "centred class means"))
        _put(values, reasons, "nc2_equiangular",
             lambda: float((directions()[off] + 1.0 / (C - 1)).abs().mean()))
        _put(values, reasons, "nc2_etf", lambda: _gram_distance(G, J, "the centred-means Gram"))
        _put(values, reasons, "gnc2_log", lambda: _energy(directions(), "log"))
        _put(values, reasons, "gnc2_riesz", lambda: _energy(directions(), "riesz"))
        s = sig / sig.sum()
        values["erank_means"] = float(torch.exp(-(s[s > 0] * s[s > 0].log()).sum()))
        if mu_ood is not None:
            _put(values, reasons, "nc5", lambda: _nc5(Mt, Mu, norms, directions, mu_ood))
        else:
            reasons["nc5"] = "no out-of-distribution features given (ood_features=)"
    _put(values, reasons, "gram_ortho_h", lambda: _gram_distance(Gmu, I, "the class-means Gram"))
    if W is not None:
        WW = W @ W.T
        nW, nM = _fro(W), _fro(Mt)
        if not nW > 0:
            msg = "the classifier W is zero; nc2_w/nc3 are undefined"
            if strict is not False:
                raise ValueError(msg)
            for k in ("nc2_equinorm_w", "nc2_etf_w", "gram_ortho_w", "nc3", "unc3"):
                reasons[k] = msg
        else:
            values.update(nc2_equinorm_w=_equinorm(torch.diagonal(WW).clamp_min(0).sqrt(), "classifier rows"),
                          nc2_etf_w=_gram_distance(WW, J, "the classifier Gram W W^T"),
                          gram_ortho_w=_gram_distance(WW, I, "the classifier Gram W W^T"))
            if not vanish:
                values["nc3"] = float(((W / nW - Mt / nM) ** 2).sum())
                _put(values, reasons, "unc3", lambda: _unc3(W, Mt, norms, directions))
    else:
        for k in ("nc2_equinorm_w", "nc2_etf_w", "gram_ortho_w", "nc3", "unc3", "nc4"):
            reasons.setdefault(k, "no classifier given (classifier=)")
    return Geometry(C, Mu, Mt, G, Gmu, B, lam, V, values["rank_means"], rtol, values, reasons)


def _energy(cos: Tensor, kind: str) -> float:
    """Mean over pairs c < c' of -log ||u_c - u_c'|| or ||u_c - u_c'||^{-1}, ||.||^2 = 2 - 2 cos."""
    C = cos.shape[0]
    i, j = torch.triu_indices(C, C, 1, device=cos.device)
    d2 = (2.0 - 2.0 * cos[i, j]).clamp_min(0)
    if not (d2 > 0).all():
        k = int((d2 <= 0).nonzero()[0])
        raise _Undefined(f"classes {int(i[k])} and {int(j[k])} have the same mean direction: "
                         "the energy is infinite")
    return float(-0.5 * d2.log().mean()) if kind == "log" else float(d2.rsqrt().mean())


def _unc3(W: Tensor, Mt: Tensor, norms: Tensor, directions) -> float:
    directions()
    wn = W.norm(dim=1)
    if not (wn > 0).all():
        raise _Undefined(f"classifier row {int((wn <= 0).nonzero()[0])} is zero: its cosine is undefined")
    c = (W * Mt).sum(1) / (wn * norms)
    if not c.mean() != 0:
        raise _Undefined("the mean cosine between classifier rows and centred means is 0")
    return float(c.std(unbiased=False) / c.mean())


def _nc5(Mt: Tensor, Mu: Tensor, norms: Tensor, directions, mu_ood: Tensor) -> float:
    directions()
    o = mu_ood - Mu.mean(0)
    no = o.norm()
    if not no > 0:
        raise _Undefined("the OOD mean equals mu_G: its direction is undefined")
    return float(((Mt @ o) / (norms * no)).abs().mean())


def sample_sums(geo: Geometry, U: Tensor, dd: Tensor, S: Optional[Tensor], logits: Optional[Tensor],
                y: Tensor, p: Tensor) -> SampleSums:
    """The per-sample sums of a batch.

    Args:
        U ((n, C) Tensor): <h_j - mu_{y_j}, m~_c>.
        dd ((n,) Tensor): ||h_j - mu_{y_j}||^2.
        S ((n, C) Tensor): <h_j, mu_c> (for nc4), or None without logits.
        logits ((n, C) Tensor): W h_j + b, or None.
        y ((n,) Tensor), p ((n,) Tensor): labels, masses (normalised over the whole data set).
    """
    nc1 = None
    if geo.full_rank:
        Z = (U @ geo.B @ geo.V) / geo.lam
        nc1 = (p * (Z ** 2).sum(1)).sum()
    within = torch.zeros(geo.C, dtype=p.dtype, device=p.device).index_add_(0, y, p * dd)
    nc4 = None
    if logits is not None and "nc4" not in geo.reasons:
        near = (torch.diagonal(geo.Gmu)[None, :] - 2 * S).argmin(1)
        nc4 = (p * (logits.argmax(1) != near).to(p.dtype)).sum()
    return SampleSums(nc1, within, nc4)


def finish(geo: Geometry, sums: SampleSums, P: Tensor) -> NCMetrics:
    """:class:`NCMetrics` from the geometry, the summed sample terms and the class masses P (C,)."""
    values, reasons = dict(geo.values), dict(geo.reasons)
    C = geo.C
    if sums.nc1 is not None:
        values["nc1"] = float(sums.nc1)
    if sums.nc4 is not None:
        values["nc4"] = float(sums.nc4)
    if "nc1_trace" not in reasons:
        values["nc1_trace"] = float(sums.within.sum() / (torch.trace(geo.G) / C))
        d = torch.diagonal(geo.G)
        D2 = d[:, None] + d[None, :] - 2 * geo.G
        i, j = torch.triu_indices(C, C, 1, device=D2.device)
        dij = D2[i, j]
        close = (dij <= geo.rtol * dij.max()).nonzero().flatten()
        if close.numel():
            k = int(close[0])
            reasons["nc1_cdnv"] = (f"classes {int(i[k])} and {int(j[k])} have (numerically) equal "
                                   "means: their CDNV is infinite")
        else:
            Vc = sums.within / P
            values["nc1_cdnv"] = float(((Vc[i] + Vc[j]) / (2 * dij)).mean())
    return NCMetrics(**values, reasons={k: v for k, v in reasons.items() if values.get(k) is None})
