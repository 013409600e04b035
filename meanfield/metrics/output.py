"""Output collapse (docs/science.md §1, last part): within-class spread, margin, normalised spread."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import Tensor

from ..losses import signed_labels
from .core import finite, labels_weights


# ----------------------------------------------------------------------------- output collapse
@dataclass(frozen=True)
class OutputCollapse:
    """Output-collapse statistics of one network (docs/science.md §1, "Output collapse").

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
    finite("outputs", f)
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
    y, p, C, _ = labels_weights(labels, weights, f.shape[0], num_classes, dtype=f.dtype, device=f.device)
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
    y, p, _, _ = labels_weights(labels, weights, n, C, dtype=f.dtype, device=f.device)
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
        norm: ``l1`` or ``l2`` (variation norms, docs/science.md §2) or ``margin``.
    """
    from ..data.base import as_samples
    if norm not in ("l1", "l2", "margin"):
        raise ValueError(f"unknown norm {norm!r}; valid: l1, l2, margin")
    if int(system) != system or not 0 <= system < particles.batch:
        raise ValueError(f"system must be an index in 0..{particles.batch - 1}; got {system!r}")
    net = particles.select(int(system))
    s = as_samples(samples, dtype=net.dtype, device=net.device)
    f = net.predict(s.X, backend=backend)[0]
    scale = "margin" if norm == "margin" else net.variation_norm(norm)[0]
    return output_collapse(f, s.y, weights=s.p, scale=scale, num_classes=s.num_classes)
