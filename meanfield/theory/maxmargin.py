"""Maximum-margin ReLU classifiers on the line: an LP oracle over a fine grid of unit neurons.

A ReLU neuron is 1-homogeneous, so every network of bounded variation norm is a signed measure
over *unit* neurons ``(w, b)`` (unit in the l2 form ``sqrt(w^2 + b^2) = 1`` or in the l1 form
``|w| + |b| = 1``, docs/science.md §2) and its norm is the total variation of that measure. On a grid
of G unit neurons the maximum-margin problem is a linear program in ``c = c+ - c-``:

.. math::

    \\max_{c^\\pm \\ge 0,\\ \\gamma}\\ \\gamma \\quad\\text{s.t.}\\quad
    \\xi_j \\sum_g c_g\\, \\mathrm{relu}(w_g x_j + b_g) \\ge \\gamma\\ (p_j > 0),\\qquad
    \\sum_g (c^+_g + c^-_g) \\le 1 .

The grid optimum is a lower bound on the continuum one that converges as the grid is refined;
grids from :func:`unit_grid` contain the directions of the seed family
``f_b(x) = (relu(x + b) - relu(b - x)) / (2 + 2b)`` for b in {0, 1/2, 1} (docs/science.md §3.3), so on
the seed data the grid optimum is exact: margin 1/sqrt 2 (l2, the single classifier b = 1) and
1/2 (l1, a whole face containing every f_b). Ratios ``f(x) / f(x0)`` over the optimal face are
bounded by a second, linear-fractional program (:func:`ratio_interval`, Charnes-Cooper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MaxMarginResult", "RatioInterval", "unit_grid", "maxmargin_oracle", "ratio_interval",
           "seed_family_weights"]

_NORMS = ("l2", "l1")


def _check_norm(norm: str) -> str:
    if norm not in _NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(_NORMS)}")
    return norm


def unit_grid(num: int = 720, norm: str = "l2") -> np.ndarray:
    """G unit neurons ``(w, b)`` evenly spread on the unit circle of the norm.

    l2: angles ``2 pi g / G``; l1: evenly spaced in arc length on the diamond ``|w| + |b| = 1``.
    With G a multiple of 24 both grids hold the directions (1, 0), (2, 1), (1, 1) and their
    mirrors (the seed family's neurons for b = 0, 1/2, 1).

    Returns:
        (G, 2) array of rows (w, b).
    """
    _check_norm(norm)
    if isinstance(num, bool) or int(num) != num or num < 8:
        raise ValueError(f"grid size must be an integer >= 8, got {num!r}")
    G = int(num)
    if norm == "l2":
        t = 2 * np.pi * np.arange(G) / G
        return np.stack([np.cos(t), np.sin(t)], 1)
    s = 4.0 * np.arange(G) / G                      # arc parameter in [0, 4): one unit per quadrant
    q, r = np.floor(s).astype(int), s - np.floor(s)
    starts = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], float)
    P = starts[q] * (1 - r)[:, None] + starts[(q + 1) % 4] * r[:, None]
    return P


def _as_grid(grid, norm: str) -> np.ndarray:
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        return unit_grid(int(grid), norm)
    U = np.asarray(grid, dtype=np.float64)
    if U.ndim != 2 or U.shape[1] != 2 or U.shape[0] < 2 or not np.isfinite(U).all():
        raise ValueError(f"grid must be an integer or a (G, 2) array of finite rows (w, b); got "
                         f"shape {U.shape}")
    nrm = np.hypot(U[:, 0], U[:, 1]) if norm == "l2" else np.abs(U).sum(1)
    if np.any(nrm <= 0):
        raise ValueError("grid neurons must be non-zero")
    return U / nrm[:, None]


def _data(X, y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(getattr(X, "cpu", lambda: X)(), dtype=np.float64).reshape(-1)
    y = np.asarray(getattr(y, "cpu", lambda: y)()).reshape(-1)
    if X.shape != y.shape or X.size == 0:
        raise ValueError(f"X (n,) or (n, 1) and y (n,) must have the same positive length; got "
                         f"{X.shape}, {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X has NaN/inf entries")
    uy = set(np.unique(y).tolist())
    if uy <= {0, 1}:
        xi = 2.0 * y - 1.0                          # package convention: class 1 is +1
    elif uy <= {-1, 1}:
        xi = y.astype(np.float64)
    else:
        raise ValueError(f"labels must be binary (0/1 or -1/+1); got {sorted(uy)}")
    if len(np.unique(xi)) != 2:
        raise ValueError("both classes need at least one point")
    if p is None:
        keep = np.ones(X.size, bool)
    else:
        p = np.asarray(getattr(p, "cpu", lambda: p)(), dtype=np.float64).reshape(-1)
        if p.shape != X.shape or not np.isfinite(p).all() or (p < 0).any():
            raise ValueError("p must be (n,) finite non-negative masses")
        keep = p > 0
    return X[keep], xi[keep], keep


def _relu_features(x: np.ndarray, U: np.ndarray) -> np.ndarray:
    return np.maximum(np.outer(x, U[:, 0]) + U[:, 1][None, :], 0.0)


@dataclass(frozen=True)
class MaxMarginResult:
    """The LP's maximum-margin classifier.

    Attributes:
        norm: ``l2`` or ``l1``.
        grid ((G, 2) array): unit neurons (w, b).
        weights ((G,) array): signed outer weights c (total variation ``sum |c| = 1``).
        margin: the optimal margin ``min_j xi_j f(x_j)`` at norm 1.
        status: the solver's message.
    """

    norm: str
    grid: np.ndarray
    weights: np.ndarray
    margin: float
    status: str = ""

    def evaluate(self, x) -> np.ndarray:
        """f(x) at points x ((n,) array)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return _relu_features(x, self.grid) @ self.weights

    @property
    def active(self) -> np.ndarray:
        """The neurons that carry weight (|c| > 1e-9), as rows (w, b, c)."""
        keep = np.abs(self.weights) > 1e-9
        return np.column_stack([self.grid[keep], self.weights[keep]])


def _solve_margin(Phi: np.ndarray, xi: np.ndarray):
    from scipy.optimize import linprog
    n, G = Phi.shape
    # variables: c+ (G), c- (G), gamma
    cost = np.zeros(2 * G + 1)
    cost[-1] = -1.0
    A_marg = np.hstack([-xi[:, None] * Phi, xi[:, None] * Phi, np.ones((n, 1))])
    A_norm = np.concatenate([np.ones(2 * G), [0.0]])[None]
    A_ub = np.vstack([A_marg, A_norm])
    b_ub = np.concatenate([np.zeros(n), [1.0]])
    bounds = [(0, None)] * (2 * G) + [(None, None)]
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"max-margin LP failed: {res.message}")
    return res.x[:G] - res.x[G:2 * G], float(res.x[-1]), res.message


def maxmargin_oracle(X, y, *, norm: str = "l2", grid: int | np.ndarray = 720,
                     p=None) -> MaxMarginResult:
    """The maximum-margin ReLU classifier of unit variation norm on 1-D data (an LP, HiGHS).

    Args:
        X ((n,) or (n, 1) array): points on the line.
        y ((n,) array): labels, 0/1 (class 1 is +1) or -1/+1.
        norm: ``l2`` (neurons with ``w^2 + b^2 = 1``) or ``l1`` (``|w| + |b| = 1``).
        grid: number of grid neurons (see :func:`unit_grid`) or a (G, 2) array of neurons
            (rescaled onto the unit circle of the norm).
        p ((n,) array): masses; only their support matters (zero-mass points are dropped).

    Returns:
        :class:`MaxMarginResult`.

    Raises:
        ValueError: bad shapes, labels or norm name.
    """
    norm = _check_norm(norm)
    x, xi, _ = _data(X, y, p)
    U = _as_grid(grid, norm)
    c, gamma, msg = _solve_margin(_relu_features(x, U), xi)
    if gamma <= 0:
        raise ValueError(f"the grid's networks cannot separate these data (margin {gamma:.3g}); "
                         "refine the grid or check the labels")
    return MaxMarginResult(norm, U, c, gamma, msg)


@dataclass(frozen=True)
class RatioInterval:
    """The range of ``f(x) / f(x0)`` over the maximum-margin face.

    Attributes:
        x ((q,) array): numerator points; x0: the denominator point.
        low, high ((q,) arrays): the min and max of the ratio over the optimal face.
        margin: the optimal margin the face was defined with.
    """

    x: np.ndarray
    x0: float
    low: np.ndarray
    high: np.ndarray
    margin: float


def ratio_interval(X, y, x, *, x0: float = 1.0, norm: str = "l1", grid: int | np.ndarray = 720,
                   p=None, rel_slack: float = 1e-9) -> RatioInterval:
    """Min and max of ``f(x)/f(x0)`` over every maximum-margin classifier of unit norm.

    With ``gamma*`` the optimal margin, the face is ``{c : sum|c| <= 1, xi_j f(x_j) >= gamma*}``.
    The ratio is linear-fractional; with ``u = c / f(x0)`` and ``t = 1 / f(x0)``
    (Charnes-Cooper) each bound is the LP

    .. math::

        \\min/\\max\\ \\phi(x)\\cdot u \\quad\\text{s.t.}\\quad \\phi(x_0)\\cdot u = 1,\\
        \\sum|u| \\le t,\\ \\xi_j \\phi(x_j)\\cdot u \\ge \\gamma^* t,\\ t \\ge 0 .

    ``x0`` must be a point of class +1 (where every max-margin f is >= gamma* > 0).

    Args:
        x: numerator points.
        x0: denominator point.
        rel_slack: the margin constraint is ``gamma* (1 - rel_slack)`` (LP round-off).

    Returns:
        :class:`RatioInterval`.
    """
    from scipy.optimize import linprog
    norm = _check_norm(norm)
    xs, xi, _ = _data(X, y, p)
    U = _as_grid(grid, norm)
    Phi = _relu_features(xs, U)
    _, gamma, _ = _solve_margin(Phi, xi)
    if gamma <= 0:
        raise ValueError(f"the data are not separated on this grid (margin {gamma:.3g})")
    xq = np.asarray(x, dtype=np.float64).reshape(-1)
    Pq = _relu_features(xq, U)
    p0 = _relu_features(np.array([float(x0)]), U)[0]
    n, G = Phi.shape
    g = gamma * (1 - rel_slack)
    # variables: u+ (G), u- (G), t
    A_marg = np.hstack([-xi[:, None] * Phi, xi[:, None] * Phi, g * np.ones((n, 1))])
    A_norm = np.concatenate([np.ones(2 * G), [-1.0]])[None]
    A_ub = np.vstack([A_marg, A_norm])
    b_ub = np.zeros(n + 1)
    A_eq = np.concatenate([p0, -p0, [0.0]])[None]
    bounds = [(0, None)] * (2 * G + 1)
    lo, hi = [], []
    for row in Pq:
        obj = np.concatenate([row, -row, [0.0]])
        out = []
        for sign in (1.0, -1.0):
            r = linprog(sign * obj, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds,
                        method="highs")
            if r.status != 0:
                raise RuntimeError(f"ratio LP failed at x = {row}: {r.message} (is x0 = {x0} a "
                                   "point of class +1?)")
            out.append(sign * r.fun)
        lo.append(out[0])
        hi.append(out[1])
    return RatioInterval(xq, float(x0), np.array(lo), np.array(hi), gamma)


def seed_family_weights(b: float, grid: np.ndarray, norm: str = "l1") -> np.ndarray:
    """The grid weights of ``f_b(x) = (relu(x + b) - relu(b - x)) / (2 + 2b)`` (docs/science.md §3.3).

    The neurons (1, b) and (-1, b), rescaled onto the unit circle of ``norm``, must be grid
    points (they are for b in {0, 1/2, 1} on grids of :func:`unit_grid` with G divisible by 24).

    Returns:
        (G,) array c with ``sum_g c_g relu(w_g x + b_g) = f_b(x)``.

    Raises:
        ValueError: a neuron of f_b is not on the grid.
    """
    norm = _check_norm(norm)
    U = np.asarray(grid, dtype=np.float64)
    c = np.zeros(U.shape[0])
    for w, sgn in ((1.0, 1.0), (-1.0, -1.0)):
        v = np.array([w, b])
        s = np.hypot(*v) if norm == "l2" else np.abs(v).sum()
        d = np.abs(U - v / s).max(1)
        g = int(np.argmin(d))
        if d[g] > 1e-12:
            raise ValueError(f"neuron {tuple(v / s)} of f_b (b = {b}) is not on the grid; use a grid "
                             "size divisible by 24")
        c[g] += sgn * s / (2 + 2 * b)
    return c
