"""The one protocol every distribution satisfies: weighted labelled samples ``(X, y, p)``.

A :class:`Samples` is an empirical measure sum_j p_j delta_{(x_j, y_j)}: ``X (n, d)`` float,
``y (n,)`` int64 in 0..C-1, ``p (n,)`` non-negative masses summing to 1. Every class in 0..C-1 has
at least one sample and positive mass.

Images: ``X`` is *always* 2-D, so every consumer (flow, metrics, deep MLPs) sees ``(n, d)``. Image
data sets keep their layout in ``image_shape = (c, h, w)`` (with ``d = c * h * w``) and
:attr:`Samples.images` gives the ``(n, c, h, w)`` view for convolutional nets (no copy). The binary +-1 convention (class 1 is +1) lives in
:func:`meanfield.losses.signed_labels`.

A :class:`Distribution` is anything with ``sample(n=None, *, seed=0, dtype=..., device=...)``
returning :class:`Samples`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Samples", "Distribution", "as_samples"]

MASS_TOL = 1e-6


@dataclass(frozen=True)
class Samples:
    """Weighted labelled samples (an empirical measure).

    Attributes:
        X ((n, d) Tensor): points.
        y ((n,) Tensor): int64 labels in 0..C-1.
        p ((n,) Tensor): masses, non-negative, summing to 1 (same dtype as X).
        num_classes: C.
        class_names: optional names, one per class.
        image_shape: ``(c, h, w)`` when the rows of X are flattened images (``c*h*w = d``),
            else None; see :attr:`images`.
    """

    X: Tensor
    y: Tensor
    p: Tensor
    num_classes: int
    class_names: Optional[tuple[str, ...]] = None
    image_shape: Optional[tuple[int, ...]] = None

    def __post_init__(self):
        X, y, p, C = self.X, self.y, self.p, self.num_classes
        if not isinstance(X, Tensor) or X.dim() != 2:
            raise ValueError(f"X must be a (n, d) tensor; got {getattr(X, 'shape', type(X))}")
        if not X.is_floating_point():
            raise ValueError(f"X must be floating point, got {X.dtype}")
        n = X.shape[0]
        if n == 0:
            raise ValueError("no samples: X has 0 rows")
        if y.shape != (n,) or p.shape != (n,):
            raise ValueError(f"mismatched lengths: X has {n} rows, y has shape {tuple(y.shape)}, "
                             f"p has shape {tuple(p.shape)}")
        if y.dtype != torch.int64:
            raise ValueError(f"y must be int64 class indices, got {y.dtype}")
        if not torch.isfinite(X).all():
            raise ValueError(f"X has {(~torch.isfinite(X)).any(-1).sum().item()} rows with NaN/inf "
                             "coordinates; remove or fix them")
        if not torch.isfinite(p).all():
            raise ValueError("masses p contain NaN/inf")
        if (p < 0).any():
            raise ValueError(f"masses must be non-negative; {(p < 0).sum().item()} are negative "
                             f"(smallest {p.min().item():.3g})")
        total = float(p.sum())
        if abs(total - 1.0) > MASS_TOL * max(1, n) ** 0.5:
            raise ValueError(f"masses sum to {total:.6g}, not 1; normalise them or build the "
                             "samples with Samples.from_masses(..., normalise=True)")
        if int(C) != C or C < 1:
            raise ValueError(f"num_classes must be a positive integer, got {C!r}")
        if n and (y.min() < 0 or y.max() >= C):
            raise ValueError(f"labels must lie in 0..{C - 1}; got range {y.min().item()}..{y.max().item()}")
        mass = torch.zeros(C, dtype=p.dtype, device=p.device).index_add_(0, y, p)
        count = torch.bincount(y, minlength=C)
        for c in range(C):
            name = self.class_names[c] if self.class_names else c
            if count[c] == 0:
                raise ValueError(f"class {name!r} has no samples; give it samples or lower num_classes")
            if mass[c] <= 0:
                raise ValueError(f"class {name!r} has zero total mass; give it positive mass or drop it")
        if self.class_names is not None and len(self.class_names) != C:
            raise ValueError(f"{len(self.class_names)} class names for {C} classes")
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if math.prod(shape) != X.shape[1]:
                raise ValueError(f"image_shape {shape} has {math.prod(shape)} entries but X has "
                                 f"d = {X.shape[1]} columns")

    @classmethod
    def from_masses(cls, X, y, masses=None, *, num_classes: Optional[int] = None,
                    class_names: Optional[Sequence[str]] = None, normalise: bool = True,
                    dtype: Optional[torch.dtype] = None, device=None) -> "Samples":
        """Samples from array-likes; masses default to uniform and are normalised to sum 1.

        With ``normalise=True`` (the default) masses are *relative weights* and are divided by
        their sum; pass ``normalise=False`` to require masses that already sum to 1 (an error
        otherwise, never a silent rescaling).

        Raises:
            ValueError: negative/NaN masses, masses summing to 0, bad shapes, empty classes.
        """
        dtype = dtype or torch.get_default_dtype()
        X = torch.as_tensor(X, dtype=dtype, device=device)
        if X.dim() == 1:
            X = X[:, None]
        y = torch.as_tensor(y, device=X.device)
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("labels must be integers")
        y = y.long()
        n = X.shape[0]
        p = torch.full((n,), 1.0 / max(n, 1), dtype=dtype, device=X.device) if masses is None \
            else torch.as_tensor(masses, dtype=dtype, device=X.device)
        if p.shape != (n,):
            raise ValueError(f"mismatched lengths: {n} points but masses of shape {tuple(p.shape)}")
        if not torch.isfinite(p).all():
            raise ValueError("masses contain NaN/inf")
        if (p < 0).any():
            raise ValueError(f"masses must be non-negative; got {p[p < 0].tolist()[:5]}")
        total = float(p.sum())
        if total <= 0:
            raise ValueError("masses sum to 0; give at least one sample positive mass")
        if normalise:
            p = p / total
        C = int(y.max()) + 1 if num_classes is None and n else num_classes
        names = tuple(class_names) if class_names is not None else None
        return cls(X, y, p, C, names)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def images(self) -> Tensor:
        """((n, c, h, w) Tensor): a view of X in its image layout (needs ``image_shape``)."""
        if self.image_shape is None:
            raise ValueError("these samples carry no image_shape; load them with flatten=False "
                             "or build Samples(..., image_shape=(c, h, w))")
        return self.X.reshape(self.X.shape[0], *self.image_shape)

    def class_masses(self) -> Tensor:
        """(C,) Tensor: P_c = sum of p over class c."""
        return torch.zeros(self.num_classes, dtype=self.p.dtype, device=self.p.device).index_add_(0, self.y, self.p)

    def to(self, dtype: Optional[torch.dtype] = None, device=None) -> "Samples":
        """Cast X and p to a dtype and move everything to a device."""
        return replace(self, X=self.X.to(dtype=dtype or self.X.dtype, device=device),
                       y=self.y.to(device=device),
                       p=self.p.to(dtype=dtype or self.p.dtype, device=device))


@runtime_checkable
class Distribution(Protocol):
    """Anything that gives weighted labelled samples."""

    def sample(self, n: Optional[int] = None, *, seed: int = 0, dtype: torch.dtype = torch.float64,
               device=None) -> Samples:
        """Weighted samples; exact atoms ignore n, continuous laws draw or place n points."""


def as_samples(data, *, n: Optional[int] = None, seed: int = 0, dtype: torch.dtype = torch.float64,
               device=None) -> Samples:
    """Turn a :class:`Samples`, a :class:`Distribution` or a tuple ``(X, y[, p])`` into Samples."""
    if isinstance(data, Samples):
        return data.to(dtype=dtype, device=device)
    if hasattr(data, "sample"):
        out = data.sample(n, seed=seed, dtype=dtype, device=device)
        if not isinstance(out, Samples):
            raise ValueError(f"{type(data).__name__}.sample must return Samples, got {type(out).__name__}")
        return out
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return Samples.from_masses(*data, dtype=dtype, device=device)
    raise ValueError(f"cannot use {type(data).__name__} as data: pass Samples, a Distribution "
                     "(with .sample) or a tuple (X, y[, p])")
