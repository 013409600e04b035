"""Where a one-parameter family of labelled point sets first puts a class inside another's hull.

:func:`hull_boundary` bisects ``param`` in ``[lo, hi]`` on the predicate "some sample of one
class lies in the convex hull of another class" (:func:`~meanfield.geometry.classes.enclosed`,
the seed's condition "C_i meets the convex hull of C_j") or, with ``criterion="intersect"``, "two
class hulls meet" (= not linearly separable). The predicate is assumed monotone in ``param``
(false below the boundary, true above); ``sample(param)`` should be deterministic (a fixed seed),
so that the bisection sees one family of point sets.

On samples the boundary sits slightly *above* the population boundary: a class must put a sample
beyond the other hull's sampled edge. The bias shrinks with the number of samples (for the
Enclosure family, about 2e-3 in t at 1000 samples per class).
"""

from __future__ import annotations

import math
from typing import Callable

from .classes import enclosed, prepare_classes
from .hulls import _check_tol, _gap, _scale

__all__ = ["hull_boundary", "CRITERIA"]

CRITERIA = ("enclosed", "intersect")


def _unpack(out):
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        if hasattr(out, "X") and hasattr(out, "y"):   # a meanfield Samples
            return out.X, out.y, getattr(out, "p", None)
        raise ValueError("sample(param) must return (X, y), (X, y, weights) or Samples; got "
                         f"{type(out).__name__}")
    return out[0], out[1], (out[2] if len(out) == 3 else None)


def _intersect(X, y, w, tol) -> bool:
    labels, points, _, _ = prepare_classes(X, y, w)
    thresh = tol * _scale(*points.values())
    return any(_gap(points[a], points[b]) <= thresh
               for i, a in enumerate(labels) for b in labels[i + 1:])


def hull_boundary(sample: Callable, lo: float, hi: float, *, tol: float = 1e-3,
                  criterion: str = "enclosed", hull_tol: float = 1e-9, max_iter: int = 60) -> float:
    """The smallest ``param`` in ``[lo, hi]`` at which one class first meets another's hull.

    Args:
        sample: ``sample(param) -> (X, y)``, ``(X, y, weights)`` or a :class:`Samples`.
        lo, hi: the parameter range, lo < hi.
        tol: bisection stops when the bracket is shorter than ``tol`` (absolute, in param units).
        criterion: "enclosed" (a sample of one class inside another class's hull) or
            "intersect" (two class hulls meet: not linearly separable).
        hull_tol: the hull tolerance of :func:`~meanfield.geometry.in_hull`.
        max_iter: at most this many bisection steps.

    Returns:
        The midpoint of the final bracket (within ``tol / 2`` of the sampled boundary);
        ``lo`` when the predicate already holds at ``lo`` (always met on the range);
        ``math.nan`` when it does not hold at ``hi`` (never met on the range).

    Raises:
        ValueError: lo >= hi or not finite, tol <= 0, unknown criterion, bad samples.
    """
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (tol > 0):
        raise ValueError(f"tol must be a positive number (bracket length), got {tol!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    hull_tol = _check_tol(hull_tol)

    def met(t: float) -> bool:
        X, y, w = _unpack(sample(t))
        if criterion == "enclosed":
            return enclosed(X, y, weights=w, tol=hull_tol)
        return _intersect(X, y, w, hull_tol)

    lo, hi = float(lo), float(hi)
    if met(lo):
        return lo
    if not met(hi):
        return math.nan
    for _ in range(int(max_iter)):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if met(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)
