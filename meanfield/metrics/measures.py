"""The in-memory and mean-field paths: :func:`neural_collapse`, :func:`particle_neural_collapse`."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .assemble import finish, geometry, sample_sums
from .core import (NCMetrics, as_features, check_strict, check_weights, classifier as _classifier,
                   default_rtol, finite, labels_weights, too_narrow)


def neural_collapse(features, labels, *, classifier=None, bias=None, weights=None,
                    num_classes: Optional[int] = None, rtol: Optional[float] = None,
                    ood_features=None, ood_weights=None, strict: Optional[bool] = None) -> NCMetrics:
    """Neural-collapse metrics of features (docs/science.md §1, docs/metrics.md), in O(n p + C p) memory.

    With ``p`` the masses divided by their sum, ``P_c`` the class masses, ``mu_c`` the class means
    and ``mu_G`` their mean, ``M~ = [mu_c - mu_G]`` (p, C):

    .. math::

        \\mathrm{NC1} = \\tfrac1C \\operatorname{Tr}(\\Sigma_W\\Sigma_B^+)
        = \\sum_j p_j \\|\\tilde M^+(h_j - \\mu_{y_j})\\|^2,\\qquad
        \\mathrm{NC1}_{\\rm tr} = \\frac{\\operatorname{Tr}\\Sigma_W}{\\operatorname{Tr}\\Sigma_B},\\qquad
        \\mathrm{CDNV} = \\binom C2^{-1}\\sum_{c<c'}\\frac{V_c + V_{c'}}{2\\|\\mu_c-\\mu_{c'}\\|^2}.

    Every measure is assembled from C x C Grams and the (n, C) inner products of the features with
    the class means, so no p x p matrix is formed (p >> n works).

    Args:
        features ((n, p) Tensor): penultimate features h_j.
        labels ((n,) int Tensor): classes in 0..C-1.
        classifier ((C, p) Tensor): last-layer weights W (raw); a single row (1, p) with C = 2 is
            the binary classifier f = w.h, read as logits (-f/2, f/2).
        bias ((C,) Tensor): last-layer bias (``(1,)`` for a single-row binary classifier).
        weights ((n,) Tensor): relative sample masses (divided by their sum); default uniform.
        num_classes: C (default max(labels) + 1); every class needs samples with positive mass.
        rtol: relative eigenvalue cutoff of the rank check (default 100 C eps).
        ood_features ((n', p) Tensor): out-of-distribution features, for ``nc5``.
        ood_weights ((n',) Tensor): their relative masses (default uniform).
        strict: ``None`` (default): a complete result whenever the class means are not all equal,
            with ``nc1 = None`` and a reason in ``reasons`` when the centred means span fewer than
            C - 1 dimensions (C - 1 > p included); :class:`DegenerateMeansError` when they all
            vanish. ``True``: raise on any rank deficiency (the behaviour before ``strict``).
            ``False``: never raise for the geometry (undefined measures are None with a reason).

    Returns:
        :class:`NCMetrics`; the classifier fields (nc2_equinorm_w, nc2_etf_w, nc3, nc4,
        gram_ortho_w, unc3) are None without a classifier, nc5 without OOD features.

    Raises:
        ValueError: NaN/inf, shape mismatches, labels out of range, a class without samples or
            mass, a single class, negative weights; a zero classifier and degenerate class means
            as ``strict`` says.
    """
    check_strict(strict)
    H = as_features(features)
    n, q = H.shape
    y, p, C, P = labels_weights(labels, weights, n, num_classes, dtype=H.dtype, device=H.device)
    if strict and C - 1 > q:
        raise ValueError(too_narrow(C, q))
    R = torch.zeros(n, C, dtype=H.dtype, device=H.device)
    R[torch.arange(n, device=H.device), y] = p / P[y]
    Mu = R.T @ H                                   # (C, p) class means
    W, b = _classifier(classifier, bias, C, q, dtype=H.dtype, device=H.device)
    mu_ood = _ood_mean(ood_features, ood_weights, q, H)
    geo = geometry(Mu, W, mu_ood, C, q, default_rtol(rtol, C, H.dtype), strict)
    D = H - Mu[y]
    U = D @ geo.Mt.T
    S = H @ Mu.T
    logits = None if W is None else H @ W.T + (b if b is not None else 0)
    return finish(geo, sample_sums(geo, U, (D ** 2).sum(1), S, logits, y, p), P)


def _ood_mean(ood_features, ood_weights, q: int, H):
    if ood_features is None:
        if ood_weights is not None:
            raise ValueError("ood_weights were given without ood_features")
        return None
    O = as_features(ood_features, "ood_features").to(H.dtype).to(H.device)
    if O.shape[1] != q or O.shape[0] == 0:
        raise ValueError(f"shape mismatch: ood_features must be (n', {q}) with n' >= 1; got {tuple(O.shape)}")
    w = check_weights(ood_weights, O.shape[0], dtype=H.dtype, device=H.device, name="ood_weights")
    return (w[:, None] * O).sum(0) / w.sum()


def particle_neural_collapse(particles, samples, *, bias=None, backend: str = "auto", system: int = 0,
                             rtol: Optional[float] = None, ood_samples=None,
                             strict: Optional[bool] = None) -> NCMetrics:
    """The metrics of a mean-field network's hidden features, from reductions.

    Features are the m hidden activations ``h_j = (sigma(w_i . x_j + b_i))_i`` with the mean-field
    inner product ``<h, h'> = (1/m) sum_i h_i h'_i`` (equivalently h / sqrt(m) in R^m), and the
    classifier is ``W = a^T`` scaled alike (``a^T / sqrt(m)``), so that ``W h = f(x)``. A network
    with one output (k = 1) and two classes uses the binary classifier ``(-f/2, f/2)``.

    The class means are the velocity reduction with ``g_jc = p_j 1[y_j = c] / P_c``
    (``mu = -v_a``); every inner product of a feature with an m-vector ``v`` is the output
    reduction with ``a := v``. The within-class squares ``||h_j - mu_{y_j}||^2`` (nc1_trace, cdnv)
    are computed exactly from the activations in chunks of samples (memory ~ 2^22 numbers).

    Args:
        particles: :class:`meanfield.particles.Particles`.
        samples: :class:`meanfield.data.Samples`, a Distribution or a tuple ``(X, y[, p])``.
        bias ((C,) Tensor): optional output bias added to f.
        backend: reduction backend name (``auto``, ``dense``, ``keops``, ...).
        system: which network of the batch.
        ood_samples: out-of-distribution inputs ``(n', d)`` (or samples whose masses are used),
            for nc5.
        strict: as :func:`neural_collapse`.

    Returns:
        :class:`NCMetrics`, equal to ``neural_collapse(particles.features(X)[system] / sqrt(m), y,
        classifier=a^T / sqrt(m), weights=p)``.
    """
    from ..backends import resolve_backend
    from ..data.base import as_samples
    check_strict(strict)
    B = particles.batch
    if int(system) != system or not 0 <= system < B:
        raise ValueError(f"system must be an index in 0..{B - 1}; got {system!r}")
    net = particles.select(int(system))
    s = as_samples(samples, dtype=net.dtype, device=net.device)
    X, y, p, C = s.X[None], s.y, s.p, s.num_classes
    if C < 2:
        raise ValueError("a single class: collapse metrics need at least 2 classes")
    y, p, C, P = labels_weights(y, p, s.n, C, dtype=net.dtype, device=net.device)
    m, k = net.m, net.k
    if strict and C - 1 > m:
        raise ValueError(too_narrow(C, m, "feature dimension m (neurons)"))
    if not (k == C or (k == 1 and C == 2)):
        raise ValueError(f"the network has k = {k} outputs for C = {C} classes; the classifier "
                         "needs k = C (or k = 1 for two classes)")
    act = net.act
    be = resolve_backend(backend, act=act, device=net.device, m=m, n=s.n, d=net.d, dtype=net.dtype)
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
    Mu, W = mu.T / r, A.T / r                      # Euclidean representation h / sqrt(m)
    mu_ood = None
    if ood_samples is not None:
        o = as_samples(ood_samples, dtype=net.dtype, device=net.device) if not torch.is_tensor(ood_samples) else None
        Xo = ood_samples.to(net.dtype).to(net.device) if o is None else o.X
        if Xo.dim() != 2 or Xo.shape[1] != net.d or Xo.shape[0] == 0:
            raise ValueError(f"shape mismatch: ood_samples must be (n', {net.d}); got {tuple(Xo.shape)}")
        go = (torch.full((Xo.shape[0],), 1.0 / Xo.shape[0], dtype=net.dtype, device=net.device)
              if o is None else o.p / o.p.sum())
        vo, _, _ = be.velocities(act, net.a.new_zeros(1, m, 1), net.w, net.b, Xo[None],
                                 go[None, :, None], inner=False)
        mu_ood = -vo[0, :, 0] / r
    geo = geometry(Mu, W, mu_ood, C, m, default_rtol(rtol, C, net.dtype), strict,
                   "feature dimension m (neurons)")
    U = O[:, :C] - (Mu @ (mt.T / r).T)[y]
    S = O[:, C:2 * C]
    logits = O[:, 2 * C:]
    if bias is not None:
        b = torch.as_tensor(bias, device=net.device).to(net.dtype).reshape(-1)
        if b.shape != (C,):
            raise ValueError(f"shape mismatch: bias must have C = {C} entries; got {tuple(b.shape)}")
        finite("bias", b)
        logits = logits + b
    dd = torch.empty(s.n, dtype=net.dtype, device=net.device)
    step = max(1, 2 ** 22 // m)
    for i in range(0, s.n, step):                  # exact within-class squares, chunked
        F = net.features(s.X[i:i + step])[0]       # (chunk, m)
        dd[i:i + step] = ((F - mu.T[y[i:i + step]]) ** 2).sum(1) / m
    return finish(geo, sample_sums(geo, U, dd, S, logits, y, p), P)
