"""Collapse metrics, one code for finite networks and mean-field networks (science.md §1).

Features ``h_j`` with labels ``y_j`` and relative masses ``p_j`` (divided by their sum):

.. math::

    \\mu_c = \\frac{\\sum_{j\\in c} p_j h_j}{P_c},\\quad \\mu_G = \\frac1C\\sum_c \\mu_c,\\quad
    \\tilde M = [\\mu_1-\\mu_G, \\dots, \\mu_C-\\mu_G],

    \\mathrm{NC1} = \\frac1C \\operatorname{Tr}(\\Sigma_W\\Sigma_B^+)
    = \\sum_j p_j \\big\\|\\tilde M^+ (h_j - \\mu_{y_j})\\big\\|^2,
    \\qquad \\tilde M^+ x = (\\tilde M^\\top\\tilde M)^+\\tilde M^\\top x .

Every metric is assembled from C x C Grams and the (n, C) inner products of the features with the
class means, so no p x p matrix is ever formed (p >> n works), and a mean-field network's features
(the m hidden activations) need only the backend reductions (:func:`particle_neural_collapse`).

The pseudo-inverse is taken on the rank-(C-1) range exactly: the Gram is restricted to the
hyperplane orthogonal to the all-ones vector (which the centred means annihilate) and its
eigenvalues there must all exceed ``rtol`` times the largest; otherwise the centred means are
degenerate (two class means coincide, or all features are equal) and a ValueError says so.

Binary classifiers with a single output row ``w`` (C = 2) are read as the logits ``(-f/2, f/2)``,
``W = [-w/2; w/2]``, so that class 1 (signed label +1, :func:`meanfield.losses.signed_labels`) is
predicted when ``f > 0``.

Output collapse (science.md §1, last part) is measured by :func:`output_collapse`: the absolute
within-class spread, the margin, and the spread normalised by a variation norm or by the margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import Tensor

from .losses import signed_labels
from .theory.etf import centred_basis

__all__ = ["NCMetrics", "neural_collapse", "particle_neural_collapse", "OutputCollapse",
           "output_spread", "normalised_outputs", "margin", "output_collapse",
           "particle_output_collapse", "NC_FIELDS"]

NC_FIELDS = ("nc1", "nc2_equinorm", "nc2_equinorm_w", "nc2_equiangular", "nc2_etf", "nc2_etf_w",
             "nc3", "nc4", "gram_ortho_w", "gram_ortho_h")




class DegenerateMeansError(ValueError):
    """The centred class means span fewer than C - 1 dimensions (e.g. a network whose features
    died): NC1 and the ETF distances are undefined. Callers that train may catch it and log NaN."""

@dataclass(frozen=True)
class NCMetrics:
    """The collapse metrics of science.md §1 (None where the inputs do not allow one).

    Attributes:
        nc1: Tr(Sigma_W Sigma_B^+) / C (the /C of the published definition).
        nc2_equinorm: population std (ddof 0) / mean of the norms of the centred class means.
        nc2_equinorm_w: the same for the rows of the classifier W (raw).
        nc2_equiangular: mean over c != c' of |cos(m~_c, m~_c') + 1/(C-1)|.
        nc2_etf: || G/||G|| - J/||J|| ||_F, G = M~^T M~, J = I - 11^T/C.
        nc2_etf_w: the same with G = W W^T.
        nc3: || W^T/||W|| - M~/||M~|| ||_F^2 (raw W).
        nc4: mass fraction where argmax(W h + b) differs from the nearest uncentred class mean.
        gram_ortho_w: || G/||G|| - I/||I|| ||_F for G = W W^T.
        gram_ortho_h: the same for the Gram of the uncentred class means.
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

    def as_dict(self) -> dict[str, Optional[float]]:
        """Field name -> value (flat, for history rows and summaries)."""
        return asdict(self)


# ----------------------------------------------------------------------------- input checks
def _labels_weights(labels, weights, n: int, num_classes: Optional[int], *, dtype, device
                    ) -> tuple[Tensor, Tensor, int, Tensor]:
    """Validated (y (n,) long, p (n,) summing to 1, C, P (C,) class masses)."""
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
        raise ValueError("a single class: collapse metrics need at least 2 classes")
    if weights is None:
        p = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    else:
        p = torch.as_tensor(weights, device=device).to(dtype)
        if p.shape != (n,):
            raise ValueError(f"shape mismatch: {n} samples but weights of shape {tuple(p.shape)}")
        if not torch.isfinite(p).all():
            raise ValueError("weights contain NaN/inf; pass finite non-negative masses")
        if (p < 0).any():
            raise ValueError(f"weights must be non-negative; {int((p < 0).sum())} are negative "
                             f"(smallest {float(p.min()):.3g})")
        total = p.sum()
        if total <= 0:
            raise ValueError("weights sum to 0; give at least one sample positive mass")
        p = p / total
    count = torch.bincount(y, minlength=C)
    P = torch.zeros(C, dtype=dtype, device=device).index_add_(0, y, p)
    empty, massless = (count == 0).nonzero().flatten(), (P <= 0).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"class {int(empty[0])} has no samples ({empty.numel()} empty classes); "
                         "give it samples or lower num_classes")
    if massless.numel():
        raise ValueError(f"class {int(massless[0])} has zero total mass; give it positive weight or drop it")
    return y, p, C, P


def _finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain {int((~torch.isfinite(t)).sum())} NaN/inf entries; "
                         "pass finite values")


def _binary_classifier(W: Tensor, b: Optional[Tensor], C: int) -> tuple[Tensor, Optional[Tensor]]:
    """One output row for C = 2 -> logits (-f/2, f/2); otherwise unchanged."""
    if W.shape[0] == 1 and C == 2:
        W = torch.cat([-W / 2, W / 2], 0)
        if b is not None and b.numel() == 1:
            b = torch.cat([-b.reshape(1) / 2, b.reshape(1) / 2])
    return W, b


def _rtol(rtol: Optional[float], C: int, dtype: torch.dtype) -> float:
    return float(rtol) if rtol is not None else 100.0 * C * torch.finfo(dtype).eps


# ----------------------------------------------------------------------------- the assembly
def _fro(G: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(G)


def _gram_distance(G: Tensor, target: Tensor, what: str) -> float:
    nG = _fro(G)
    if not nG > 0:
        raise ValueError(f"{what} is zero; its normalised Gram is undefined")
    return float(_fro(G / nG - target / _fro(target)))


def _equinorm(norms: Tensor, what: str) -> float:
    mean = norms.mean()
    if not mean > 0:
        raise ValueError(f"{what} are all zero; equinormness is undefined")
    return float(norms.std(unbiased=False) / mean)


def _assemble(Mu: Tensor, W: Optional[Tensor], U: Tensor, S: Tensor, logits: Optional[Tensor],
              y: Tensor, p: Tensor, C: int, rtol: float) -> NCMetrics:
    """Metrics from the means and the sample inner products.

    Args:
        Mu ((C, q) Tensor): uncentred class means (rows) in a Euclidean representation.
        W ((C, q) Tensor): classifier in the same representation, or None.
        U ((n, C) Tensor): <h_j - mu_{y_j}, m~_c>.
        S ((n, C) Tensor): <h_j, mu_c>.
        logits ((n, C) Tensor): W h_j + b, or None.
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
    if rank < C - 1:
        raise DegenerateMeansError(f"the centred class means are degenerate: they span {rank} < C-1 = {C - 1} "
                         f"dimensions (Gram eigenvalues {lam.tolist()}, cutoff {float(cut):.3g}); "
                         "Sigma_B has no rank-(C-1) pseudo-inverse. Two class means coincide or "
                         "all features are equal")
    Z = (U @ B @ V) / lam
    nc1 = float((p * (Z ** 2).sum(1)).sum())
    norms = torch.diagonal(G).clamp_min(0).sqrt()
    cos = G / (norms[:, None] * norms[None, :])
    off = ~torch.eye(C, dtype=torch.bool, device=G.device)
    out = dict(nc1=nc1, nc2_equinorm=_equinorm(norms, "centred class means"),
               nc2_equiangular=float((cos[off] + 1.0 / (C - 1)).abs().mean()),
               nc2_etf=_gram_distance(G, J, "the centred-means Gram"),
               gram_ortho_h=_gram_distance(Gmu, I, "the class-means Gram"))
    if W is not None:
        WW = W @ W.T
        nW, nM = _fro(W), _fro(Mt)
        if not nW > 0:
            raise ValueError("the classifier W is zero; nc2_w/nc3 are undefined")
        out.update(nc2_equinorm_w=_equinorm(torch.diagonal(WW).clamp_min(0).sqrt(), "classifier rows"),
                   nc2_etf_w=_gram_distance(WW, J, "the classifier Gram W W^T"),
                   gram_ortho_w=_gram_distance(WW, I, "the classifier Gram W W^T"),
                   nc3=float(((W / nW - Mt / nM) ** 2).sum()))
    if logits is not None:
        near = (torch.diagonal(Gmu)[None, :] - 2 * S).argmin(1)
        out["nc4"] = float((p * (logits.argmax(1) != near).to(p.dtype)).sum())
    return NCMetrics(**out)


# ----------------------------------------------------------------------------- public API
def neural_collapse(features, labels, *, classifier=None, bias=None, weights=None,
                    num_classes: Optional[int] = None, rtol: Optional[float] = None) -> NCMetrics:
    """Neural-collapse metrics of features (science.md §1), in O(n p + C p) memory.

    Args:
        features ((n, p) Tensor): penultimate features h_j.
        labels ((n,) int Tensor): classes in 0..C-1.
        classifier ((C, p) Tensor): last-layer weights W (raw); a single row (1, p) with C = 2 is
            the binary classifier f = w.h, read as logits (-f/2, f/2).
        bias ((C,) Tensor): last-layer bias (``(1,)`` for a single-row binary classifier).
        weights ((n,) Tensor): relative sample masses (divided by their sum); default uniform.
        num_classes: C (default max(labels) + 1); every class needs samples with positive mass.
        rtol: relative eigenvalue cutoff of the rank check (default 100 C eps).

    Returns:
        :class:`NCMetrics`; the classifier fields (nc2_equinorm_w, nc2_etf_w, nc3, nc4,
        gram_ortho_w) are None without a classifier.

    Raises:
        ValueError: NaN/inf, shape mismatches, labels out of range, a class without samples or
            mass, a single class, C - 1 > p, negative weights, degenerate class means.
    """
    H = torch.as_tensor(features).detach()  # metrics are measurements: never part of a graph
    if not H.is_floating_point():
        H = H.to(torch.get_default_dtype())
    if H.dim() != 2:
        raise ValueError(f"features must be a (n, p) matrix; got shape {tuple(H.shape)}")
    _finite("features", H)
    n, q = H.shape
    y, p, C, P = _labels_weights(labels, weights, n, num_classes, dtype=H.dtype, device=H.device)
    if C - 1 > q:
        raise ValueError(f"C - 1 = {C - 1} exceeds the feature dimension p = {q}: {C} class means "
                         f"cannot span the C-1 dimensions NC1 needs; use features of dimension >= {C - 1}")
    R = torch.zeros(n, C, dtype=H.dtype, device=H.device)
    R[torch.arange(n, device=H.device), y] = p / P[y]
    Mu = R.T @ H                                   # (C, p) class means
    Mt = Mu - Mu.mean(0, keepdim=True)
    U = (H - Mu[y]) @ Mt.T
    S = H @ Mu.T
    W, logits = None, None
    if bias is not None and classifier is None:
        raise ValueError("a bias was given without a classifier; pass classifier=W too")
    if classifier is not None:
        W = torch.as_tensor(classifier, device=H.device).detach().to(H.dtype)
        b = None if bias is None else torch.as_tensor(bias, device=H.device).detach().to(H.dtype).reshape(-1)
        if W.dim() != 2 or W.shape[1] != q or W.shape[0] not in (C, 1) or (W.shape[0] == 1 and C != 2):
            raise ValueError(f"shape mismatch: classifier must be (C, p) = ({C}, {q}) (or (1, {q}) "
                             f"for a binary classifier); got {tuple(W.shape)}")
        if b is not None and b.shape != (W.shape[0],):
            raise ValueError(f"shape mismatch: bias must have {W.shape[0]} entries (one per "
                             f"classifier row); got {tuple(b.shape)}")
        _finite("classifier", W)
        if b is not None:
            _finite("bias", b)
        W, b = _binary_classifier(W, b, C)
        logits = H @ W.T + (b if b is not None else 0)
    return _assemble(Mu, W, U, S, logits, y, p, C, _rtol(rtol, C, H.dtype))


def particle_neural_collapse(particles, samples, *, bias=None, backend: str = "auto", system: int = 0,
                             rtol: Optional[float] = None) -> NCMetrics:
    """The metrics of a mean-field network's hidden features, from reductions, in O(m + n) memory.

    Features are the m hidden activations ``h_j = (sigma(w_i . x_j + b_i))_i`` with the mean-field
    inner product ``<h, h'> = (1/m) sum_i h_i h'_i`` (equivalently h / sqrt(m) in R^m), and the
    classifier is ``W = a^T`` scaled alike (``a^T / sqrt(m)``), so that ``W h = f(x)``. A network
    with one output (k = 1) and two classes uses the binary classifier ``(-f/2, f/2)``.

    The class means are the velocity reduction with ``g_jc = p_j 1[y_j = c] / P_c``
    (``mu = -v_a``); every inner product of a feature with an m-vector ``v`` is the output
    reduction with ``a := v``. Nothing of size m x n is formed by the fused backends.

    Args:
        particles: :class:`meanfield.particles.Particles`.
        samples: :class:`meanfield.data.Samples`, a Distribution or a tuple ``(X, y[, p])``.
        bias ((C,) Tensor): optional output bias added to f.
        backend: reduction backend name (``auto``, ``dense``, ``keops``, ...).
        system: which network of the batch.

    Returns:
        :class:`NCMetrics`, equal to ``neural_collapse(particles.features(X)[system] / sqrt(m), y,
        classifier=a^T / sqrt(m), weights=p)``.
    """
    from .backends import resolve_backend
    from .data.base import as_samples
    B = particles.batch
    if int(system) != system or not 0 <= system < B:
        raise ValueError(f"system must be an index in 0..{B - 1}; got {system!r}")
    net = particles.select(int(system))
    s = as_samples(samples, dtype=net.dtype, device=net.device)
    X, y, p, C = s.X[None], s.y, s.p, s.num_classes
    if C < 2:
        raise ValueError("a single class: collapse metrics need at least 2 classes")
    y, p, C, P = _labels_weights(y, p, s.n, C, dtype=net.dtype, device=net.device)
    m, k = net.m, net.k
    if C - 1 > m:
        raise ValueError(f"C - 1 = {C - 1} exceeds the feature dimension m = {m} neurons: use m >= {C - 1}")
    if not (k == C or (k == 1 and C == 2)):
        raise ValueError(f"the network has k = {k} outputs for C = {C} classes; the classifier "
                         "needs k = C (or k = 1 for two classes)")
    act = net.act
    be = resolve_backend(backend, act=act, device=net.device, m=m, n=s.n, d=net.d)
    g = torch.zeros(1, s.n, C, dtype=net.dtype, device=net.device)
    g[0, torch.arange(s.n, device=net.device), y] = p / P[y]
    va, _, _ = be.velocities(act, net.a.new_zeros(1, m, C), net.w, net.b, X, g, inner=False)
    mu = -va[0]                                    # (m, C) raw class means of sigma(z)
    mt = mu - mu.mean(1, keepdim=True)
    A = net.a[0]
    if k == 1:
        A = torch.cat([-A / 2, A / 2], 1)          # binary logits (-f/2, f/2)
    O = be.outputs(act, torch.cat([mt, mu, A], 1)[None], net.w, net.b, X)[0]   # (n, 3C)
    r = math.sqrt(m)
    Mu, Mt, W = mu.T / r, mt.T / r, A.T / r        # Euclidean representation h / sqrt(m)
    U = O[:, :C] - (Mu @ Mt.T)[y]
    S = O[:, C:2 * C]
    logits = O[:, 2 * C:]
    if bias is not None:
        b = torch.as_tensor(bias, device=net.device).to(net.dtype).reshape(-1)
        if b.shape != (C,):
            raise ValueError(f"shape mismatch: bias must have C = {C} entries; got {tuple(b.shape)}")
        _finite("bias", b)
        logits = logits + b
    return _assemble(Mu, W, U, S, logits, y, p, C, _rtol(rtol, C, net.dtype))


# ----------------------------------------------------------------------------- output collapse
@dataclass(frozen=True)
class OutputCollapse:
    """Output-collapse statistics of one network (science.md §1, "Output collapse").

    Attributes:
        spread: max over classes of the absolute within-class spread (unbounded regime).
        spread_per_class: the spread of every class.
        margin: min_j xi_j f(x_j) (binary) or min_j (f_y - max_{c != y} f_c).
        scale: the normaliser (variation norm or margin), or None.
        normalised_spread: spread / scale (direction regime), or None.
        normalised_margin: margin / scale, or None.
    """

    spread: float
    spread_per_class: tuple[float, ...]
    margin: float
    scale: Optional[float] = None
    normalised_spread: Optional[float] = None
    normalised_margin: Optional[float] = None

    def as_dict(self) -> dict[str, Optional[float]]:
        """Flat scalars (``spread_per_class`` dropped) for history rows."""
        d = asdict(self)
        d.pop("spread_per_class")
        return d


def _outputs(outputs) -> Tensor:
    f = torch.as_tensor(outputs)
    if not f.is_floating_point():
        f = f.to(torch.get_default_dtype())
    if f.dim() == 1:
        f = f[:, None]
    if f.dim() != 2:
        raise ValueError(f"outputs must be (n,) or (n, k) (select one system of a batch); got "
                         f"shape {tuple(f.shape)}")
    _finite("outputs", f)
    return f


def output_spread(outputs, labels, weights=None, *, num_classes: Optional[int] = None) -> Tensor:
    """Absolute within-class spread of the outputs, per class.

    For k outputs the spread of a class is its sup-norm diameter, the max over output
    coordinates of (max - min) over the class's samples; samples of zero weight are ignored.

    .. math::

        s_c = \\max_{r \\le k}\\Big(\\max_{j\\in c,\\,p_j>0} f_r(x_j) - \\min_{j\\in c,\\,p_j>0} f_r(x_j)\\Big)

    Args:
        outputs ((n,) or (n, k) Tensor): f(x_j).
        labels ((n,) int Tensor).
        weights ((n,) Tensor): relative masses; only their support matters.

    Returns:
        (C,) Tensor; its max is the spread of the unbounded regime.
    """
    f = _outputs(outputs)
    y, p, C, _ = _labels_weights(labels, weights, f.shape[0], num_classes, dtype=f.dtype, device=f.device)
    keep = p > 0
    out = []
    for c in range(C):
        fc = f[(y == c) & keep]
        out.append((fc.max(0).values - fc.min(0).values).max())
    return torch.stack(out)


def margin(outputs, labels, weights=None) -> float:
    """The margin: min_j xi_j f(x_j) (one output, xi = 2y - 1) or min_j (f_y - max_{c != y} f_c).

    Samples of zero weight are ignored. Negative when a sample is misclassified.
    """
    f = _outputs(outputs)
    n, k = f.shape
    C = 2 if k == 1 else k
    y, p, _, _ = _labels_weights(labels, weights, n, C, dtype=f.dtype, device=f.device)
    keep = p > 0
    if k == 1:
        g = signed_labels(y, f.dtype) * f[:, 0]
    else:
        fy = f.gather(1, y[:, None])[:, 0]
        other = f.scatter(1, y[:, None], float("-inf")).max(1).values
        g = fy - other
    return float(g[keep].min())


def normalised_outputs(outputs, scale) -> Tensor:
    """f / scale, with scale a variation norm (``Particles.variation_norm('l1'|'l2')``) or the margin.

    Raises:
        ValueError: scale not a positive finite number (a non-positive margin means the data are
            not separated, and the direction regime does not apply).
    """
    f = _outputs(outputs)
    return f / _scale(scale)


def _scale(scale) -> float:
    s = torch.as_tensor(scale, dtype=torch.float64)
    if s.numel() != 1 or not torch.isfinite(s).all() or not float(s) > 0:
        raise ValueError(f"scale must be one positive finite number; got {s.tolist()} (a margin "
                         "<= 0 means the classes are not separated)")
    return float(s)


def output_collapse(outputs, labels, *, weights=None, scale=None,
                    num_classes: Optional[int] = None) -> OutputCollapse:
    """Spread, margin and normalised spread of the outputs.

    Args:
        outputs ((n,) or (n, k) Tensor): f(x_j) of one network.
        labels ((n,) int Tensor).
        weights ((n,) Tensor): relative masses (zero-weight samples are ignored).
        scale: None (no normalisation), ``"margin"``, or a positive number such as
            ``particles.variation_norm("l2")[0]``.
    """
    spreads = output_spread(outputs, labels, weights, num_classes=num_classes)
    mg = margin(outputs, labels, weights)
    spread = float(spreads.max())
    if scale is None:
        return OutputCollapse(spread, tuple(spreads.tolist()), mg)
    if isinstance(scale, str):
        if scale != "margin":
            raise ValueError(f"unknown scale {scale!r}; valid: None, 'margin' or a positive number")
        scale = mg
    s = _scale(scale)
    return OutputCollapse(spread, tuple(spreads.tolist()), mg, s, spread / s, mg / s)


def particle_output_collapse(particles, samples, *, norm: str = "l2", backend: str = "auto",
                             system: int = 0) -> OutputCollapse:
    """:func:`output_collapse` of a mean-field network on samples, normalised by ``norm``.

    Args:
        norm: ``l1`` or ``l2`` (variation norms, science.md §2) or ``margin``.
    """
    from .data.base import as_samples
    if norm not in ("l1", "l2", "margin"):
        raise ValueError(f"unknown norm {norm!r}; valid: l1, l2, margin")
    if int(system) != system or not 0 <= system < particles.batch:
        raise ValueError(f"system must be an index in 0..{particles.batch - 1}; got {system!r}")
    net = particles.select(int(system))
    s = as_samples(samples, dtype=net.dtype, device=net.device)
    f = net.predict(s.X, backend=backend)[0]
    scale = "margin" if norm == "margin" else net.variation_norm(norm)[0]
    return output_collapse(f, s.y, weights=s.p, scale=scale, num_classes=s.num_classes)
