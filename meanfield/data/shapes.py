"""Uniform laws on sets: intervals, boxes, balls, spheres, annuli (and sectors), any region.

Each is a one-class distribution (label 0): combine them into classes with
:class:`~meanfield.data.core.ClassMixture` or :func:`~meanfield.data.core.union`. Every set is
either *sampled* (``grid=False``: n i.i.d. uniform points of mass 1/n from the seed) or put on a
deterministic *quadrature grid* (``grid=True``: the centres of a regular grid of cells, kept where
they fall in the set, equal masses — the midpoint rule; about n points, exactly n for intervals
and 2-D circles). Sphere grids exist for d <= 3.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .core import BaseDistribution

__all__ = ["Uniform", "Interval", "Box", "Ball", "Sphere", "Annulus", "Region"]

MAX_GRID = 4_000_000
F64 = torch.float64


def _vec(v, name: str) -> Tensor:
    t = torch.as_tensor(v, dtype=F64).reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must have at least one coordinate")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has NaN/inf coordinates: {t.tolist()}")
    return t


def _positive(v, name: str) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


def cell_grid(low: Tensor, high: Tensor, n: int) -> Tensor:
    """Centres of a regular grid of about n cells (spacing equal on every axis) covering [low, high]."""
    side = (high - low).clamp_min(0)
    live = side > 0
    dl = int(live.sum())
    if dl == 0:
        return low[None].clone()
    h = (float(side[live].prod()) / n) ** (1.0 / dl)
    k = [max(1, math.ceil(float(s) / h - 1e-9)) if s > 0 else 1 for s in side.tolist()]
    if math.prod(k) > MAX_GRID:
        raise ValueError(f"a grid of {math.prod(k)} cells is too large; lower n or use grid=False")
    axes = [torch.tensor([float(lo)], dtype=F64) if ki == 1 and s == 0 else
            lo + (torch.arange(ki, dtype=F64) + 0.5) * (s / ki)
            for lo, s, ki in zip(low.tolist(), side.tolist(), k)]
    return torch.cartesian_prod(*axes).reshape(-1, len(k))


def filtered_grid(contains: Callable[[Tensor], Tensor], low: Tensor, high: Tensor, n: int) -> Tensor:
    """Cell centres in [low, high] that lie in the set, refined until there are at least n."""
    target = n
    for _ in range(8):
        pts = cell_grid(low, high, target)
        inside = pts[contains(pts)]
        if inside.shape[0] >= n:
            return inside
        frac = max(inside.shape[0], 1) / pts.shape[0]
        target = max(int(math.ceil(n / frac * 1.05)), target + 1)
    raise ValueError(f"could not place {n} grid points in the set (found {inside.shape[0]}); "
                     "is the set empty or of measure zero? use grid=False")


class Uniform(BaseDistribution):
    """Base of the uniform laws: one class (label 0), equal masses, sampled or on a grid.

    Subclasses define ``low``/``high`` (a bounding box), ``contains(x)`` and ``_draw(n, gen)``
    (i.i.d. uniform points); ``_grid(n)`` defaults to the midpoint grid filtered by ``contains``.
    """

    num_classes = 1
    grid: bool = False

    @property
    def d(self) -> int:
        return self.low.numel()

    def contains(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _draw(self, n: int, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _grid(self, n: int) -> Tensor:
        return filtered_grid(self.contains, self.low, self.high, n)

    def _sample(self, n, gen):
        X = self._grid(n) if self.grid else self._draw(n, gen)
        m = X.shape[0]
        return X, torch.zeros(m, dtype=torch.long), torch.full((m,), 1.0 / m, dtype=F64)


def _directions(n: int, d: int, gen) -> Tensor:
    u = torch.randn(n, d, generator=gen, dtype=F64)
    return u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)


class Box(Uniform):
    """Uniform on the box [low_1, high_1] x ... x [low_d, high_d] (any d)."""

    def __init__(self, low, high, *, grid: bool = False):
        self.low, self.high = _vec(low, "low"), _vec(high, "high")
        if self.low.shape != self.high.shape:
            raise ValueError(f"mismatched lengths: low has {self.low.numel()} coordinates, high "
                             f"{self.high.numel()}")
        if (self.high <= self.low).any():
            raise ValueError(f"need low < high on every axis; got low={self.low.tolist()}, "
                             f"high={self.high.tolist()}")
        self.grid = bool(grid)

    def contains(self, x):
        return ((x >= self.low) & (x <= self.high)).all(dim=1)

    def _draw(self, n, gen):
        return self.low + (self.high - self.low) * torch.rand(n, self.d, generator=gen, dtype=F64)

    def _grid(self, n):
        return cell_grid(self.low, self.high, n)

    def __repr__(self):
        return f"Box({self.low.tolist()}, {self.high.tolist()}, grid={self.grid})"


class Interval(Box):
    """Uniform on [a, b] in R^1; the grid is the n midpoints a + (i + 1/2)(b - a)/n."""

    def __init__(self, a: float, b: float, *, grid: bool = False):
        for name, v in (("a", a), ("b", b)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not a < b:
            raise ValueError(f"need a < b, got a={a!r}, b={b!r}")
        super().__init__([a], [b], grid=grid)

    def _grid(self, n):
        lo, hi = float(self.low), float(self.high)
        return (lo + (torch.arange(n, dtype=F64) + 0.5) * ((hi - lo) / n))[:, None]

    def __repr__(self):
        return f"Interval({float(self.low)}, {float(self.high)}, grid={self.grid})"


class Annulus(Uniform):
    """Uniform on {r_in <= |x - center| <= r_out} in R^d; in 2-D optionally a sector of angles.

    Args:
        r_in: inner radius (0 gives a ball).
        r_out: outer radius.
        center ((d,) array): default the origin of R^2.
        angles: ``(lo, hi)`` in radians (2-D only, hi - lo <= 2 pi): keep points whose polar
            angle around the center lies in [lo, hi] (mod 2 pi).
        grid: deterministic midpoint grid instead of random points.

    Sampling uses the radial law ``P(|x - c| <= r) = (r^d - r_in^d) / (r_out^d - r_in^d)``.
    """

    def __init__(self, r_in: float = 0.5, r_out: float = 1.0, center=(0.0, 0.0), *,
                 angles: Optional[Sequence[float]] = None, grid: bool = False):
        self.center = _vec(center, "center")
        if not (isinstance(r_in, (int, float)) and math.isfinite(r_in) and r_in >= 0):
            raise ValueError(f"r_in must be finite and >= 0, got {r_in!r}")
        self.r_in, self.r_out = float(r_in), _positive(r_out, "r_out")
        if self.r_in >= self.r_out:
            raise ValueError(f"need r_in < r_out, got r_in={r_in}, r_out={r_out}")
        if angles is not None:
            if self.center.numel() != 2:
                raise ValueError("angles= (a sector) needs d = 2")
            lo, hi = (float(a) for a in angles)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < hi - lo <= 2 * math.pi + 1e-12):
                raise ValueError(f"angles must satisfy 0 < hi - lo <= 2 pi, got {angles!r}")
            angles = (lo, hi)
        self.angles = angles
        self.grid = bool(grid)
        self.low, self.high = self.center - self.r_out, self.center + self.r_out

    def contains(self, x):
        r = (x - self.center).norm(dim=1)
        ok = (r >= self.r_in) & (r <= self.r_out)
        if self.angles is not None:
            lo, hi = self.angles
            z = x - self.center
            th = torch.atan2(z[:, 1], z[:, 0])
            ok = ok & (torch.remainder(th - lo, 2 * math.pi) <= hi - lo + 1e-12)
        return ok

    def _radii(self, n, gen):
        d = self.d
        u = torch.rand(n, generator=gen, dtype=F64)
        return (self.r_in ** d + u * (self.r_out ** d - self.r_in ** d)) ** (1.0 / d)

    def _draw(self, n, gen):
        r = self._radii(n, gen)
        if self.angles is not None:
            lo, hi = self.angles
            th = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=F64)
            u = torch.stack([torch.cos(th), torch.sin(th)], dim=1)
        else:
            u = _directions(n, self.d, gen)
        return self.center + r[:, None] * u

    def __repr__(self):
        return (f"Annulus({self.r_in}, {self.r_out}, center={self.center.tolist()}, "
                f"angles={self.angles}, grid={self.grid})")


class Ball(Annulus):
    """Uniform on the closed ball {|x - center| <= radius} in R^d (d = len(center))."""

    def __init__(self, center=(0.0, 0.0), radius: float = 1.0, *, grid: bool = False):
        super().__init__(0.0, _positive(radius, "radius"), center, grid=grid)

    def __repr__(self):
        return f"Ball({self.center.tolist()}, {self.r_out}, grid={self.grid})"


class Sphere(Uniform):
    """Uniform on the sphere {|x - center| = radius} in R^d (surface measure).

    The grid: d = 1 the two points c +- r; d = 2 n equally spaced angles; d = 3 the Fibonacci
    lattice of n points (nearly equal areas); d > 3 has no grid (ValueError).
    """

    def __init__(self, center=(0.0, 0.0), radius: float = 1.0, *, grid: bool = False):
        self.center = _vec(center, "center")
        self.radius = _positive(radius, "radius")
        self.grid = bool(grid)
        self.low, self.high = self.center - self.radius, self.center + self.radius
        if self.grid and self.d > 3:
            raise ValueError(f"grid=True on a sphere needs d <= 3 (got d = {self.d}); use grid=False")

    def contains(self, x):
        return ((x - self.center).norm(dim=1) - self.radius).abs() <= 1e-9 * self.radius

    def _draw(self, n, gen):
        if self.d == 1:
            s = 2.0 * torch.randint(0, 2, (n, 1), generator=gen).to(F64) - 1.0
            return self.center + self.radius * s
        return self.center + self.radius * _directions(n, self.d, gen)

    def _grid(self, n):
        d, c, r = self.d, self.center, self.radius
        if d == 1:
            return torch.stack([c - r, c + r])
        if d == 2:
            th = 2 * math.pi * torch.arange(n, dtype=F64) / n
            return c + r * torch.stack([torch.cos(th), torch.sin(th)], dim=1)
        i = torch.arange(n, dtype=F64) + 0.5
        z = 1 - 2 * i / n
        th = math.pi * (1 + 5 ** 0.5) * i
        rho = (1 - z ** 2).clamp_min(0).sqrt()
        return c + r * torch.stack([rho * torch.cos(th), rho * torch.sin(th), z], dim=1)

    def __repr__(self):
        return f"Sphere({self.center.tolist()}, {self.radius}, grid={self.grid})"


class Region(Uniform):
    """Uniform on any set ``{x : contains(x)}`` inside a box, by rejection (or a filtered grid).

    Args:
        contains: ``(m, d) Tensor -> (m,) bool`` membership test (float64 input).
        low, high ((d,) arrays): a bounding box of the set; or None with ``proposal``.
        proposal: a :class:`Uniform` law on a superset of the set to draw candidates from
            (faster than the box when the set is thin); its bounding box is used for grids.
        grid: deterministic midpoint grid of the bounding box, filtered by ``contains``.

    Example:
        >>> half_disc = Region(lambda x: (x.norm(dim=1) <= 1) & (x[:, 1] >= 0), [-1, 0], [1, 1])
    """

    def __init__(self, contains: Callable[[Tensor], Tensor], low=None, high=None, *,
                 proposal: Optional[Uniform] = None, grid: bool = False):
        if not callable(contains):
            raise ValueError("contains must be a function (m, d) Tensor -> (m,) bool Tensor")
        if proposal is None and (low is None or high is None):
            raise ValueError("give a bounding box (low, high) or a proposal law")
        self.proposal = proposal if proposal is not None else Box(low, high)
        self._contains = contains
        self.low = _vec(low, "low") if low is not None else self.proposal.low
        self.high = _vec(high, "high") if high is not None else self.proposal.high
        self.grid = bool(grid)

    def contains(self, x):
        out = torch.as_tensor(self._contains(x))
        if out.shape != (x.shape[0],) or out.dtype != torch.bool:
            raise ValueError(f"contains must return a ({x.shape[0]},) bool tensor, got "
                             f"{out.dtype} of shape {tuple(out.shape)}")
        return out

    def _draw(self, n, gen):
        got, have, tried = [], 0, 0
        while have < n:
            batch = max(1024, 2 * (n - have) if tried == 0 else int(2 * (n - have) * tried / max(have, 1)))
            batch = min(batch, 1_000_000)
            cand = self.proposal._draw(batch, gen)
            keep = cand[self.contains(cand)]
            got.append(keep)
            have += keep.shape[0]
            tried += batch
            if tried > 1000 * n + 100_000 and have < 1e-3 * tried:
                raise ValueError(f"rejection sampling accepted {have} of {tried} candidates; the "
                                 "set looks empty or tiny inside its bounding box/proposal")
        return torch.cat(got)[:n]

    def __repr__(self):
        return f"Region(low={self.low.tolist()}, high={self.high.tolist()}, grid={self.grid})"
