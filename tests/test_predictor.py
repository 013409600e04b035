"""The geometric rule of output collapse (meanfield.predictor) on point sets whose geometry is known
by construction, and its scoring against hand-counted confusion matrices."""

import math

import numpy as np
import pytest

from meanfield.geometry import class_geometry
from meanfield.predictor import (activation_only, is_homogeneous, output_collapsed,
                                 output_statistic, predict_collapse, score)


def _three_atoms():
    """Class 0 = {0} inside the hull [-1, 1] of class 1 = {-1, 1} (docs/science.md §3.2)."""
    return class_geometry(np.array([[-1.0], [0.0], [1.0]]), np.array([1, 0, 1]))


def _separated():
    """Two clusters on either side of x_1 = 0: separable with margin 1."""
    X = np.array([[-2.0, 0.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [2.0, 0.0]])
    return class_geometry(X, np.array([0, 0, 0, 1, 1, 1]))


def _xor():
    """XOR corners: the two hulls (diagonals) cross at 0, yet no corner lies in the other hull."""
    X = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    return class_geometry(X, np.array([0, 0, 1, 1]))


def test_geometries_are_what_they_were_built_to_be():
    g = _three_atoms()
    assert g.enclosed and not g.separable
    assert g.pairs[0].frac_a_in_b == pytest.approx(1.0)       # class 0's one atom is inside
    g = _separated()
    assert g.separable and not g.enclosed
    assert g.pairs[0].margin == pytest.approx(1.0, abs=1e-6)  # half the gap between x1 = -1 and 1
    g = _xor()
    assert not g.separable and not g.enclosed


@pytest.mark.parametrize("act", ["relu", "tanh", "softplus", "smoothstep"])
@pytest.mark.parametrize("regime", ["bounded", "unbounded"])
def test_enclosure_means_no_collapse_for_every_activation_and_regime(act, regime):
    p = predict_collapse(_three_atoms(), act, regime)
    assert p.collapse is False and p.enclosed
    assert "enclosed" in p.reason and regime in p.reason
    assert p.max_inside == pytest.approx(1.0)


@pytest.mark.parametrize("act,expected", [("relu", False), ("leaky_relu", False),
                                          ("tanh", True), ("softplus", True)])
def test_separable_classes_collapse_only_under_a_non_homogeneous_head(act, expected):
    p = predict_collapse(_separated(), act, "bounded")
    assert p.collapse is expected
    assert p.homogeneous is (not expected)
    assert p.min_margin == pytest.approx(1.0, abs=1e-6)


def test_nice_but_not_separable_geometry_predicts_collapse_even_for_relu():
    p = predict_collapse(_xor(), "relu", "bounded")
    assert p.collapse is True and not p.separable and not p.enclosed
    assert p.as_dict()["predicted_collapse"] is True


def test_activation_only_baseline_is_the_degenerate_reading():
    assert activation_only("relu") is False and activation_only("tanh") is True
    # on separable, non-enclosed data the rule and the baseline coincide
    for act in ("relu", "tanh"):
        assert predict_collapse(_separated(), act).collapse == activation_only(act)
    # where the geometry is enclosed they differ for smooth heads
    assert predict_collapse(_three_atoms(), "tanh").collapse != activation_only("tanh")


def test_score_against_a_hand_counted_confusion_matrix():
    pred = [True, True, False, False, False, True, False]
    meas = [True, False, False, True, None, True, False]
    s = score(pred, meas)
    assert (s["tp"], s["fp"], s["fn"], s["tn"], s["n"], s["undefined"]) == (2, 1, 1, 2, 6, 1)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert s["base_rate_collapsed"] == pytest.approx(3 / 6)
    assert s["predicted_rate"] == pytest.approx(3 / 6)
    # one class of outcome only: the balanced accuracy is the recall of that class
    s = score([False, True], [False, False])
    assert s["balanced_accuracy"] == pytest.approx(0.5) and s["accuracy"] == pytest.approx(0.5)
    assert math.isnan(score([], [])["accuracy"])


def test_output_statistic_follows_the_regime():
    s = {"nc1_out": 0.01, "spread": 3.0, "spread_rel": 0.2}
    assert output_statistic(s, "bounded") == 0.01 and output_collapsed(s, "bounded") is True
    assert output_statistic(s, "unbounded") == 3.0 and output_collapsed(s, "unbounded") is False
    assert output_collapsed({"nc1_out": float("nan")}, "bounded") is None


@pytest.mark.parametrize("call,match", [
    (lambda: predict_collapse(_separated(), "relu", "sideways"), "unknown regime"),
    (lambda: predict_collapse(_separated(), "", "bounded"), "activation"),
    (lambda: is_homogeneous(None), "activation"),
    (lambda: score([True], [True, False]), "1 predictions but 2"),
    (lambda: output_statistic({"spread": 1.0}, "bounded"), "nc1_out"),
])
def test_bad_input_names_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()
