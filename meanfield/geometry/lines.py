"""A theory line from geometry: the hull boundary of a registered distribution, as ``fn(params)``.

:class:`HullLine` turns any registered distribution with a numeric parameter into the function
of a phase-diagram boundary (the ``fn`` of :class:`meanfield.study.Theory`):

.. code-block:: python

    line = HullLine("enclosure", "t", 0.0, 1.0)
    line({"data.t": 0.3, "data.r0": 0.4})   # 0.3 - t*, t* computed for r0 = 0.4

``line(params) = params["data.<param>"] - t*``, where ``t*`` = :func:`hull_boundary` of
``get_distribution(name, **data params, <param>=t).sample(n, seed=seed)`` over ``t in [lo, hi]``:
the value at which one class first meets the convex hull of another. Every other ``data.*``
parameter present in ``params`` (the user's radii, noise, ...) is passed to the distribution;
missing ones take the distribution's defaults. Boundaries are cached per set of other parameters,
so a phase diagram with the other data parameters fixed costs one bisection. Negative values are
the side below the boundary (classes apart), positive the side above it (a class inside a hull);
``nan`` when the boundary is not met on ``[lo, hi]``.
"""

from __future__ import annotations

import math

from .boundary import CRITERIA, hull_boundary

__all__ = ["HullLine"]


class HullLine:
    """``fn(params) -> params[prefix + param] - boundary``: a boundary computed from the data.

    Args:
        distribution: a registered distribution name (or ``module:attribute``).
        param: the numeric parameter of the distribution that moves the geometry.
        lo, hi: the range searched for the boundary.
        n: samples drawn at each parameter value (exact atoms ignore it).
        seed: the sampling seed (one family of point sets for the whole bisection).
        tol: bisection tolerance in units of ``param``.
        criterion: "enclosed" (a sample inside another class's hull) or "intersect".
        prefix: the key prefix of the distribution's parameters in ``params``.
        ignore: distribution parameters never passed on (sampling options that do not move the
            geometry, e.g. a deterministic-grid switch): the line uses their defaults.

    Raises:
        ValueError: unknown distribution, a parameter it does not take, bad range or criterion.
    """

    def __init__(self, distribution: str, param: str, lo: float, hi: float, *, n: int = 2000,
                 seed: int = 0, tol: float = 1e-3, criterion: str = "enclosed",
                 prefix: str = "data.", ignore: tuple = ()):
        from ..data import describe_distribution
        self.defaults = describe_distribution(distribution)["params"]
        if param not in self.defaults:
            raise ValueError(f"distribution {distribution!r} has no parameter {param!r}; its "
                             f"parameters: {', '.join(self.defaults) or 'none'}")
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))
                and math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"need finite lo < hi, got lo={lo!r}, hi={hi!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer >= 2, got {n!r}")
        self.distribution, self.param, self.lo, self.hi = distribution, param, float(lo), float(hi)
        self.n, self.seed, self.tol, self.criterion, self.prefix = n, seed, tol, criterion, prefix
        self.ignore = tuple(ignore)
        self._cache: dict = {}
        # the prefixed keys of the other parameters, and boundaries by their raw values: a phase
        # diagram's theory contour calls the line ~10^5 times
        self._keys = tuple(prefix + k for k in self.defaults if k != param and k not in self.ignore)
        self._by_values: dict = {}

    def _typed(self, name: str, v):
        d = self.defaults.get(name)
        if isinstance(d, bool):
            return bool(v)
        if isinstance(d, int) and isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    def others(self, params) -> dict:
        """The distribution's parameters in ``params`` other than ``param`` (typed as its defaults)."""
        # only the distribution's own keys are looked up: a phase diagram calls this ~10^5 times
        # with every config column in params
        out = {}
        for name in self.defaults:
            v = params.get(self.prefix + name)
            if name != self.param and name not in self.ignore and isinstance(v, (int, float)):
                out[name] = self._typed(name, v)
        return out

    def boundary(self, **others) -> float:
        """The boundary value of ``param`` for these other parameters (cached)."""
        key = tuple(sorted(others.items()))
        if key not in self._cache:
            from ..data import get_distribution

            def sample(t):
                return get_distribution(self.distribution, **others, **{self.param: t}).sample(
                    self.n, seed=self.seed)

            self._cache[key] = hull_boundary(sample, self.lo, self.hi, tol=self.tol,
                                             criterion=self.criterion)
        return self._cache[key]

    def __call__(self, params) -> float:
        x = float(params[self.prefix + self.param])
        try:
            key = tuple(params.get(k) for k in self._keys)
            b = self._by_values.get(key)
        except TypeError:   # an unhashable parameter value (a list): the plain path
            return x - self.boundary(**self.others(params))
        if b is None:
            b = self._by_values[key] = self.boundary(**self.others(params))
        return x - b

    def __repr__(self) -> str:
        return (f"HullLine({self.distribution!r}, {self.param!r}, {self.lo:g}, {self.hi:g}, "
                f"n={self.n}, criterion={self.criterion!r})")
