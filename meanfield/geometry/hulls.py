"""Convex-hull linear programs: membership, intersection of two hulls, separation margin.

Every test is one linear program solved with scipy's HiGHS (``scipy.optimize.linprog``), written
so that it is always feasible and bounded: the LP returns the smallest L-infinity gap ``s`` between
a convex combination of the hull's points and the query (or a convex combination of the other
set), and the answer is ``s <= tol * scale`` with ``scale = max(1, largest |coordinate|)``.
HiGHS's own primal feasibility tolerance (1e-7) bounds the resolution from below: points closer
than about ``1e-7 * scale`` to a hull count as inside it.

Cost: :func:`in_hull` solves one LP per query with ``k + 1`` variables and ``2 d`` inequality
rows (``k`` hull points in ``R^d``), after exact O(k d) filters per query that reject most outside
points without an LP: the bounding box, the direction from the hull's centroid to the query, the
distance to the hull's affine span (when the k points span less than ``R^d``, e.g. k <= d), and
the separating directions returned by earlier LPs (their duals). A query inside the hull always
costs an LP. :func:`hulls_intersect` is one LP with ``|A| + |B| + 1`` variables. :func:`separation_margin`
adds one convex QP (cvxpy + Clarabel) of the same size when the hulls are disjoint.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["as_points", "in_hull", "hulls_intersect", "hull_gap", "separation_margin"]


def as_points(X, name: str = "points", *, d: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 ``(n, d)`` array (numpy, torch or nested lists; 1-D means d = 1).

    Raises:
        ValueError: empty, not 1-/2-D, NaN/inf, or a dimension other than ``d``.
    """
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an (n, d) array of numbers: {e}") from None
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must be an (n, d) array; got shape {A.shape}")
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {A.shape}); give at least one point with d >= 1")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} has {int((~np.isfinite(A)).any(1).sum())} rows with NaN/inf "
                         "coordinates; remove or fix them")
    if d is not None and A.shape[1] != d:
        raise ValueError(f"{name} has dimension {A.shape[1]}, the hull's points have {d}; "
                         "give both in the same space")
    return A


def _check_tol(tol) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 <= tol < 1) \
            or not math.isfinite(tol):
        raise ValueError(f"tol must be a number in [0, 1) (relative L-inf distance), got {tol!r}")
    return float(tol)


def _scale(*arrays) -> float:
    return max(1.0, *(float(np.abs(a).max()) for a in arrays))


def _solve(c, A_ub, b_ub, A_eq, b_eq):
    from scipy.optimize import linprog
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:   # the LPs here are always feasible and bounded: a numerical failure
        raise RuntimeError(f"HiGHS failed on a hull LP (status {res.status}: {res.message})")
    return res


def _linprog(c, A_ub, b_ub, A_eq, b_eq) -> float:
    return float(_solve(c, A_ub, b_ub, A_eq, b_eq).fun)


class _HullLP:
    """The LP ``min s : |P^T lam - q|_inf <= s, lam in the simplex`` for many queries ``q``.

    Its dual is ``max_{|u|_1 <= 1} u.q - max_p u.p``: every LP that finds a query outside also
    returns a separating direction ``u`` (from the HiGHS marginals). The last :attr:`KEEP` such
    directions are kept and tried first on later queries (an exact O(KEEP d) certificate).
    """

    KEEP = 128

    def __init__(self, P: np.ndarray):
        k, d = P.shape
        self.P, self.k = P, k
        self.lo, self.hi, self.centre = P.min(0), P.max(0), P.mean(0)
        self.noise = 1e-9 * _scale(P)     # the filters' round-off floor
        self.U = np.zeros((0, d))
        self.Umax = np.zeros(0)
        # the affine hull of P (when it is not all of R^d): an exact reject for queries off it
        _, sv, Vt = np.linalg.svd(P - self.centre, full_matrices=False)
        rank = int((sv > 1e-10 * max(1.0, float(sv[0]) if len(sv) else 0.0)).sum())
        self.V = Vt[:rank] if rank < d else None
        ones = np.ones((d, 1))
        self.A_ub = np.block([[P.T, -ones], [-P.T, -ones]])
        self.A_eq = np.concatenate([np.ones(k), [0.0]])[None, :]
        self.c = np.concatenate([np.zeros(k), [1.0]])

    def gap(self, q: np.ndarray, thresh: float) -> float:
        """L-inf gap from q to the hull; any value > thresh when an O(k d) filter rejects q."""
        out = max(float((self.lo - q).max()), float((q - self.hi).max()))
        if out > thresh:                                   # outside the bounding box
            return out
        lim = max(thresh, self.noise)
        u = q - self.centre
        nu = float(np.abs(u).sum())
        if nu > 0:                                         # q beyond every point along u
            sep = (float(u @ q) - float((self.P @ u).max())) / nu   # a lower bound on the L-inf gap
            if sep > lim:
                return sep
        if self.V is not None:                             # off the affine hull of P
            r = u - self.V.T @ (self.V @ u)
            off = float(np.linalg.norm(r)) / math.sqrt(len(q))   # <= the L-inf distance
            if off > lim:
                return off
        if len(self.U):                                    # a direction that separated before
            sep = float((self.U @ q - self.Umax).max())
            if sep > lim:
                return sep
        res = _solve(self.c, self.A_ub, np.concatenate([q, -q]), self.A_eq, [1.0])
        if res.fun > thresh and getattr(res, "ineqlin", None) is not None:
            d = len(q)
            u = res.ineqlin.marginals[:d] - res.ineqlin.marginals[d:]
            nu = float(np.abs(u).sum())
            if nu > 0:
                u = u / nu
                self.U = np.vstack([u[None], self.U])[:self.KEEP]
                self.Umax = np.concatenate([[float((self.P @ u).max())], self.Umax])[:self.KEEP]
        return float(res.fun)


def in_hull(points, queries, *, tol: float = 1e-9) -> np.ndarray:
    """Which queries lie in the convex hull of ``points`` (one HiGHS LP per query).

    Args:
        points ((k, d) array): the hull's points (duplicates and degenerate sets are fine).
        queries ((q, d) array): points to test.
        tol: a query counts as inside when its L-inf distance to the hull is at most
            ``tol * max(1, largest |coordinate|)`` (see the module note on HiGHS's tolerance).

    Returns:
        (q,) bool array.

    Raises:
        ValueError: empty input, NaN/inf, mismatched dimensions, tol outside [0, 1).
    """
    tol = _check_tol(tol)
    P = as_points(points, "points")
    Q = as_points(queries, "queries", d=P.shape[1])
    thresh = tol * _scale(P, Q)
    lp = _HullLP(np.unique(P, axis=0))
    return np.array([lp.gap(q, thresh) <= thresh for q in Q], dtype=bool)


def hull_gap(A, B) -> float:
    """Smallest L-inf distance between conv(A) and conv(B) (0 when they meet), one HiGHS LP.

    Args:
        A ((na, d) array), B ((nb, d) array): the two point sets.
    """
    A = as_points(A, "A")
    B = as_points(B, "B", d=A.shape[1])
    return _gap(np.unique(A, axis=0), np.unique(B, axis=0), exact=True)


def _gap(A: np.ndarray, B: np.ndarray, *, exact: bool = False) -> float:
    """The L-inf gap between conv(A) and conv(B); a positive lower bound of it when not exact."""
    if not exact and ((A.min(0) > B.max(0)).any() or (B.min(0) > A.max(0)).any()):
        # disjoint bounding boxes: an axis-parallel separating hyperplane
        return float(max((A.min(0) - B.max(0)).max(), (B.min(0) - A.max(0)).max()))
    u = B.mean(0) - A.mean(0)
    nu = float(np.abs(u).sum())
    if nu > 0 and not exact:
        sep = (float((B @ u).min()) - float((A @ u).max())) / nu
        if sep > 0:   # separated along the centroid direction: a lower bound on the gap is enough
            return sep
    na, nb, d = A.shape[0], B.shape[0], A.shape[1]
    ones = np.ones((d, 1))
    A_ub = np.block([[A.T, -B.T, -ones], [-A.T, B.T, -ones]])
    A_eq = np.zeros((2, na + nb + 1))
    A_eq[0, :na] = 1.0
    A_eq[1, na:na + nb] = 1.0
    c = np.zeros(na + nb + 1)
    c[-1] = 1.0
    return _linprog(c, A_ub, np.zeros(2 * d), A_eq, [1.0, 1.0])


def hulls_intersect(A, B, *, tol: float = 1e-9) -> bool:
    """Whether conv(A) and conv(B) meet: one HiGHS LP.

    For finite sets this is exactly "not strictly linearly separable" (touching hulls count as
    meeting). ``tol`` as in :func:`in_hull`.

    Raises:
        ValueError: empty input, NaN/inf, mismatched dimensions, tol outside [0, 1).
    """
    tol = _check_tol(tol)
    A = as_points(A, "A")
    B = as_points(B, "B", d=A.shape[1])
    return _gap(np.unique(A, axis=0), np.unique(B, axis=0)) <= tol * _scale(A, B)


def separation_margin(A, B, *, tol: float = 1e-9) -> float:
    """Largest geometric margin of a hyperplane separating A from B; 0.0 when not separable.

    The hard-margin SVM margin: the distance from the best separating hyperplane to the nearest
    point, equal to half the Euclidean distance between conv(A) and conv(B). Computed as the
    convex QP ``min |A^T lam - B^T mu|^2`` over two simplices (cvxpy + Clarabel) after the
    :func:`hulls_intersect` LP; never negative: exactly 0.0 when the hulls meet (up to ``tol``).

    Args:
        A ((na, d) array), B ((nb, d) array): the two point sets.
        tol: passed to :func:`hulls_intersect`.

    Returns:
        The margin (>= 0), in the units of the points.
    """
    tol = _check_tol(tol)
    A = as_points(A, "A")
    B = as_points(B, "B", d=A.shape[1])
    A, B = np.unique(A, axis=0), np.unique(B, axis=0)
    scale = _scale(A, B)
    if _gap(A, B) <= tol * scale:
        return 0.0
    return _half_distance(A, B)


def _half_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Half the distance between two disjoint hulls, as the margin of a hyperplane actually found.

    The QP gives nearest points ``a in conv(A)``, ``b in conv(B)``; the hyperplane with normal
    ``g = a - b`` through the middle separates A from B with margin
    ``(min_A g.x - max_B g.x) / (2 |g|)``, which is returned: never more than the optimum (it is a
    separating hyperplane's margin) and equal to it up to the solver's accuracy.
    """
    if A.shape[0] == 1 and B.shape[0] == 1:
        return float(np.linalg.norm(A[0] - B[0])) / 2
    import warnings

    import cvxpy as cp
    centre = np.concatenate([A, B]).mean(0)
    s = _scale(A - centre, B - centre)
    As, Bs = (A - centre) / s, (B - centre) / s
    lam = cp.Variable(As.shape[0], nonneg=True)
    mu = cp.Variable(Bs.shape[0], nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(As.T @ lam - Bs.T @ mu)),
                      [cp.sum(lam) == 1, cp.sum(mu) == 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "inaccurate" is checked below through the certificate
        prob.solve(solver="CLARABEL")
    if lam.value is None or mu.value is None:
        raise RuntimeError(f"Clarabel failed on the margin QP (status {prob.status})")
    la, mb = np.clip(lam.value, 0, None), np.clip(mu.value, 0, None)
    g = As.T @ la / la.sum() - Bs.T @ mb / mb.sum()
    ng = float(np.linalg.norm(g))
    if ng == 0.0:
        return 0.0
    return max(0.0, (float((As @ g).min()) - float((Bs @ g).max())) / (2 * ng)) * s
