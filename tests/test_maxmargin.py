"""The LP max-margin oracle on the seed family of docs/science.md §3.3."""

import math

import numpy as np
import pytest

from meanfield.data import line_classes
from meanfield.theory.maxmargin import (maxmargin_oracle, ratio_interval, seed_family_weights,
                                        unit_grid)


@pytest.fixture(scope="module")
def seed_data():
    s = line_classes(3).sample()
    return s.X[:, 0].numpy(), s.y.numpy()


def _features(x, U):
    return np.maximum(np.outer(x, U[:, 0]) + U[:, 1], 0.0)


def test_l2_margin_is_one_over_sqrt2_with_b_equal_1(seed_data):
    X, y = seed_data
    r = maxmargin_oracle(X, y, norm="l2", grid=240)
    assert r.margin == pytest.approx(1 / math.sqrt(2), abs=1e-9)
    assert np.abs(r.weights).sum() == pytest.approx(1.0, abs=1e-9)
    # the classifier is f_1 = (relu(x+1) - relu(1-x)) / 4, rescaled to unit l2 norm
    x = np.linspace(-4, 4, 81)
    f1 = (np.maximum(x + 1, 0) - np.maximum(1 - x, 0)) / 4
    assert np.allclose(r.evaluate(x), f1 * math.sqrt(2), atol=1e-8)
    # and it is the only one: the ratio interval over the l2 face is a point
    iv = ratio_interval(X, y, [2.0, 3.0], norm="l2", grid=240)
    assert np.allclose(iv.low, [1.5, 2.0], atol=1e-6) and np.allclose(iv.high, [1.5, 2.0], atol=1e-6)


def test_l1_margin_half_and_the_continuum_f_b(seed_data):
    X, y = seed_data
    G = 240
    r = maxmargin_oracle(X, y, norm="l1", grid=G)
    assert r.margin == pytest.approx(0.5, abs=1e-9)
    U = unit_grid(G, "l1")
    xi = 2.0 * y - 1
    for b in (0.0, 0.5, 1.0):
        c = seed_family_weights(b, U, "l1")
        assert np.abs(c).sum() == pytest.approx(1.0, abs=1e-12)           # norm 1 ...
        assert (xi * (_features(X, U) @ c)).min() == pytest.approx(r.margin, abs=1e-12)  # ... optimal
    iv = ratio_interval(X, y, [2.0, 3.0], norm="l1", grid=G)
    # f_b(x)/f_b(1) = (x + b)/(1 + b) for b in [0, 1]: [1.5, 2] at x = 2, [2, 3] at x = 3
    assert np.allclose(iv.low, [1.5, 2.0], atol=1e-6)
    assert np.allclose(iv.high, [2.0, 3.0], atol=1e-6)


def test_grid_family_and_bad_input(seed_data):
    X, y = seed_data
    for norm in ("l1", "l2"):
        U = unit_grid(96, norm)
        n = np.hypot(U[:, 0], U[:, 1]) if norm == "l2" else np.abs(U).sum(1)
        assert np.allclose(n, 1.0)
    with pytest.raises(ValueError, match="norm"):
        maxmargin_oracle(X, y, norm="l3")
    with pytest.raises(ValueError, match="binary"):
        maxmargin_oracle(X, np.arange(len(X)))
    with pytest.raises(ValueError, match="not on the grid"):
        seed_family_weights(0.3, unit_grid(240, "l1"))
