"""Weight-decay identities of deep homogeneous networks (docs/science.md §3.4, Rangamani & Banburski).

Bias-free ReLU net ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` (1-homogeneous in every W_k), features
``h = relu(W_{L-1} ... )``, objective (masses p_j summing to 1, loss scale s)

.. math::

    L = \\frac{s}{2}\\sum_j p_j \\|y_j - f(x_j)\\|^2 + \\sum_k \\frac{\\lambda_k}{2}\\|W_k\\|_F^2 .

**Convention.** ``s = 1/C`` by default, which on balanced data is the ``(1/2NC) sum |y - f|^2`` of
docs/science.md §3.4 and of :mod:`meanfield.deep.train`. At every critical point:

.. math::

    \\lambda_k \\|W_k\\|_F^2 = s \\sum_j p_j \\langle y_j - f_j, f_j\\rangle \\quad (\\text{every } k),
    \\qquad W_L = \\frac{s}{\\lambda_L} \\sum_j p_j (y_j - f_j) h_j^T .

Symmetric quasi-interpolation on balanced data: ``f = (1 - eps) e_c + delta (1 - e_c)`` on class c.
Then, with class means ``mu_c`` of h and ``mu_G`` their mean,

.. math::

    W^c = \\frac{s}{C\\lambda_L}\\big[(\\varepsilon + \\delta)\\mu_c - C\\delta\\,\\mu_G\\big],\\qquad
    \\lambda_L \\|W_L\\|_F^2 = s\\big[\\varepsilon(1 - \\varepsilon) - (C-1)\\delta^2\\big].

The paper's case is ``delta = eps/(C-1)``: ``W^c = s eps/(lambda (C-1)) (mu_c - mu_G)``,
``|W^c|^2 = s (eps - C eps^2/(C-1)) / (C lambda)``, ``cos(W^c, W^c') = -1/(C-1)``. docs/science.md
writes these with ``s = 1`` (the ``1/(2N)`` normalisation); with this package's ``s = 1/C`` they
carry the extra factor ``1/C``. A bias-free net with ``lambda > 0`` shrinks the mean output too, so
in practice ``delta != eps/(C-1)``: :func:`quasi_interpolation` measures both and checks the
general form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["LayerBalance", "layer_balance", "last_layer_stationarity", "QuasiInterpolation",
           "quasi_interpolation", "symmetric_quasi_interpolation", "nc_loss_without_decay"]


def _lams(lam, L: int) -> list[float]:
    lams = list(lam) if isinstance(lam, (tuple, list)) else [float(lam)] * L
    if len(lams) != L or any(not (math.isfinite(x) and x > 0) for x in lams):
        raise ValueError(f"lam must be > 0, one number or one per layer ({L} layers); got {lam!r}")
    return [float(x) for x in lams]


def _outputs(model, samples, input_shape=None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """h, f, Y (one-hot), p, y on the model's device and dtype, eval mode, no grad."""
    p0 = next(model.parameters())
    X = samples.X.to(device=p0.device, dtype=p0.dtype)
    if input_shape:
        X = X.view(X.shape[0], *input_shape)
    was = model.training
    model.eval()
    with torch.no_grad():
        h = model.features(X)
        f = model.classifier(h)
    model.train(was)
    y = samples.y.to(p0.device)
    C = f.shape[1]
    if C < 2:
        raise ValueError("the identities need one output per class (C >= 2, one-hot MSE targets)")
    Y = torch.nn.functional.one_hot(y, C).to(f.dtype)
    return h, f, Y, samples.p.to(device=p0.device, dtype=p0.dtype), y


@dataclass(frozen=True)
class LayerBalance:
    """Layer balance at a critical point.

    Attributes:
        lhs (tuple): ``lambda_k |W_k|^2`` per layer.
        rhs: ``s sum_j p_j <y_j - f_j, f_j>``.
        residuals (tuple): ``|lhs_k - rhs| / |rhs|`` per layer.
        max_residual: the largest of them.
    """

    lhs: tuple
    rhs: float
    residuals: tuple
    max_residual: float


def layer_balance(model, samples, lam: float | Sequence[float], *, loss_scale: Optional[float] = None
                  ) -> LayerBalance:
    """Residuals of ``lambda_k |W_k|^2 = s sum_j p_j <y_j - f_j, f_j>`` for every layer.

    Args:
        model: a :class:`meanfield.deep.models.DeepHomogeneousMLP` (``weights()`` gives W_1..W_L).
        samples: the training :class:`meanfield.Samples`.
        lam: weight decay, one number or one per layer.
        loss_scale: s; default 1/C.
    """
    h, f, Y, p, _ = _outputs(model, samples)
    s = 1.0 / f.shape[1] if loss_scale is None else float(loss_scale)
    Ws = [W.detach() for W in model.weights()]
    lams = _lams(lam, len(Ws))
    rhs = s * float((p * ((Y - f) * f).sum(1)).sum())
    lhs = tuple(lk * float((W ** 2).sum()) for lk, W in zip(lams, Ws))
    if rhs == 0.0:
        raise ValueError("the net sits at the trivial critical point (f = 0): layer balance holds as "
                         "0 = 0 and its relative residual is undefined; lower lambda")
    res = tuple(abs(v - rhs) / abs(rhs) for v in lhs)
    return LayerBalance(lhs, rhs, res, max(res))


def last_layer_stationarity(model, samples, lam: float, *, loss_scale: Optional[float] = None) -> float:
    """Relative residual ``|W_L - (s/lambda) sum_j p_j (y_j - f_j) h_j^T| / |W_L|`` (Frobenius)."""
    h, f, Y, p, _ = _outputs(model, samples)
    s = 1.0 / f.shape[1] if loss_scale is None else float(loss_scale)
    lam = _lams(lam, 1)[0]
    W = model.classifier.weight.detach()
    pred = (s / lam) * ((p[:, None] * (Y - f)).T @ h)
    return float((W - pred).norm() / W.norm())


@dataclass(frozen=True)
class QuasiInterpolation:
    """Symmetric quasi-interpolation of a trained net and the identities it implies.

    Attributes:
        eps: ``1 - mean_j f_{y_j}(x_j)``.
        delta: mean of the off-class outputs.
        symmetry_residual: ``max_j |f_j - ((1-eps) e_{y_j} + delta (1 - e_{y_j}))|``.
        row_residual: ``|W_L - W_pred| / |W_L|`` with ``W_pred`` rows from the general formula.
        norm_residual: relative error of ``lambda |W_L|^2 = s [eps(1-eps) - (C-1) delta^2]``.
        row_norm_spread: max/min - 1 of the row norms of W_L (0 when symmetric).
        cosines ((C, C) Tensor): cosines between rows of W_L.
        paper_case: True when ``delta = eps/(C-1)`` to within 1e-3 relative (then the paper's
            formulas apply verbatim, up to the factor s).
    """

    eps: float
    delta: float
    symmetry_residual: float
    row_residual: float
    norm_residual: float
    row_norm_spread: float
    cosines: Tensor
    paper_case: bool


def quasi_interpolation(model, samples, lam: float, *, loss_scale: Optional[float] = None
                        ) -> QuasiInterpolation:
    """Measure eps, delta and check the quasi-interpolation formulas (module docstring).

    Needs balanced classes (equal class masses).
    """
    h, f, Y, p, y = _outputs(model, samples)
    C = f.shape[1]
    s = 1.0 / C if loss_scale is None else float(loss_scale)
    lam = _lams(lam, 1)[0]
    P = torch.zeros(C, dtype=p.dtype, device=p.device).index_add_(0, y, p)
    if float((P - 1.0 / C).abs().max()) > 1e-9:
        raise ValueError(f"quasi_interpolation needs balanced class masses; got {P.tolist()}")
    on = float((p * (f * Y).sum(1)).sum())
    off = float((p * (f * (1 - Y)).sum(1)).sum()) / (C - 1)
    eps, delta = 1.0 - on, off
    target = (1 - eps) * Y + delta * (1 - Y)
    sym = float((f - target).abs().max())
    mu = (Y * p[:, None]).T @ h / P[:, None]  # (C, p) class means
    muG = mu.mean(0)
    W = model.classifier.weight.detach()
    Wpred = (s / (C * lam)) * ((eps + delta) * mu - C * delta * muG[None])
    rows = float((W - Wpred).norm() / W.norm())
    nrm_pred = s * (eps * (1 - eps) - (C - 1) * delta ** 2)
    nrm = lam * float((W ** 2).sum())
    rn = W.norm(dim=1)
    Wn = W / rn[:, None]
    return QuasiInterpolation(eps, delta, sym, rows, abs(nrm - nrm_pred) / abs(nrm_pred),
                              float(rn.max() / rn.min() - 1), Wn @ Wn.T,
                              abs(delta * (C - 1) - eps) <= 1e-3 * abs(eps))


def symmetric_quasi_interpolation(eps: float, C: int, lam: float, *, loss_scale: Optional[float] = None
                                  ) -> dict:
    """The paper's predictions for ``delta = eps/(C-1)``: coefficient of ``mu_c - mu_G`` in W^c,
    ``|W^c|^2`` and the cosine between rows (with this package's loss scale ``s``, default 1/C)."""
    if C < 2 or not lam > 0:
        raise ValueError(f"need C >= 2 and lam > 0; got C={C!r}, lam={lam!r}")
    s = 1.0 / C if loss_scale is None else float(loss_scale)
    return {"coef": s * eps / (lam * (C - 1)),
            "row_norm2": s * (eps - C * eps ** 2 / (C - 1)) / (C * lam),
            "cos": -1.0 / (C - 1)}


def nc_loss_without_decay(alpha: float, C: int, *, loss_scale: float = 1.0) -> float:
    """MSE of a collapsed net with ``W M = alpha C/(C-1) (I - 11^T/C)`` (outputs alpha on the class,
    ``-alpha/(C-1)`` elsewhere): ``s (1/2)((1 - alpha)^2 + alpha^2/(C-1))``, minimal ``s/(2C)``
    at ``alpha = (C-1)/C`` and never 0, so NC solutions do not interpolate (docs/science.md §3.4 uses
    s = 1; the ``(1/2NC)`` loss of this package has ``s = 1/C``)."""
    if C < 2:
        raise ValueError(f"need C >= 2 classes, got {C!r}")
    return loss_scale * 0.5 * ((1 - alpha) ** 2 + alpha ** 2 / (C - 1))
