"""Multi-label NC with the pick-all-label CE (docs/science.md §5.1).

Oracles: the reduced symmetric problem (meanfield.theory.multilabel, a 2-3 variable minimisation)
for the UFM's optimal value (1e-9 relative) and tag-wise scales (1e-5 relative: L-BFGS stops at
gradient norm 1e-8); exact constructions for the tag-wise measure (deviation 0 and a known scale
for set means built as scaled averages, a known sine for a rotated one); autograd-free direct
sums for the PAL loss.
"""

import math

import pytest
import torch

from meanfield.deep.ufm_multilabel import (MultiLabelUFMConfig, fit_multilabel_ufm, label_sets,
                                           multi_hot, pal_loss, set_means, tagwise_average)
from meanfield.study import run_experiment


from meanfield.theory.etf import simplex_etf
from meanfield.theory.multilabel import symmetric_pal_ufm


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_label_sets_and_multi_hot():
    sets = label_sets(4, (1, 2))
    assert len(sets) == 4 + 6 and sets[:4] == [(0,), (1,), (2,), (3,)] and (1, 3) in sets
    Y = multi_hot(sets, 4)
    assert Y.sum(1).tolist() == [1.0] * 4 + [2.0] * 6


@pytest.mark.parametrize("bad, match", [((2,), "include 1"), ((1, 4), "1..K-1"), ((1, 1), "distinct"),
                                        ((), "distinct")])
def test_label_sets_refuses_bad_multiplicities(bad, match):
    with pytest.raises(ValueError, match=match):
        label_sets(4, bad)


def test_pal_loss_is_the_sum_of_cross_entropies_over_the_set():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(3, 5, generator=g, dtype=torch.float64)
    Y = multi_hot([(0,), (1, 3), (0, 2, 4)], 5)
    want = [sum(-torch.log_softmax(Z[i], 0)[k] for k in S) for i, S in enumerate([(0,), (1, 3), (0, 2, 4)])]
    assert torch.allclose(pal_loss(Z, Y), torch.stack(want), atol=1e-14)
    with pytest.raises(ValueError, match="one shape"):
        pal_loss(Z, Y[:, :4])


def _tagwise_means(K, scale2, p=6, rotate=0.0):
    """Set means built as exact scaled averages of ETF single-label means (one pair rotated)."""
    sets = label_sets(K, (1, 2))
    M = simplex_etf(K, p).T * 2.0 + 0.3                # (K, p), an uncentred ETF
    centre = M.mean(0)
    rows = [M[k] for k in range(K)]
    for S in sets[K:]:
        rows.append(centre + scale2 * (M[list(S)] - centre).mean(0))
    means = torch.stack(rows)
    if rotate:
        i = K                                          # the first pair, turned by `rotate` radians
        v = means[i] - centre
        u = torch.zeros(p, dtype=v.dtype)
        u[-1] = 1.0                                    # orthogonal to the ETF's span (zero row)
        means[i] = centre + math.cos(rotate) * v + math.sin(rotate) * v.norm() * u
    return means, sets


def test_tagwise_measure_is_zero_on_scaled_averages_and_finds_the_scale():
    means, sets = _tagwise_means(4, 1.7)
    tw = tagwise_average(means, sets, 4)
    assert tw.deviation.max() < 1e-12
    assert torch.allclose(tw.scale, torch.full_like(tw.scale, 1.7), atol=1e-12)


def test_tagwise_measure_gives_the_sine_of_a_rotated_set_mean():
    means, sets = _tagwise_means(4, 1.3, rotate=0.2)
    tw = tagwise_average(means, sets, 4)
    assert abs(float(tw.deviation.max()) - math.sin(0.2)) < 1e-12
    assert abs(float(tw.scale[0]) - 1.3 * math.cos(0.2)) < 1e-12


def test_set_means_refuses_empty_sets_and_nan():
    H = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="every label set needs samples"):
        set_means(H, torch.tensor([0, 0, 1, 1]), 3)
    H[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        set_means(H, torch.tensor([0, 1, 2, 2]), 3)


@pytest.mark.parametrize("K, ms, n, lam", [(4, (1, 2), 2, 1e-2), (5, (1, 2, 3), 1, 5e-3)])
def test_ufm_optimum_is_the_symmetric_multilabel_collapse(K, ms, n, lam):
    from meanfield.metrics import neural_collapse
    r = fit_multilabel_ufm(K, ms, n, MultiLabelUFMConfig(lW=lam, lH=lam, lb=lam, tol_grad=5e-8))
    red = symmetric_pal_ufm(K, ms, n, lam, lam)
    assert r.grad_norm < 1e-7, r.grad_norm                # L-BFGS stalls near 1e-8 in float64
    assert abs(r.value - red.value) <= 1e-9 * red.value
    tw = tagwise_average(set_means(r.H.T, r.set_index, len(r.sets)), r.sets, K)
    assert tw.deviation.max() < 1e-5
    for m, (c, spread, _) in tw.by_size().items():
        assert abs(c - red.scale[m]) < 1e-5 * red.scale[m], (m, c, red.scale[m])
        assert spread < 1e-5
    single = r.set_index < K
    nc = neural_collapse(r.H.T[single], r.set_index[single], classifier=r.W)
    assert nc.nc2_etf < 1e-5 and nc.nc2_etf_w < 1e-5 and nc.nc1 < 1e-10


def test_a_wrong_scale_fails_the_oracle():
    """The reduced problem's scale is sharp: the plain average (scale 1) is far from it."""
    red = symmetric_pal_ufm(4, (1, 2), 2, 1e-2, 1e-2)
    assert abs(red.scale[2] - 1.0) > 0.5


def test_experiment_small_agrees_and_draws(tmp_path):
    from meanfield.study.experiment import get_experiment
    res = run_experiment("multilabel", dict(get_experiment("multilabel").small), out=tmp_path / "run")
    s = res.summary
    for k in ("ufm_deviation", "ufm_nc2_etf", "ufm_nc2_etf_w"):
        assert s[f"{k}_agrees"] and s[f"{k}_theory"] == 0.0, (k, s[k])
    assert abs(s["ufm_scale_2"] - s["reduced_scale_2"]) < 1e-5
    assert math.isfinite(s["net_deviation"]) and "net_deviation_agrees" not in s
    assert (tmp_path / "run" / "multilabel.png").exists()


@pytest.mark.parametrize("key, value, match", [("num_labels", 2, "num_labels"),
                                               ("train.loss", "mse", "cross_entropy"),
                                               ("multiplicities", (1,), "multiplicities"),
                                               ("noise", float("nan"), "noise")])
def test_experiment_refuses_bad_config(key, value, match):
    with pytest.raises(ValueError, match=match):
        run_experiment("multilabel", {key: value, "train.epochs": 1}, write=False)
