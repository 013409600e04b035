"""The result type, input checks and the assembly shared by every collapse path.

Every path (in-memory, mean-field particles, streaming) reduces its samples to the same few
objects and hands them to :func:`geometry` and :func:`finish`:

- the class means ``Mu (C, q)`` in some Euclidean representation (and the classifier ``W`` and
  the out-of-distribution mean in the same one): everything that needs no sample;
- per-sample sums :class:`SampleSums`: the pseudo-inverse NC1 sum of docs/science.md §1's identity
  ``sum_j p_j ||M~^+ (h_j - mu_{y_j})||^2``, the within-class sums of squares per class and the
  nc4 mismatch mass.

Conventions (pinned in docs/metrics.md): ``p`` divided by its sum, ``mu_G`` the mean of class means,
population (ddof 0) standard deviations, the pseudo-inverse on the rank-(C-1) range.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping, Optional

import torch
from torch import Tensor


NC_FIELDS = ("nc1", "nc2_equinorm", "nc2_equinorm_w", "nc2_equiangular", "nc2_etf", "nc2_etf_w",
             "nc3", "nc4", "gram_ortho_w", "gram_ortho_h")
NEW_FIELDS = ("nc1_trace", "nc1_cdnv", "gnc2_log", "gnc2_riesz", "unc3", "nc5", "rank_means",
              "erank_means")
ALL_FIELDS = NC_FIELDS + NEW_FIELDS


class DegenerateMeansError(ValueError):
    """The centred class means are degenerate: with ``strict=True`` whenever they span fewer than
    C - 1 dimensions (the pseudo-inverse NC1 is undefined); by default only when they all vanish
    (every class mean is the same point, e.g. a network whose features died), where no scale-free
    measure is defined. Callers that train may catch it and log NaN."""


@dataclass(frozen=True)
class NCMetrics:
    """The collapse metrics of docs/science.md §1 and docs/metrics.md (None where undefined).

    Attributes:
        nc1: Tr(Sigma_W Sigma_B^+) / C (the /C of the published definition); None when the centred
            means span fewer than C - 1 dimensions (see ``reasons``).
        nc2_equinorm: population std (ddof 0) / mean of the norms of the centred class means.
        nc2_equinorm_w: the same for the rows of the classifier W (raw).
        nc2_equiangular: mean over c != c' of |cos(m~_c, m~_c') + 1/(C-1)|.
        nc2_etf: || G/||G|| - J/||J|| ||_F, G = M~^T M~, J = I - 11^T/C.
        nc2_etf_w: the same with G = W W^T.
        nc3: || W^T/||W|| - M~/||M~|| ||_F^2 (raw W).
        nc4: mass fraction where argmax(W h + b) differs from the nearest uncentred class mean.
        gram_ortho_w: || G/||G|| - I/||I|| ||_F for G = W W^T.
        gram_ortho_h: the same for the Gram of the uncentred class means.
        nc1_trace: Tr(Sigma_W) / Tr(Sigma_B).
        nc1_cdnv: mean over pairs c < c' of (V_c + V_c') / (2 ||mu_c - mu_c'||^2) (Galanti et al.).
        gnc2_log: mean over pairs of log(1/||u_c - u_c'||), u_c the unit centred means.
        gnc2_riesz: mean over pairs of ||u_c - u_c'||^{-1} (Riesz energy, s = 1).
        unc3: population std / mean over classes of cos(w_c, mu_c - mu_G).
        nc5: mean over c of |cos(mu_c - mu_G, mu_OOD - mu_G)| (Ammar et al. 2024).
        rank_means: numerical rank of the centred means (Gram eigenvalues above rtol times the
            largest, i.e. singular values above sqrt(rtol) times the largest).
        erank_means: entropy effective rank exp(-sum s_i log s_i), s = sigma / sum(sigma).
        reasons: field name -> why it is None (only for fields that are None).
    """

    nc1: Optional[float] = None
    nc2_equinorm: Optional[float] = None
    nc2_equinorm_w: Optional[float] = None
    nc2_equiangular: Optional[float] = None
    nc2_etf: Optional[float] = None
    nc2_etf_w: Optional[float] = None
    nc3: Optional[float] = None
    nc4: Optional[float] = None
    gram_ortho_w: Optional[float] = None
    gram_ortho_h: Optional[float] = None
    nc1_trace: Optional[float] = None
    nc1_cdnv: Optional[float] = None
    gnc2_log: Optional[float] = None
    gnc2_riesz: Optional[float] = None
    unc3: Optional[float] = None
    nc5: Optional[float] = None
    rank_means: Optional[int] = None
    erank_means: Optional[float] = None
    reasons: Mapping[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Optional[float]]:
        """Field name -> value, scalars only (``reasons`` dropped), for history rows and summaries."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reasons"}


# ----------------------------------------------------------------------------- input checks
def labels_weights(labels, weights, n: int, num_classes: Optional[int], *, dtype, device
                   ) -> tuple[Tensor, Tensor, int, Tensor]:
    """Validated (y (n,) long, p (n,) summing to 1, C, P (C,) class masses)."""
    y = check_labels(labels, n, num_classes, device=device)
    C = int(y.max()) + 1 if num_classes is None else int(num_classes)
    p = check_weights(weights, n, dtype=dtype, device=device, name="weights")
    if weights is not None:
        p = p / p.sum()
    count = torch.bincount(y, minlength=C)
    P = torch.zeros(C, dtype=dtype, device=device).index_add_(0, y, p)
    check_classes(count, P)
    return y, p, C, P


def check_labels(labels, n: int, num_classes: Optional[int], *, device) -> Tensor:
    """(n,) long labels in 0..C-1 (C = num_classes or max + 1, at least 2)."""
    y = torch.as_tensor(labels, device=device)
    if y.shape != (n,):
        raise ValueError(f"shape mismatch: {n} samples but labels of shape {tuple(y.shape)}; "
                         "pass one integer label per sample")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise ValueError("labels must be integers 0..C-1")
    y = y.long()
    if n == 0:
        raise ValueError("no samples: features have 0 rows")
    if num_classes is None:
        C = int(y.max()) + 1
    else:
        if int(num_classes) != num_classes:
            raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
        C = int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= C:
        raise ValueError(f"labels out of range: they must lie in 0..{C - 1}, got "
                         f"{int(y.min())}..{int(y.max())} (pass num_classes or fix the labels)")
    if C < 2:
        raise ValueError("a single class in labels (num_classes = 1): collapse metrics need at "
                         "least 2 classes")
    return y


def check_weights(weights, n: int, *, dtype, device, name: str = "weights") -> Tensor:
    """(n,) non-negative finite masses with a positive sum (not normalised); uniform 1/n if None."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    p = torch.as_tensor(weights, device=device).to(dtype)
    if p.shape != (n,):
        raise ValueError(f"shape mismatch: {n} samples but {name} of shape {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError(f"{name} contain NaN/inf; pass finite non-negative masses")
    if (p < 0).any():
        raise ValueError(f"{name} must be non-negative; {int((p < 0).sum())} are negative "
                         f"(smallest {float(p.min()):.3g})")
    if p.sum() <= 0:
        raise ValueError(f"{name} sum to 0; give at least one sample positive mass")
    return p


def check_classes(count: Tensor, P: Tensor) -> None:
    """Every class has samples and positive mass."""
    empty, massless = (count == 0).nonzero().flatten(), (P <= 0).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"class {int(empty[0])} has no samples ({empty.numel()} empty classes); "
                         "give it samples or lower num_classes")
    if massless.numel():
        raise ValueError(f"class {int(massless[0])} has zero total mass; give it positive weight or drop it")


def finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain {int((~torch.isfinite(t)).sum())} NaN/inf entries; "
                         "pass finite values")


def as_features(features, name: str = "features") -> Tensor:
    """A detached floating (n, p) matrix (measurements are never part of a graph)."""
    H = torch.as_tensor(features).detach()
    if not H.is_floating_point():
        H = H.to(torch.get_default_dtype())
    if H.dim() != 2:
        raise ValueError(f"{name} must be a (n, p) matrix; got shape {tuple(H.shape)}")
    finite(name, H)
    return H


def classifier(classifier, bias, C: int, q: int, *, dtype, device) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Validated (W (C, q), b (C,) or None), the single-row binary classifier expanded; (None, None)
    without a classifier."""
    if bias is not None and classifier is None:
        raise ValueError("a bias was given without a classifier; pass classifier=W too")
    if classifier is None:
        return None, None
    W = torch.as_tensor(classifier, device=device).detach().to(dtype)
    b = None if bias is None else torch.as_tensor(bias, device=device).detach().to(dtype).reshape(-1)
    if W.dim() != 2 or W.shape[1] != q or W.shape[0] not in (C, 1) or (W.shape[0] == 1 and C != 2):
        raise ValueError(f"shape mismatch: classifier must be (C, p) = ({C}, {q}) (or (1, {q}) "
                         f"for a binary classifier); got {tuple(W.shape)}")
    if b is not None and b.shape != (W.shape[0],):
        raise ValueError(f"shape mismatch: bias must have {W.shape[0]} entries (one per "
                         f"classifier row); got {tuple(b.shape)}")
    finite("classifier", W)
    if b is not None:
        finite("bias", b)
    return binary_classifier(W, b, C)


def binary_classifier(W: Tensor, b: Optional[Tensor], C: int) -> tuple[Tensor, Optional[Tensor]]:
    """One output row for C = 2 -> logits (-f/2, f/2); otherwise unchanged."""
    if W.shape[0] == 1 and C == 2:
        W = torch.cat([-W / 2, W / 2], 0)
        if b is not None and b.numel() == 1:
            b = torch.cat([-b.reshape(1) / 2, b.reshape(1) / 2])
    return W, b


def default_rtol(rtol: Optional[float], C: int, dtype: torch.dtype) -> float:
    """The relative eigenvalue cutoff of the rank check: ``rtol`` or ``100 C eps(dtype)``."""
    return float(rtol) if rtol is not None else 100.0 * C * torch.finfo(dtype).eps


def check_strict(strict) -> None:
    if strict not in (None, True, False):
        raise ValueError(f"strict must be None, True or False; got {strict!r}")


def too_narrow(C: int, q: int, what: str = "feature dimension p") -> str:
    return (f"C - 1 = {C - 1} exceeds the {what} = {q}: {C} class means cannot span the C-1 "
            f"dimensions NC1 needs; use features of dimension >= {C - 1}")
