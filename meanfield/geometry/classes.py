"""Class geometry of a labelled point set: hulls, enclosure fractions, separability, margins.

For every pair of classes ``a < b``: whether conv(a) and conv(b) meet (one LP; for finite sets
exactly "not linearly separable"), the share of class a's samples inside conv(b) and of b's inside
conv(a) (one LP per sample: the seed's condition "C_i meets the convex hull of C_j"), the
hard-margin separation margin when separable, and a one-line verdict.

Cost (``k`` classes, ``n_c`` samples of class c in ``R^d``): one LP per pair with
``n_a + n_b + 1`` variables and ``2 d`` rows, one QP of that size per *separable* pair (the
margin), and for each *non-separable* pair one LP per sample of each class (``n_b + 1``
variables), less the samples that an O(n_b d) filter places outside the hull without an LP. A
separable pair costs no per-sample LP (no sample can be inside the other hull). With
``approx=True`` each class contributes at most ``max_points`` query samples (drawn with
probability proportional to their weights, seeded): the fractions are then unbiased estimates
with standard error at most ``0.5 / sqrt(max_points)``; hulls, separability and margins still
use every sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .hulls import _HullLP, _check_tol, _gap, _half_distance, _scale, as_points

__all__ = ["PairGeometry", "ClassGeometry", "class_geometry", "prepare_classes", "enclosed"]


@dataclass(frozen=True)
class PairGeometry:
    """The geometry of classes ``a < b``.

    Attributes:
        a, b: the class labels.
        hulls_intersect: conv(a) and conv(b) meet (touching counts).
        separable: a hyperplane strictly separates the two classes (= not hulls_intersect).
        margin: the largest geometric margin of a separating hyperplane (half the distance
            between the hulls); 0.0 when not separable.
        frac_a_in_b: share of class a's mass (its samples' weights) inside conv(b).
        frac_b_in_a: share of class b's mass inside conv(a).
        verdict: one line, e.g. "separable, margin 0.31".
    """

    a: int
    b: int
    hulls_intersect: bool
    separable: bool
    margin: float
    frac_a_in_b: float
    frac_b_in_a: float
    verdict: str


@dataclass(frozen=True)
class ClassGeometry:
    """Pairwise geometry of every pair of classes.

    Attributes:
        pairs: one :class:`PairGeometry` per pair ``a < b``, in lexicographic order.
        classes: the class labels, sorted.
        counts: samples of positive weight per class (before removing duplicates).
        approx: the fractions are estimates from at most ``max_points`` samples per class.
        max_points: the per-class query cap when ``approx``, else None.
    """

    pairs: tuple
    classes: tuple
    counts: tuple
    approx: bool
    max_points: Optional[int]

    def table(self) -> list[dict]:
        """One dict per pair with the fields of :class:`PairGeometry`."""
        return [asdict(p) for p in self.pairs]

    def pair(self, a: int, b: int) -> PairGeometry:
        """The entry for classes ``a`` and ``b`` (either order)."""
        a, b = min(a, b), max(a, b)
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p
        raise ValueError(f"no pair ({a}, {b}); the classes are {list(self.classes)}")

    @property
    def enclosed(self) -> bool:
        """Some class has samples (positive mass) inside another class's hull."""
        return any(p.frac_a_in_b > 0 or p.frac_b_in_a > 0 for p in self.pairs)

    @property
    def separable(self) -> bool:
        """Every pair of classes is linearly separable."""
        return all(p.separable for p in self.pairs)

    @property
    def min_margin(self) -> float:
        """Smallest pairwise margin (0.0 when some pair is not separable)."""
        return min(p.margin for p in self.pairs)

    @property
    def max_fraction(self) -> float:
        """Largest share of a class inside another class's hull."""
        return max(max(p.frac_a_in_b, p.frac_b_in_a) for p in self.pairs)


def prepare_classes(X, y, weights=None) -> tuple[list, dict, dict, dict]:
    """Validate and split into classes: ``(labels, points, masses, counts)``.

    ``points[c]`` holds the distinct points of class c with positive weight, ``masses[c]`` their
    summed weights, ``counts[c]`` the number of samples of positive weight.

    Raises:
        ValueError: bad shapes, NaN/inf, negative weights, non-integer labels, a class of zero
            weight, or fewer than two classes.
    """
    X = as_points(X, "X")
    n = X.shape[0]
    y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) (one label per row of X), got {y.shape}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.isfinite(y).all() or (y != np.round(y)).any():
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights,
                       dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and >= 0 (relative masses of the samples)")
    labels = sorted(int(c) for c in np.unique(y))
    points, masses, counts = {}, {}, {}
    for c in labels:
        keep = (y == c) & (w > 0)
        if not keep.any():
            raise ValueError(f"class {c} has zero total weight (an empty class); give it positive "
                             "weight or drop its samples")
        P, inv = np.unique(X[keep], axis=0, return_inverse=True)
        points[c], masses[c] = P, np.bincount(inv.ravel(), weights=w[keep], minlength=len(P))
        counts[c] = int(keep.sum())
    if len(labels) < 2:
        raise ValueError(f"need at least two classes with positive weight, got {labels}")
    return labels, points, masses, counts


def _fraction(Q, wq, hull: _HullLP, thresh: float, cap: Optional[int], rng) -> float:
    """Weighted share of the queries Q (weights wq) inside the hull; subsampled to cap if set."""
    if cap is not None and len(Q) > cap:
        idx, reps = np.unique(rng.choice(len(Q), size=cap, replace=True, p=wq / wq.sum()),
                              return_counts=True)
        Q, wq = Q[idx], reps.astype(np.float64)
    inside = np.array([hull.gap(q, thresh) <= thresh for q in Q], dtype=bool)
    return float(wq[inside].sum() / wq.sum())


def _pct(f: float) -> str:
    return f"{100 * f:.3g}%"


def _verdict(a, b, intersect, margin, fab, fba, approx) -> str:
    if not intersect:
        return f"separable, margin {margin:.3g}"
    parts = [f"{_pct(f)} of class {i} inside the hull of class {j}"
             for f, i, j in ((fab, a, b), (fba, b, a)) if f > 0]
    est = " (estimated)" if approx else ""
    if not parts:
        return "not separable (hulls overlap), no sample inside the other class's hull" + est
    return "not separable; " + "; ".join(parts) + est


def class_geometry(X, y, *, weights=None, approx: bool = False, max_points: int = 2000,
                   seed: int = 0, tol: float = 1e-9) -> ClassGeometry:
    """Pairwise class geometry of labelled points (see the module note for the cost).

    Args:
        X ((n, d) array or Tensor): the points (features).
        y ((n,) ints): class labels (any integers).
        weights ((n,) array, optional): non-negative sample masses; zero-weight samples are
            ignored; fractions are shares of a class's mass. Default: equal weights.
        approx: estimate the fractions from at most ``max_points`` samples per class.
        max_points: the per-class query cap of ``approx`` (ignored otherwise).
        seed: seed of the ``approx`` subsample.
        tol: the hull tolerance of :func:`~meanfield.geometry.in_hull`.

    Returns:
        A :class:`ClassGeometry`.

    Raises:
        ValueError: see :func:`prepare_classes`; max_points < 1; bad tol.
    """
    tol = _check_tol(tol)
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise ValueError(f"max_points must be an integer >= 1, got {max_points!r}")
    labels, points, masses, counts = prepare_classes(X, y, weights)
    thresh = tol * _scale(*points.values())
    rng = np.random.default_rng(seed)
    cap = int(max_points) if approx else None
    hulls: dict = {}
    pairs = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            intersect = _gap(points[a], points[b]) <= thresh
            margin = 0.0 if intersect else _half_distance(points[a], points[b])
            fab = fba = 0.0
            if intersect:
                for c in (a, b):
                    if c not in hulls:   # one LP model (and its filters) per class
                        hulls[c] = _HullLP(points[c])
                fab = _fraction(points[a], masses[a], hulls[b], thresh, cap, rng)
                fba = _fraction(points[b], masses[b], hulls[a], thresh, cap, rng)
            pairs.append(PairGeometry(a, b, bool(intersect), not intersect, float(margin), fab, fba,
                                      _verdict(a, b, intersect, margin, fab, fba, bool(approx))))
    return ClassGeometry(tuple(pairs), tuple(labels), tuple(counts[c] for c in labels),
                         bool(approx), cap)


def enclosed(X, y, *, weights=None, tol: float = 1e-9) -> bool:
    """Whether some sample of positive weight lies in the convex hull of another class.

    The same test as ``class_geometry(X, y).enclosed`` but it stops at the first such sample and
    computes no margin: the predicate of :func:`~meanfield.geometry.hull_boundary`.
    """
    tol = _check_tol(tol)
    labels, points, _, _ = prepare_classes(X, y, weights)
    thresh = tol * _scale(*points.values())
    hulls: dict = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if _gap(points[a], points[b]) > thresh:
                continue
            for c, o in ((a, b), (b, a)):
                if o not in hulls:
                    hulls[o] = _HullLP(points[o])
                if any(hulls[o].gap(q, thresh) <= thresh for q in points[c]):
                    return True
    return False
