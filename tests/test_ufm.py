"""UFM and extended UFM: optimised (float64, L-BFGS / plain GD) against the closed forms of
docs/science.md §3.5 (meanfield.theory.ufm).

Tolerances: optimal value 1e-7 relative, W Hbar and W W^T 1e-4 (absolute where the answer is 0).
Thresholds are ill-conditioned, so every case is checked to lie outside a band around them:
|K mu - 1| > 0.1 (MSE and CE, mu = sqrt(n lW lH)); for the extended UFM the two candidate values
(s = 0 and s = t^3) differ by more than 0.01.
"""

import math

import numpy as np
import pytest
import torch

from meanfield.deep.extended_ufm import ExtendedUFMConfig, fit_extended_ufm
from meanfield.deep.ufm import UFMConfig, fit_ufm
from meanfield.theory.ufm import ce_ufm, extended_ufm, mse_ufm

BAND = 0.1
VALUE_RTOL = 1e-7
MAT_TOL = 1e-4

# (K, n, lambda) with lW = lH = lambda; the last case of each list is past the threshold.
MSE_CASES = [(3, 2, 1e-2), (4, 3, 5e-3), (5, 2, 2e-2), (3, 4, 0.2)]
CE_CASES = [(3, 2, 1e-2, 0.0), (4, 3, 5e-3, 1e-2), (5, 2, 3e-2, 0.0), (3, 2, 2e-2, 1e-2),
            (3, 3, 0.3, 1e-2)]
EXT_CASES = [(3, 2, 1e-2), (4, 3, 5e-3), (5, 2, 2e-2), (3, 4, 0.1)]


def _mu(K, n, lam):
    return math.sqrt(n * lam * lam)


def _assert_matrix(got, want, what):
    got = got.numpy() if isinstance(got, torch.Tensor) else got
    err = np.abs(got - want).max()
    assert err < MAT_TOL, f"{what}: max abs error {err:.3g} (tolerance {MAT_TOL})"


@pytest.mark.parametrize("bias", ["none", "free"])
@pytest.mark.parametrize("K,n,lam", MSE_CASES)
def test_mse_ufm_matches_closed_form(K, n, lam, bias):
    assert abs(K * _mu(K, n, lam) - 1) > BAND, "case inside the threshold band"
    th = mse_ufm(K, n, lam, lam, bias=bias)
    r = fit_ufm(K, n, UFMConfig(loss="mse", bias=bias, lW=lam, lH=lam, seed=1))
    assert r.grad_norm < 1e-7
    assert abs(r.value - th.value) <= VALUE_RTOL * th.value
    _assert_matrix(r.W @ r.Hbar, th.WHbar, "W Hbar")
    _assert_matrix(r.W @ r.W.T, th.WWt, "W W^T")
    _assert_matrix(r.b, th.b if not th.collapsed_to_zero or bias == "none" else r.b.numpy(), "b")
    if bias == "free" and not th.collapsed_to_zero:
        _assert_matrix(r.b, np.full(K, 1.0 / K), "b = 1/K")
    # W = sqrt(n lH/lW) Hbar^T (here lW = lH)
    _assert_matrix(r.W, math.sqrt(n) * r.Hbar.T.numpy(), "W = sqrt(n lH/lW) Hbar^T")


def test_mse_no_bias_is_orthogonal_frame_not_simplex():
    K, n, lam = 4, 3, 5e-3
    r = fit_ufm(K, n, UFMConfig(loss="mse", bias="none", lW=lam, lH=lam))
    G = (r.W @ r.W.T).numpy()
    off = G[~np.eye(K, dtype=bool)]
    assert np.abs(off).max() < 1e-6 * G.diagonal().mean()  # orthogonal, not -1/(K-1) cosines


@pytest.mark.parametrize("K,n,lam,lb", CE_CASES)
def test_ce_ufm_matches_closed_form(K, n, lam, lb):
    assert abs(K * _mu(K, n, lam) - 1) > BAND, "case inside the threshold band"
    th = ce_ufm(K, n, lam, lam, lb)
    cfg = UFMConfig(loss="cross_entropy", bias="regularised" if lb > 0 else "free", lW=lam, lH=lam,
                    lb=lb, feature_dim=K, seed=2)
    r = fit_ufm(K, n, cfg)
    assert r.grad_norm < 1e-7
    assert abs(r.value - th.value) <= VALUE_RTOL * th.value
    _assert_matrix(r.W @ r.Hbar, th.WHbar, "W Hbar")
    _assert_matrix(r.W @ r.W.T, th.WWt, "W W^T")
    if lb > 0:
        _assert_matrix(r.b, np.zeros(K), "b = 0")
    else:  # the bias is free along 1 only: its centred part vanishes
        _assert_matrix(r.b - r.b.mean(), np.zeros(K), "centred b")


def test_ce_benign_landscape_plain_gd_every_start():
    """Plain GD, fixed step, from several random starts: no restarts, no selection."""
    K, n, lam = 4, 2, 5e-2
    assert abs(K * _mu(K, n, lam) - 1) > BAND
    th = ce_ufm(K, n, lam, lam, 1e-2)
    for seed in range(5):
        cfg = UFMConfig(loss="cross_entropy", bias="regularised", lW=lam, lH=lam, lb=1e-2,
                        method="gd", lr=2.0, tol_grad=1e-9, max_iter=5_000, seed=seed)
        r = fit_ufm(K, n, cfg)
        assert r.converged, f"seed {seed}: gradient norm {r.grad_norm:.3g} after {r.iterations} steps"
        assert abs(r.value - th.value) <= VALUE_RTOL * th.value, f"seed {seed}: {r.value} vs {th.value}"
        _assert_matrix(r.W @ r.W.T, th.WWt, f"seed {seed}: W W^T")


def _ext_band_ok(K, n, lam):
    th = extended_ufm(K, n, lam, lam, lam)
    return th.value_at_root is None or abs(th.value_at_root - th.value_at_zero) > 0.01


@pytest.mark.parametrize("K,n,lam", EXT_CASES)
def test_linear_extended_ufm_matches_closed_form(K, n, lam):
    assert _ext_band_ok(K, n, lam), "case inside the s = 0 / s = t^3 tie band"
    th = extended_ufm(K, n, lam, lam, lam)
    r = fit_extended_ufm(K, n, ExtendedUFMConfig(activation="linear", lW2=lam, lW1=lam, lH=lam))
    assert r.grad_norm < 1e-7
    assert abs(r.value - th.value) <= VALUE_RTOL * th.value
    _assert_matrix(r.WHbar, th.WHbar, "W2 W1 Hbar")
    t = th.t
    if th.s > 0:  # t is a root of t^4 - t + K tau
        assert abs(t ** 4 - t + K * th.tau) < 1e-12


@pytest.mark.parametrize("K,n,lam", [(3, 2, 1e-2), (5, 2, 2e-2)])
def test_relu_extended_ufm_value_and_orthogonal_hidden_means(K, n, lam):
    """The ReLU landscape has spurious minima (a class whose hidden response dies), unlike CE:
    the best of three L-BFGS starts is taken (stated selection); only unique quantities are
    asserted: the optimal value and the orthogonal frame of relu(W1 Hbar)."""
    th = extended_ufm(K, n, lam, lam, lam)
    runs = [fit_extended_ufm(K, n, ExtendedUFMConfig(activation="relu", lW2=lam, lW1=lam, lH=lam,
                                                     seed=s)) for s in range(3)]
    r = min(runs, key=lambda r: r.value)
    assert abs(r.value - th.value) <= VALUE_RTOL * th.value
    G = (r.hidden_means.T @ r.hidden_means).numpy()
    _assert_matrix(G / np.trace(G) * K, np.eye(K), "normalised Gram of relu(W1 Hbar)")
    _assert_matrix(r.WHbar, th.WHbar, "W2 relu(W1 Hbar)")


def test_closed_form_edge_values():
    assert mse_ufm(3, 4, 0.2, 0.2).value == 0.5  # K mu = 1.2 >= 1: W = H = 0
    assert ce_ufm(3, 3, 0.3, 0.3).value == pytest.approx(math.log(3))
    s = extended_ufm(3, 4, 0.1, 0.1, 0.1)
    assert s.s == 0.0 and s.value == 0.5
    # balance of the three penalties at the optimum
    e = extended_ufm(4, 3, 5e-3, 2e-3, 1e-2)
    assert 5e-3 * e.norm_W2_2 == pytest.approx(2e-3 * e.norm_W1_2)
    assert 2e-3 * e.norm_W1_2 == pytest.approx(3 * 1e-2 * e.norm_Hbar2)


@pytest.mark.parametrize("kwargs", [dict(loss="hinge"), dict(bias="both"), dict(method="newton"),
                                    dict(lW=-1.0), dict(bias="regularised", lb=0.0)])
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        UFMConfig(**kwargs)


def test_bad_theory_inputs_raise():
    with pytest.raises(ValueError):
        mse_ufm(1, 2, 1e-2, 1e-2)
    with pytest.raises(ValueError):
        mse_ufm(3, 2, 1e-2, 1e-2, bias="regularised")
    with pytest.raises(ValueError):
        ce_ufm(3, 2, 0.0, 1e-2)
