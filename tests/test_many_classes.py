"""Softmax codes (meanfield.theory.softmax_code) and the ``many_classes`` experiment.

Oracles: the one-vs-rest distance of known configurations in closed form (simplex K/(K-1), circle
1 - cos(2 pi / K), cross-polytope 1), an independent convex-program value (cvxpy) of the distance
to a hull, and the duality certificate; the direct search must reproduce the known optima.
"""

import math

import pytest
import torch

from meanfield.study.experiment import RunContext, get_experiment, resolve_config
from meanfield.theory.softmax_code import (circle_code, code_value, cross_polytope, hull_distances,
                                           known_optimum, min_angle, optimise_code, simplex_code,
                                           sphere_rows)


@pytest.mark.parametrize("K,d", [(2, 1), (3, 2), (4, 3), (5, 4), (4, 6)])
def test_simplex_value(K, d):
    W = simplex_code(K, d)
    assert torch.allclose(W.norm(dim=1), torch.ones(K, dtype=W.dtype))
    assert abs(code_value(W) - K / (K - 1)) < 1e-12
    assert known_optimum(K, d) == pytest.approx(K / (K - 1))


@pytest.mark.parametrize("K", [3, 5, 6, 9])
def test_circle_value(K):
    assert abs(code_value(circle_code(K)) - (1 - math.cos(2 * math.pi / K))) < 1e-12


@pytest.mark.parametrize("d", [2, 3, 5])
def test_cross_polytope_value(d):
    assert abs(code_value(cross_polytope(d)) - 1.0) < 1e-12


def test_hull_distance_matches_convex_program():
    cp = pytest.importorskip("cvxpy")
    g = torch.Generator().manual_seed(3)
    W = sphere_rows(torch.randn(7, 3, generator=g, dtype=torch.float64))
    rho, gap = hull_distances(W)
    assert gap.abs().max() < 1e-10            # the dual certificate closes
    Wn = W.numpy()
    for k in range(7):
        O = Wn[[j for j in range(7) if j != k]]
        a = cp.Variable(6, nonneg=True)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(Wn[k] - O.T @ a)), [cp.sum(a) == 1])
        prob.solve(solver=cp.CLARABEL)
        assert abs(float(rho[k]) - math.sqrt(max(prob.value, 0.0))) < 1e-6


def test_point_inside_hull_has_zero_distance():
    W = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    rho, _ = hull_distances(W)
    assert float(rho[0]) < 1e-12


def test_rho_is_not_a_function_of_the_smallest_angle():
    # K = 4, d = 3, both with smallest pairwise angle 90 degrees: a square in a plane (rho = 1)
    # and e_1, e_2, e_3, -(1, 1, 1)/sqrt(3) (rho > 1): the objective is not the Tammes objective
    sq = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    tri = sphere_rows(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]], dtype=torch.float64))
    assert abs(min_angle(sq) - math.pi / 2) < 1e-12 and abs(min_angle(tri) - math.pi / 2) < 1e-12
    assert abs(code_value(sq) - 1.0) < 1e-12 and code_value(tri) > 1.1


@pytest.mark.parametrize("K,d", [(5, 2), (4, 3), (6, 3)])
def test_direct_search_reaches_known_or_cross_polytope(K, d):
    res = optimise_code(K, d, starts=4, seed=0)
    want = known_optimum(K, d) if known_optimum(K, d) is not None else 1.0   # (6, 3): octahedron
    assert res.gap < 1e-8
    assert abs(res.value - want) < 1e-4, (res.value, want)


@pytest.mark.parametrize("bad", [torch.zeros(1, 3), torch.full((3, 2), float("nan")), torch.zeros(3)])
def test_bad_codes_raise(bad):
    with pytest.raises(ValueError):
        code_value(bad)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="simplex"):
        simplex_code(5, 2)
    with pytest.raises(ValueError):
        known_optimum(1, 2)
    with pytest.raises(ValueError):
        optimise_code(3, 2, starts=0)


def _run(**over):
    exp = get_experiment("many_classes")
    cfg = resolve_config(exp, {**exp.small, **over})
    return exp.run(cfg, RunContext(seed=1, figures=False)).summary


def test_experiment_circle_reaches_known_code():
    s = _run(num_classes=5, dim=2, tau=0.05)
    assert s["rho_best_agrees"] and s["rho_best_theory"] == pytest.approx(1 - math.cos(2 * math.pi / 5))
    assert abs(s["rel_gap"]) < 1e-4 and s["converged"]
    assert s["certificate_gap"] < 1e-10


def test_experiment_beyond_simplex_reports_gap():
    s = _run(num_classes=6, dim=3, tau=0.05)
    assert s["beyond_simplex"] and math.isnan(s["rho_known"])
    assert s["rho_trained"] <= s["rho_best"] + 1e-6 or s["rel_gap"] < 0
    assert s["rel_gap"] == pytest.approx((s["rho_best"] - s["rho_trained"]) / s["rho_best"])


@pytest.mark.parametrize("key,val", [("tau", 0.0), ("tau", float("nan")), ("num_classes", 1),
                                     ("dim", 1), ("starts", 0)])
def test_experiment_bad_input(key, val):
    with pytest.raises(ValueError, match=key):
        _run(**{key: val})


@pytest.mark.slow   # tests/test_atlas.py runs every entry at size small in the default suite
def test_atlas_entry_small(tmp_path):
    from meanfield import atlas
    assert "many_classes" in atlas.list_atlas()
    page = atlas.run_atlas(tmp_path, size="small", only=["many_classes"], width_limit=False)
    assert (tmp_path / "many_classes" / "many_classes.png").stat().st_size > 0
    text = (tmp_path / "atlas.md").read_text()
    assert "grid points" in text and "agrees with the line's side" in text and page.exists()
