"""Labelled synthetic geometries: Gaussian mixtures, moons, circles, XOR, the seed geometries, enclosure.

Binary convention: labels are 0..C-1 and class 1 is +1 (:func:`meanfield.losses.signed_labels`).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch

from .core import BaseDistribution, ClassMixture, PointMasses, _whole, allocate, relative_weights, union
from .shapes import Annulus, Ball, Box, Region

__all__ = ["GaussianMixture", "Moons", "Circles", "xor", "three_atoms", "line_classes", "Enclosure"]

F64 = torch.float64
SIGNED_NAMES = ("-1", "+1")


class GaussianMixture(BaseDistribution):
    """A mixture of isotropic Gaussians N(mean_i, std_i^2 I), component i labelled ``labels[i]``.

    Points are stratified: component i gets its share of n (at least one point) and its weight
    is split equally over them, so class masses are exact for every n.

    Args:
        means ((K, d) array): component means.
        stds: one std or K of them (> 0).
        weights: K relative weights (default equal).
        labels: K class labels (default 0..K-1).
        class_names: optional names.
    """

    def __init__(self, means, stds=1.0, weights=None, labels=None, *,
                 class_names: Optional[Sequence[str]] = None):
        self.means = torch.as_tensor(means, dtype=F64)
        if self.means.dim() == 1:
            self.means = self.means[:, None]
        if self.means.dim() != 2 or self.means.shape[0] == 0:
            raise ValueError(f"means must be (K, d), got shape {tuple(self.means.shape)}")
        if not torch.isfinite(self.means).all():
            raise ValueError("means contain NaN/inf")
        K = self.means.shape[0]
        s = torch.as_tensor(stds, dtype=F64).reshape(-1)
        s = s.expand(K).clone() if s.numel() == 1 else s
        if s.shape != (K,) or not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"stds must be one or {K} positive finite numbers, got {s.tolist()}")
        self.stds = s
        self.weights = relative_weights(torch.ones(K) if weights is None else weights, "mixture weights")
        if self.weights.numel() != K:
            raise ValueError(f"mismatched lengths: {K} means but {self.weights.numel()} weights")
        lab = torch.arange(K) if labels is None else torch.as_tensor(labels).reshape(-1).long()
        if lab.shape != (K,) or (lab < 0).any():
            raise ValueError(f"labels must be {K} non-negative integers, got {lab.tolist()}")
        self.labels = lab
        self.num_classes = int(lab.max()) + 1
        self.class_names = tuple(class_names) if class_names is not None else None

    def _sample(self, n, gen):
        counts = allocate(n, self.weights)
        idx = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        X = self.means[idx] + self.stds[idx, None] * torch.randn(n, self.means.shape[1], generator=gen, dtype=F64)
        p = self.weights[idx] / torch.tensor(counts, dtype=F64)[idx]
        return X, self.labels[idx], p

    def __repr__(self):
        return f"GaussianMixture(K={self.means.shape[0]}, d={self.means.shape[1]})"


class _Curves(BaseDistribution):
    """Two labelled curves x = curve_c(t), t in [0, 1], plus optional Gaussian noise."""

    num_classes = 2

    def __init__(self, noise: float, grid: bool, class_masses):
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
        if grid and noise > 0:
            raise ValueError("grid=True places points exactly on the curves; set noise=0 or grid=False")
        self.noise, self.grid = float(noise), bool(grid)
        self.class_mass = relative_weights(class_masses, "class masses")
        if self.class_mass.numel() != 2 or (self.class_mass == 0).any():
            raise ValueError(f"class_masses must be 2 positive numbers, got {list(class_masses)}")

    def _sample(self, n, gen):
        Xs, ys, ps = [], [], []
        for c, m in enumerate(allocate(n, self.class_mass)):
            t = (torch.arange(m, dtype=F64) + 0.5) / m if self.grid else torch.rand(m, generator=gen, dtype=F64)
            X = self._curve(c, t)
            if self.noise > 0:
                X = X + self.noise * torch.randn(X.shape, generator=gen, dtype=F64)
            Xs.append(X)
            ys.append(torch.full((m,), c, dtype=torch.long))
            ps.append(torch.full((m,), float(self.class_mass[c]) / m, dtype=F64))
        return torch.cat(Xs), torch.cat(ys), torch.cat(ps)


class Moons(_Curves):
    """Two interleaving half circles (as scikit-learn's make_moons), class masses relative.

    Class 0: (cos pi t, sin pi t); class 1: (1 - cos pi t, 1/2 - sin pi t), t uniform in [0, 1]
    (or on the midpoint grid), plus N(0, noise^2 I).
    """

    def __init__(self, noise: float = 0.0, *, grid: bool = False, class_masses=(1.0, 1.0)):
        super().__init__(noise, grid, class_masses)

    def _curve(self, c, t):
        a = math.pi * t
        if c == 0:
            return torch.stack([torch.cos(a), torch.sin(a)], dim=1)
        return torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], dim=1)


class Circles(_Curves):
    """Two concentric circles: class 0 of radius ``r_outer``, class 1 of radius ``r_inner``, plus noise."""

    def __init__(self, r_outer: float = 1.0, r_inner: float = 0.5, noise: float = 0.0, *,
                 grid: bool = False, class_masses=(1.0, 1.0)):
        if not (0 < r_inner < r_outer and math.isfinite(r_outer)):
            raise ValueError(f"need 0 < r_inner < r_outer, got r_inner={r_inner}, r_outer={r_outer}")
        self.r = (float(r_outer), float(r_inner))
        super().__init__(noise, grid, class_masses)

    def _curve(self, c, t):
        a = 2 * math.pi * t
        return self.r[c] * torch.stack([torch.cos(a), torch.sin(a)], dim=1)


def xor(gap: float = 0.0, *, grid: bool = False) -> ClassMixture:
    """XOR on [-1, 1]^2: class 1 (+1) where x1 x2 > 0, class 0 where x1 x2 < 0; equal masses.

    Each quadrant is the square [gap, 1]^2 (reflected), so ``gap`` in [0, 1) is a margin.
    """
    if not (0 <= gap < 1):
        raise ValueError(f"gap must lie in [0, 1), got {gap!r}")
    g = float(gap)

    def sq(sx, sy):
        lo = [g if sx > 0 else -1.0, g if sy > 0 else -1.0]
        hi = [1.0 if sx > 0 else -g, 1.0 if sy > 0 else -g]
        return Box(lo, hi, grid=grid)

    return ClassMixture([(union(sq(1, -1), sq(-1, 1)), 0.5), (union(sq(1, 1), sq(-1, -1)), 0.5)],
                        class_names=SIGNED_NAMES)


def three_atoms(p1: float = 1.0, p2: float = 1.0, p3: float = 1.0) -> PointMasses:
    """Seed geometry 2 (docs/science.md §3.2): p1 delta_{-1} + p2 delta_0 + p3 delta_1.

    Class 1 (+1) = {-1, 1}, class 0 (-1) = {0}. Masses are relative weights (divided by
    p1 + p2 + p3); p2 > 0 and p1 + p3 > 0 are needed for two non-empty classes.
    """
    for name, v in (("p1", p1), ("p2", p2), ("p3", p3)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (a relative mass), got {v!r}")
    if p2 <= 0 or p1 + p3 <= 0:
        raise ValueError(f"need p2 > 0 and p1 + p3 > 0, else a class has zero total mass; got "
                         f"p1={p1!r}, p2={p2!r}, p3={p3!r}")
    return PointMasses([[-1.0], [0.0], [1.0]], [1, 0, 1], [p1, p2, p3], num_classes=2,
                       class_names=SIGNED_NAMES)


def line_classes(points: int = 3, spacing: float = 1.0, class_masses=(1.0, 1.0)) -> PointMasses:
    """Seed geometry 1 (docs/science.md §3.3): class 0 in (-inf, -1], class 1 in [1, inf), +-1 included.

    Atoms ``-1 - spacing k`` (class 0, -1) and ``1 + spacing k`` (class 1, +1), k = 0..points-1,
    equal masses within a class, class masses relative.
    """
    if not _whole(points) or points < 1:
        raise ValueError(f"points must be an integer >= 1, got {points!r}")
    if not (isinstance(spacing, (int, float)) and math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    cm = relative_weights(class_masses, "class masses")
    if cm.numel() != 2:
        raise ValueError(f"class_masses must be 2 numbers, got {list(class_masses)}")
    k = torch.arange(int(points), dtype=F64)
    X = torch.cat([-1 - spacing * k, 1 + spacing * k])[:, None]
    y = torch.cat([torch.zeros(points, dtype=torch.long), torch.ones(points, dtype=torch.long)])
    p = torch.cat([cm[0].expand(points), cm[1].expand(points)]) / points
    return PointMasses(X, y, p, num_classes=2, class_names=SIGNED_NAMES)


class _LeftOf:
    """Membership in ``ring`` and the half-plane x_1 <= h (a class, so distributions pickle)."""

    def __init__(self, ring: Annulus, h: float):
        self.ring, self.h = ring, h

    def __call__(self, x):
        return self.ring.contains(x) & (x[:, 0] <= self.h)


class Enclosure(ClassMixture):
    """Class 0 (-1) a disc, class 1 (+1) a cut annulus around it: convex at t = 0, enclosing at t = 1.

    Class 0 is uniform on the disc |x| <= r0. Class 1 is uniform on
    ``{r_in <= |x| <= r_out, x_1 <= h}`` with ``h = -r_in + t (r_in + r_out)``:

    - t = 0: a circular segment of the outer disc left of x_1 = -r_in (convex, separable from
      the disc by a line);
    - 0 < t < 1: a non-convex arc whose opening shrinks as t grows;
    - t = 1: the full annulus; class 0 is enclosed.

    The convex hull of class 1 is ``{|x| <= r_out, x_1 <= h}`` (every point of it lies on a
    vertical chord between two points of the set), so the share of
    class 0's mass inside it is the disc-segment fraction (:attr:`hull_fraction`)

    .. math::

        \\frac{1}{\\pi}\\left(\\pi - \\arccos u + u\\sqrt{1 - u^2}\\right),
        \\qquad u = \\mathrm{clip}(h / r_0, -1, 1).

    Args:
        t: the shape parameter in [0, 1].
        r0, r_in, r_out: radii, 0 < r0 < r_in < r_out.
        class_masses: relative masses of (class 0, class 1).
        grid: deterministic midpoint grids instead of random points.
    """

    def __init__(self, t: float = 1.0, *, r0: float = 0.5, r_in: float = 1.0, r_out: float = 1.5,
                 class_masses=(1.0, 1.0), grid: bool = False):
        if not (isinstance(t, (int, float)) and 0 <= t <= 1):
            raise ValueError(f"t must lie in [0, 1] (0 convex, 1 enclosed), got {t!r}")
        if not (0 < r0 < r_in < r_out and math.isfinite(r_out)):
            raise ValueError(f"need 0 < r0 < r_in < r_out, got r0={r0}, r_in={r_in}, r_out={r_out}")
        self.t, self.r0, self.r_in, self.r_out = float(t), float(r0), float(r_in), float(r_out)
        self.h = -self.r_in + self.t * (self.r_in + self.r_out)
        h, ring = self.h, Annulus(r_in, r_out, (0.0, 0.0), grid=grid)
        arc = ring if t == 1 else Region(_LeftOf(ring, h), proposal=ring, grid=grid)
        cm = list(class_masses)
        if len(cm) != 2:
            raise ValueError(f"class_masses must be 2 numbers, got {cm}")
        super().__init__([(Ball((0.0, 0.0), r0, grid=grid), cm[0]), (arc, cm[1])], class_names=SIGNED_NAMES)

    @property
    def hull_fraction(self) -> float:
        """Share of class 0's mass inside the convex hull of class 1 (closed form above)."""
        u = max(-1.0, min(1.0, self.h / self.r0))
        return (math.pi - math.acos(u) + u * math.sqrt(1 - u * u)) / math.pi

    def __repr__(self):
        return f"Enclosure(t={self.t}, r0={self.r0}, r_in={self.r_in}, r_out={self.r_out})"
