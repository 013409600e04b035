"""Class geometry (meanfield.geometry) on cases with known answers.

Oracles: closed forms (distances between segments and squares, the Enclosure family's
t* = (r_in - r0) / (r_in + r_out) and disc-segment hull fraction, weighted atoms), and independent
computations (1-D intervals; scipy.spatial.Delaunay for 2-D membership).

Tolerances: exact LP answers are compared exactly (bools); margins from the QP to 1e-5; sampled
boundaries (2000 samples, bisection tol 1e-3) to 0.01 (bias ~2e-3 above t*); sampled fractions
to 4 binomial standard errors plus the inner bias of a sampled hull.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meanfield.data import Enclosure, point_masses, register_distribution
from meanfield.data.registry import unregister_distribution
from meanfield.geometry import (ClassGeometry, HullLine, PairGeometry, class_geometry, enclosed,
                                hull_boundary, hull_gap, hulls_intersect, in_hull,
                                separation_margin)

TRI = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
SQ = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def t_star(r0, r_in, r_out):
    return (r_in - r0) / (r_in + r_out)


# ------------------------------------------------------------------ membership and intersection
def test_in_hull_triangle_vertices_edges_outside():
    q = [[0.2, 0.2], [0.0, 0.0], [0.5, 0.5], [0.6, 0.6], [-0.01, 0.5], [1.0, 1e-3]]
    assert in_hull(TRI, q).tolist() == [True, True, True, False, False, False]


def test_in_hull_degenerate_and_duplicate_points():
    seg = np.array([[0.0, 0.0], [2.0, 2.0], [2.0, 2.0], [1.0, 1.0]])   # collinear, a duplicate
    assert in_hull(seg, [[1.5, 1.5], [1.5, 1.6], [3.0, 3.0]]).tolist() == [True, False, False]
    assert in_hull([[1.0, 2.0]] * 3, [[1.0, 2.0], [1.0, 2.1]]).tolist() == [True, False]
    plane = np.c_[SQ, np.zeros(4)]                                      # flat square in R^3
    assert in_hull(plane, [[0.5, 0.5, 0.0], [0.5, 0.5, 1e-3]]).tolist() == [True, False]


@settings(max_examples=20, deadline=None)
@given(a=st.lists(st.floats(-5, 5), min_size=1, max_size=6),
       b=st.lists(st.floats(-5, 5), min_size=1, max_size=6))
def test_one_dimension_matches_intervals(a, b):
    A, B = np.array(a), np.array(b)
    gap = max(A.min(), B.min()) - min(A.max(), B.max())
    if abs(gap) < 1e-6:   # touching intervals: inside HiGHS's resolution
        return
    assert hulls_intersect(A, B) == (gap < 0)
    assert separation_margin(A, B) == pytest.approx(max(gap, 0.0) / 2, abs=1e-5)
    inside = (B >= A.min()) & (B <= A.max())
    far = (B < A.min() - 1e-6) | (B > A.max() + 1e-6)
    got = in_hull(A, B)
    assert got[inside].all() and not got[far].any()


@pytest.mark.parametrize("d", [2, 4])
def test_in_hull_matches_delaunay(d):
    from scipy.spatial import Delaunay
    rng = np.random.default_rng(d)
    P, Q = rng.normal(size=(30, d)), rng.normal(scale=1.2, size=(60, d))
    want = Delaunay(P).find_simplex(Q) >= 0
    assert 5 < want.sum() < 55                     # both answers occur
    assert (in_hull(P, Q) == want).all() and in_hull(P, P).all()


def test_hulls_intersect_separable_touching_interleaved():
    assert not hulls_intersect(SQ, SQ + [3.0, 0.0])
    assert hulls_intersect(SQ, SQ + [1.0, 1.0])                 # share the corner (1, 1)
    assert hulls_intersect([[0, 0], [1, 1]], [[1, 0], [0, 1]])  # XOR diagonals cross
    assert hull_gap(SQ, SQ + [3.0, 0.5]) == pytest.approx(2.0, abs=1e-9)   # L-inf gap
    assert hull_gap(TRI, [[0.1, 0.1]]) == pytest.approx(0.0, abs=1e-9)


def test_separation_margin_closed_forms():
    assert separation_margin([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(2.5)
    assert separation_margin(SQ, SQ + [3.0, 0.0]) == pytest.approx(1.0, abs=1e-5)
    # segments x = 0 and x = 2 over y in [0, 1]; duplicates change nothing
    A = [[0, 0], [0, 1], [0, 1]]
    assert separation_margin(A, [[2, 0], [2, 1]]) == pytest.approx(1.0, abs=1e-5)
    # the nearest points are (1, 1) and (2, 2): distance sqrt 2
    assert separation_margin(SQ, SQ + 2.0) == pytest.approx(math.sqrt(2) / 2, abs=1e-5)
    assert separation_margin(SQ, SQ + 0.5) == 0.0
    # scale: margins are in the units of the points
    assert separation_margin(1e3 * SQ, 1e3 * (SQ + [3.0, 0.0])) == pytest.approx(1e3, rel=1e-5)


def test_margin_matches_a_hard_margin_svm_in_10d():
    from sklearn.svm import SVC
    rng = np.random.default_rng(2)
    A, B = rng.normal(size=(15, 10)), rng.normal(size=(15, 10)) + 1.5
    svm = SVC(kernel="linear", C=1e9, tol=1e-10).fit(np.r_[A, B], np.r_[np.zeros(15), np.ones(15)])
    assert separation_margin(A, B) == pytest.approx(1 / np.linalg.norm(svm.coef_), rel=1e-4)


# ------------------------------------------------------------------ class geometry
def test_nested_squares_and_weights():
    inner = 0.25 + 0.5 * SQ                                   # inside the unit square
    X = np.r_[SQ, inner, [[5.0, 0.5]]]
    y = np.r_[np.zeros(4), np.ones(4), [1]].astype(int)
    g = class_geometry(X, y)
    p = g.pair(1, 0)
    assert isinstance(g, ClassGeometry) and isinstance(p, PairGeometry)
    assert (p.a, p.b, p.hulls_intersect, p.separable, p.margin) == (0, 1, True, False, 0.0)
    assert p.frac_b_in_a == pytest.approx(4 / 5) and p.frac_a_in_b == 0.0
    assert g.enclosed and not g.separable and g.counts == (4, 5) and g.classes == (0, 1)
    assert "80% of class 1 inside the hull of class 0" in p.verdict
    w = np.r_[np.ones(8), 4.0]                                # the outlier carries half the mass
    assert class_geometry(X, y, weights=w).pairs[0].frac_b_in_a == pytest.approx(0.5)
    w0 = np.r_[np.ones(8), 0.0]                               # a zero-weight sample is ignored
    assert class_geometry(X, y, weights=w0).pairs[0].frac_b_in_a == 1.0


def test_three_classes_separable_and_xor():
    X = np.r_[SQ, SQ + [3, 0], SQ + [0, 4]]
    y = np.repeat([0, 1, 2], 4)
    g = class_geometry(X, y)
    assert g.separable and not g.enclosed and len(g.table()) == 3
    assert [round(p.margin, 5) for p in g.pairs] == [1.0, 1.5, pytest.approx(1.80278, abs=1e-5)]
    assert g.pairs[0].verdict == "separable, margin 1"
    xor = class_geometry([[1, 1], [-1, -1], [1, -1], [-1, 1]], [0, 0, 1, 1])
    p = xor.pairs[0]
    assert p.hulls_intersect and p.frac_a_in_b == p.frac_b_in_a == 0.0 and not xor.enclosed
    assert "no sample inside" in p.verdict


def test_three_atoms_seed_geometry():
    s = point_masses([[-1.0], [0.0], [1.0], [0.0]], [1, 0, 1, 0], [1, 2, 3, 0]).sample()
    g = class_geometry(s.X, s.y, weights=s.p)
    assert g.pairs[0].frac_a_in_b == 1.0 and g.pairs[0].frac_b_in_a == 0.0 and g.enclosed


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_enclosure_family_fraction_and_margin(t):
    d = Enclosure(t)
    s = d.sample(600, seed=3)
    g = class_geometry(s.X, s.y, weights=s.p)
    p, n0 = g.pairs[0], int((s.y == 0).sum())
    if t == 0.0:   # disc vs segment left of x1 = -r_in: margin (r_in - r0) / 2 = 0.25, from above
        assert p.separable and 0.25 <= p.margin < 0.3 and p.frac_a_in_b == 0.0
    else:
        f = d.hull_fraction
        se = math.sqrt(f * (1 - f) / n0)
        assert f - 4 * se - 0.03 <= p.frac_a_in_b <= f + 4 * se, (p.frac_a_in_b, f)
        assert p.frac_b_in_a == 0.0


def test_approx_mode_estimates_the_exact_fraction():
    s = Enclosure(0.5).sample(400, seed=4)
    full = class_geometry(s.X, s.y)
    exact = full.pairs[0].frac_a_in_b
    g = class_geometry(s.X, s.y, approx=True, max_points=100, seed=1)
    assert g.approx and g.max_points == 100 and full.max_points is None and not full.approx
    assert abs(g.pairs[0].frac_a_in_b - exact) <= 4 * 0.5 / math.sqrt(100)
    assert "(estimated)" in g.pairs[0].verdict


# ------------------------------------------------------------------ boundaries and theory lines
def _moving_atom(s: float = 0.0):
    """Class 1 = atoms {-1, 1}, class 0 = one atom at s: inside the hull for |s| <= 1."""
    return point_masses([[-1.0], [1.0], [s]], [1, 1, 0])


def test_hull_boundary_exact_family_and_edges():
    def sample(s):
        a = _moving_atom(s).sample()
        return a.X, a.y
    assert hull_boundary(sample, -3.0, 0.0, tol=1e-6) == pytest.approx(-1.0, abs=1e-6)
    assert hull_boundary(sample, -3.0, 0.0, tol=1e-6, criterion="intersect") == pytest.approx(-1.0, abs=1e-6)
    assert hull_boundary(sample, -0.5, 0.5) == -0.5                    # met everywhere: lo
    assert math.isnan(hull_boundary(sample, -3.0, -2.0))              # never met: nan
    assert enclosed(*sample(0.3)) and not enclosed(*sample(1.3))


@pytest.mark.parametrize("radii", [(0.5, 1.0, 1.5), (0.3, 1.2, 2.0)])
def test_hull_boundary_matches_enclosure_closed_form(radii):
    r0, r_in, r_out = radii
    b = hull_boundary(lambda t: Enclosure(t, r0=r0, r_in=r_in, r_out=r_out).sample(2000, seed=0),
                      0.0, 1.0)
    assert t_star(*radii) - 1e-3 <= b <= t_star(*radii) + 0.01


def test_hull_line_for_a_user_distribution():
    register_distribution("_geometry_test_atom", _moving_atom)
    try:
        line = HullLine("_geometry_test_atom", "s", -3.0, 0.0, tol=1e-6)
        assert line({"data.s": -2.0, "flow.lam": 0.1}) == pytest.approx(-1.0, abs=1e-6)
        assert line({"data.s": -0.5}) == pytest.approx(0.5, abs=1e-6)
        with pytest.raises(ValueError, match="no parameter 'q'"):
            HullLine("_geometry_test_atom", "q", 0.0, 1.0)
    finally:
        unregister_distribution("_geometry_test_atom")


def test_enclosure_theory_line_follows_the_radii_and_the_closed_form():
    import pickle

    from meanfield.experiments.enclosure import EXPERIMENT, hull_theory
    fn = pickle.loads(pickle.dumps(EXPERIMENT.science.theory.fn))   # travels to sweep workers
    for p in ({"data.t": 0.5}, {"data.t": 0.1, "data.r0": 0.3, "data.r_in": 1.2, "data.r_out": 2.0}):
        assert fn(p) == pytest.approx(hull_theory(p), abs=0.01)
        assert fn(p) <= hull_theory(p) + 1e-3   # the sampled boundary sits at or above t*


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, match", [
    (lambda: in_hull([[0, np.nan]], [[0, 0]]), "NaN"),
    (lambda: in_hull(TRI, [[0, 0, 0]]), "dimension"),
    (lambda: in_hull(np.zeros((0, 2)), [[0, 0]]), "empty"),
    (lambda: in_hull(TRI, [[0, 0]], tol=-1), "tol"),
    (lambda: hulls_intersect(TRI, np.zeros((2, 2, 2))), "shape"),
    (lambda: class_geometry(SQ, [0, 0, 1]), "one label per row"),
    (lambda: class_geometry(SQ, [0, 0, 0, 0]), "two classes"),
    (lambda: class_geometry(SQ, [0, 0, 1, 1], weights=[1, 1, 0, 0]), "class 1 has zero"),
    (lambda: class_geometry(SQ, [0, 0, 1, 1], weights=[1, -1, 1, 1]), "weights"),
    (lambda: class_geometry(SQ, [0, 0.5, 1, 1]), "integer"),
    (lambda: class_geometry(SQ, [0, 0, 1, 1], approx=True, max_points=0), "max_points"),
    (lambda: hull_boundary(lambda t: (SQ, [0, 0, 1, 1]), 1.0, 0.0), "lo < hi"),
    (lambda: hull_boundary(lambda t: (SQ, [0, 0, 1, 1]), 0.0, 1.0, criterion="x"), "criterion"),
    (lambda: hull_boundary(lambda t: SQ, 0.0, 1.0), "must return"),
    (lambda: HullLine("no_such_distribution", "t", 0.0, 1.0), "no_such_distribution"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
