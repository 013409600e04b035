"""The layerwise experiment: the alignment score against constructed subspaces, its chance level,
its invariances, bad input, and one small run whose input-layer NC1 is recomputed independently."""

import math

import pytest
import torch

from meanfield.experiments.layerwise import class_mean_basis, subspace_alignment
from meanfield.metrics import neural_collapse
from meanfield.study import get_experiment, run_experiment


def _means_problem(C=4, q=12, per=5, seed=0, noise=0.05):
    """Features whose class means span a known (C-1)-dim subspace; returns (H, y, basis of that span)."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(C, q, generator=g, dtype=torch.float64)
    M = M - M.mean(0)
    y = torch.arange(C).repeat_interleave(per)
    Z = noise * torch.randn(C * per, q, generator=g, dtype=torch.float64)
    Z = Z - torch.stack([Z[y == c].mean(0) for c in range(C)])[y]  # class means exactly M
    Q, _ = torch.linalg.qr(M.T)
    return M[y] + Z, y, Q[:, :C - 1]


def test_alignment_is_one_on_the_mean_span_and_zero_off_it():
    H, y, Q = _means_problem()
    C, q = 4, H.shape[1]
    g = torch.Generator().manual_seed(1)
    W_in = torch.randn(7, C - 1, generator=g, dtype=torch.float64) @ Q.T          # rows in the span
    a, chance = subspace_alignment(W_in, H, y, C)
    assert a == pytest.approx(1.0, abs=1e-10)
    assert chance == pytest.approx((C - 1) / q)
    P_perp = torch.eye(q, dtype=torch.float64) - Q @ Q.T
    W_out = torch.randn(7, q, generator=g, dtype=torch.float64) @ P_perp        # rows orthogonal to it
    assert subspace_alignment(W_out, H, y, C)[0] == pytest.approx(0.0, abs=1e-10)


def test_alignment_of_one_known_angle():
    """k = r = 1 (two classes): A = cos^2 of the angle between the weight row and the mean difference."""
    H, y, Q = _means_problem(C=2, q=5)
    u = Q[:, 0]
    v = torch.linalg.qr(torch.stack([u, torch.randn(5, dtype=torch.float64)], 1))[0][:, 1]
    theta = 0.3
    W = (math.cos(theta) * u + math.sin(theta) * v)[None]
    assert subspace_alignment(W, H, y, 2)[0] == pytest.approx(math.cos(theta) ** 2, abs=1e-10)


def test_alignment_invariant_to_scale_and_rotation_and_near_chance_when_random():
    H, y, _ = _means_problem(C=5, q=300, per=4, seed=2, noise=0.5)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(50, 300, generator=g, dtype=torch.float64)
    a, chance = subspace_alignment(W, H, y, 5)
    R, _ = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=torch.float64))
    assert subspace_alignment(3.7 * W @ R, H @ R, y, 5)[0] == pytest.approx(a, abs=1e-9)
    assert chance == pytest.approx(4 / 300)
    assert a < 0.1   # E A = 4/300 for independent subspaces; a structured W would give ~1


def test_class_mean_basis_rank_drops_when_means_coincide():
    H, y, _ = _means_problem(C=4, q=6)
    assert class_mean_basis(H, y, 4).shape == (6, 3)
    H2 = H.clone()
    H2[y == 3] = H2[y == 3] - H2[y == 3].mean(0) + H2[y == 2].mean(0)   # class 3's mean on class 2's
    assert class_mean_basis(H2, y, 4).shape == (6, 2)


@pytest.mark.parametrize("case", ["nan_features", "shape_mismatch", "nan_weight", "empty_class"])
def test_bad_input_is_a_value_error(case):
    H, y, _ = _means_problem(C=3, q=4)
    W = torch.randn(3, 4, dtype=torch.float64)
    if case == "nan_features":
        H[0, 0] = float("nan")
        match = "NaN"
    elif case == "shape_mismatch":
        W = torch.randn(3, 5, dtype=torch.float64)
        match = "act on the input"
    elif case == "nan_weight":
        W[0, 0] = float("inf")
        match = "NaN"
    else:
        y = y.clone()
        y[y == 2] = 1
        match = "class"
    with pytest.raises(ValueError, match=match):
        subspace_alignment(W, H, y, 3)


def test_unknown_deep_model_is_refused():
    with pytest.raises(ValueError, match="layerwise measures MLPs"):
        run_experiment("layerwise", {"model": "convnet"}, write=False)


def test_small_run_reports_every_layer_and_draws_the_figure(tmp_path):
    exp = get_experiment("layerwise")
    res = run_experiment("layerwise", dict(exp.small), out=tmp_path / "lw", progress=False)
    s = res.summary
    L = int(s["depth"])
    assert L == exp.small["model.depth"]
    for l in range(L + 1):
        assert f"nc1_layer{l}" in s and f"nc1_init_layer{l}" in s
    for l in range(1, L + 1):
        a, ch = s[f"align_layer{l}"], s[f"align_chance_layer{l}"]
        assert 0.0 <= a <= 1.0 + 1e-9 and 0.0 < ch <= 1.0
    for net in ("two_layer", "meanfield"):
        assert 0.0 <= s[f"align_w1_{net}"] <= 1.0 + 1e-9 and s[f"nc1_hidden_{net}"] > 0
    # the input layer's NC1, recomputed from the data without the experiment
    from meanfield.data.registry import get_distribution
    d = get_distribution("digits", per_class=exp.small["data.per_class"], standardise="global")
    x = d.sample(seed=0, dtype=torch.float32)
    want = neural_collapse(x.X.flatten(1), x.y, weights=x.p).nc1
    assert s["nc1_layer0"] == pytest.approx(float(want), rel=1e-5)
    assert s["nc1_init_layer0"] == s["nc1_layer0"]
    assert not any(k.endswith("_agrees") for k in s)     # empirical claim: nothing is claimed
    assert (tmp_path / "lw" / "layerwise.png").exists()
