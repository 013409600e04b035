"""The measures added to neural_collapse (nc1_trace, nc1_cdnv, gnc2_*, unc3, nc5, ranks): closed
forms on a simplex ETF and an orthogonal frame, hand-computed small cases, rank-deficient regimes,
invariances, and the agreement of the in-memory, particle and streaming paths (float64)."""

import math

import pytest
import torch

from meanfield import Particles
from meanfield.metrics import (ALL_FIELDS, NEW_FIELDS, DegenerateMeansError, NCAccumulator,
                               neural_collapse, particle_neural_collapse, spectra,
                               streaming_neural_collapse)
from meanfield.theory.etf import orthogonal_frame, random_rotation, simplex_etf

from cases import collapsed_features, random_nc_problem

f64 = torch.float64


def _collapsed(M, reps=3):
    return collapsed_features(M, reps)


def _random_problem(n=40, p=6, C=4, seed=0):
    return random_nc_problem(n, p, C, seed)


def _close(r1, r2, rel=1e-10, abs_=1e-12, fields=ALL_FIELDS):
    for k in fields:
        a, b = getattr(r1, k), getattr(r2, k)
        assert (a is None) == (b is None), (k, a, b)
        if a is not None:
            assert abs(a - b) <= rel * abs(b) + abs_, (k, a, b)


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("C", [2, 3, 5, 10])
def test_simplex_etf_exact_values(C):
    M = simplex_etf(C, C + 3, rotate=True, seed=C)
    H, y = _collapsed(M)
    # OOD mean along class 0's direction: |cos| = 1 for class 0 and 1/(C-1) for the others
    r = neural_collapse(H, y, classifier=M.T, ood_features=0.7 * M.T[:1])
    assert r.nc1_trace < 1e-25 and r.nc1_cdnv < 1e-25
    assert abs(r.gnc2_log + 0.5 * math.log(2 * C / (C - 1))) < 1e-12
    assert abs(r.gnc2_riesz - math.sqrt((C - 1) / (2 * C))) < 1e-12
    assert abs(r.unc3) < 1e-12
    assert abs(r.nc5 - 2 / C) < 1e-12
    assert r.rank_means == C - 1 and abs(r.erank_means - (C - 1)) < 1e-10
    assert r.reasons == {}
    # OOD mean orthogonal to the span of the means: nc5 = 0 (p > C - 1 leaves room)
    Q = torch.linalg.qr(torch.cat([M, torch.randn(C + 3, 1, dtype=f64)], 1))[0][:, -1]
    assert neural_collapse(H, y, ood_features=Q[None]).nc5 < 1e-12
    s = spectra(H, y, classifier=M.T)
    assert torch.allclose(s.means, torch.full((C - 1,), math.sqrt(C / (C - 1)), dtype=f64), atol=1e-12)
    assert torch.allclose(s.classifier[:C - 1], s.means, atol=1e-12) and s.classifier[-1] < 1e-12


@pytest.mark.parametrize("C", [2, 3, 6])
def test_orthogonal_frame_exact_values(C):
    E = orthogonal_frame(C, C + 2, rotate=True, seed=C)
    H, y = _collapsed(E)
    r = neural_collapse(H, y, classifier=E.T)
    # centred, an orthogonal frame is a simplex ETF: same energies and ranks
    assert abs(r.gnc2_log + 0.5 * math.log(2 * C / (C - 1))) < 1e-12
    assert abs(r.gnc2_riesz - math.sqrt((C - 1) / (2 * C))) < 1e-12
    assert r.rank_means == C - 1 and abs(r.erank_means - (C - 1)) < 1e-10
    assert r.nc1_trace < 1e-25 and r.nc1_cdnv < 1e-25
    assert abs(r.unc3) < 1e-12        # cos(e_c, e_c - e_bar) = sqrt((C-1)/C) for every class
    assert r.nc5 is None and "ood_features" in r.reasons["nc5"]


def test_hand_computed_two_classes():
    # 1-d: class 0 at {-1.5, -0.5}, class 1 at {0.5, 1.5}: Tr Sigma_W = 1/4, Tr Sigma_B = 1,
    # V_c = 1/4, |mu_0 - mu_1|^2 = 4, u = -1, +1
    H = torch.tensor([[-1.5], [-0.5], [0.5], [1.5]], dtype=f64)
    y = torch.tensor([0, 0, 1, 1])
    r = neural_collapse(H, y, classifier=torch.tensor([[1.0]], dtype=f64))
    assert abs(r.nc1_trace - 0.25) < 1e-15
    assert abs(r.nc1_cdnv - 0.5 / 8) < 1e-15
    assert abs(r.gnc2_log + math.log(2)) < 1e-15 and abs(r.gnc2_riesz - 0.5) < 1e-15
    assert r.unc3 == 0.0 and r.rank_means == 1 and abs(r.erank_means - 1) < 1e-15


def test_hand_computed_unc3_and_nc5():
    # centred means (1, 0), (-1, 0); W rows at 0 and 60 degrees from them: cos 1 and 1/2
    H = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=f64)
    y = torch.tensor([0, 1])
    W = torch.tensor([[2.0, 0.0], [-0.5, 0.5 * math.sqrt(3)]], dtype=f64)
    r = neural_collapse(H, y, classifier=W, ood_features=torch.tensor([[1.0, 1.0], [1.0, 3.0]], dtype=f64))
    assert abs(r.unc3 - 0.25 / 0.75) < 1e-15       # population std 1/4 over mean 3/4
    assert abs(r.nc5 - 1 / math.sqrt(5)) < 1e-15    # mu_OOD - mu_G = (1, 2)


def test_rank_one_means_hand_computed():
    # C = 3 in 1-d: means -3, -1, 4 (mu_G = 0), Sigma_B of rank 1 < C - 1
    H = torch.tensor([[-4.0], [-2.0], [-1.0], [-1.0], [3.0], [5.0]], dtype=f64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    W = torch.tensor([[-1.0], [-1.0], [1.0]], dtype=f64)
    r = neural_collapse(H, y, classifier=W)
    assert r.nc1 is None and "C - 1 = 2 exceeds" in r.reasons["nc1"]
    assert abs(r.nc1_trace - 1 / 13) < 1e-15                       # (2/3) / (26/3)
    assert abs(r.nc1_cdnv - (1 / 8 + 1 / 49 + 1 / 50) / 3) < 1e-15  # V = (1, 0, 1)
    assert abs(r.nc2_equinorm - math.sqrt(14) / 8) < 1e-15          # norms 3, 1, 4
    assert abs(r.nc2_equiangular - 5 / 6) < 1e-15                   # cos = +1, -1, -1
    assert r.gnc2_log is None and "same mean direction" in r.reasons["gnc2_log"]
    assert r.rank_means == 1 and abs(r.erank_means - 1) < 1e-15
    # W h ties classes 0 and 1 (argmax: 0) while class 1's samples are nearest mu_1: nc4 = 2/6
    assert abs(r.nc4 - 1 / 3) < 1e-15 and r.nc3 is not None and r.unc3 == 0.0
    with pytest.raises(ValueError, match="exceeds the feature dimension"):
        neural_collapse(H, y, strict=True)
    # the same rank-1 means embedded in p = 3: DegenerateMeansError with strict=True
    H3 = torch.cat([H, torch.zeros(6, 2, dtype=f64)], 1)
    with pytest.raises(DegenerateMeansError, match="degenerate"):
        neural_collapse(H3, y, strict=True)
    _close(neural_collapse(H3, y, classifier=torch.cat([W, torch.zeros(3, 2, dtype=f64)], 1)), r,
           rel=1e-14, abs_=1e-15)


def test_four_classes_in_the_plane():
    # K = 4, p = 2: means at the unit axes (a square), two samples mu_c +- 0.1 e_1 per class
    Mu = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=f64)
    y = torch.arange(4).repeat_interleave(2)
    H = Mu[y] + 0.1 * torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=f64).repeat(4, 1)
    r = neural_collapse(H, y, classifier=Mu)
    assert r.nc1 is None and "exceeds the feature dimension p = 2" in r.reasons["nc1"]
    assert abs(r.nc1_trace - 0.01) < 1e-15
    assert abs(r.nc1_cdnv - 0.025 / 6) < 1e-15      # 4 adjacent pairs 0.02/4, 2 opposite 0.02/8
    assert abs(r.gnc2_log + 2 / 3 * math.log(2)) < 1e-15
    assert abs(r.gnc2_riesz - (2 * math.sqrt(2) + 1) / 6) < 1e-15
    assert r.gnc2_log > -0.5 * math.log(8 / 3)       # above the simplex minimum (needs p >= 3)
    assert r.rank_means == 2 and abs(r.erank_means - 2) < 1e-14
    assert r.nc3 < 1e-30 and r.unc3 == 0.0 and r.nc4 == 0.0 and r.nc2_equinorm < 1e-15
    assert set(r.reasons) == {"nc1", "nc5"}
    assert all(getattr(r, k) is not None for k in ALL_FIELDS if k not in ("nc1", "nc5"))


def test_dead_features_default_raises_and_strict_false_returns():
    H = torch.ones(12, 4, dtype=f64)
    y = torch.arange(12) % 3
    with pytest.raises(DegenerateMeansError):
        neural_collapse(H, y)                        # what the training loop's NaN logging relies on
    r = neural_collapse(H, y, classifier=torch.zeros(3, 4, dtype=f64), strict=False)
    assert r.nc1 is None and r.nc1_trace is None and r.rank_means == 0 and r.gram_ortho_h is not None
    assert "coincide" in r.reasons["nc1_trace"] and "classifier W is zero" in r.reasons["nc3"]
    with pytest.raises(ValueError, match="strict"):
        neural_collapse(H, y, strict="yes")


# ----------------------------------------------------------------------------- invariances
def test_invariances_of_new_measures():
    H, y, W, w, O = _random_problem(p=6)
    base = neural_collapse(H, y, classifier=W, weights=w, ood_features=O)
    Q = random_rotation(6, seed=5)
    shift = torch.randn(6, dtype=f64, generator=torch.Generator().manual_seed(3))
    _close(neural_collapse(H @ Q.T, y, classifier=W @ Q.T, weights=w, ood_features=O @ Q.T), base)
    _close(neural_collapse(3.7 * H, y, classifier=0.2 * W, weights=w, ood_features=3.7 * O), base)
    new = [k for k in NEW_FIELDS if k != "nc5"] + ["nc5"]
    _close(neural_collapse(H + shift, y, classifier=W, weights=w, ood_features=O + shift), base,
           rel=1e-9, fields=[k for k in new if k != "unc3"])
    perm = torch.tensor([2, 0, 3, 1])                 # class c becomes perm[c]
    inv = torch.argsort(perm)
    _close(neural_collapse(H, perm[y], classifier=W[inv], weights=w, ood_features=O), base)


# ----------------------------------------------------------------------------- three paths
def _batches(H, y, w, sizes):
    def gen():
        i = 0
        for s in sizes:
            yield H[i:i + s], y[i:i + s], w[i:i + s]
            i += s
        assert i == H.shape[0]
    return gen


def test_streaming_equals_in_memory():
    H, y, W, w, O = _random_problem(n=53, p=9, C=5, seed=2)
    b = torch.randn(5, dtype=f64, generator=torch.Generator().manual_seed(1))
    ref = neural_collapse(H, y, classifier=W, bias=b, weights=w, ood_features=O)
    got = streaming_neural_collapse(_batches(H, y, w, [7, 20, 1, 25]), 5, classifier=W, bias=b,
                                    ood_batches=lambda: [O[:3], O[3:]])
    _close(got, ref, rel=1e-10, abs_=1e-13)
    # memory: the state does not grow with the number of samples
    sizes = []
    for n in (50, 500):
        Hn, yn, _, wn, _ = _random_problem(n=n, p=9, C=5, seed=3)
        acc = NCAccumulator(5, classifier=W)
        for h, yy, ww in _batches(Hn, yn, wn, [n // 2, n - n // 2])():
            acc.update(h, yy, ww)
        acc.next_pass()
        for h, yy, ww in _batches(Hn, yn, wn, [n // 2, n - n // 2])():
            acc.update(h, yy, ww)
        _close(acc.result(), neural_collapse(Hn, yn, classifier=W, weights=wn))
        sizes.append(acc.state_numel)
    assert sizes[0] == sizes[1]


def test_streaming_rank_deficient_and_misuse():
    H, y, W, w, _ = _random_problem(n=24, p=2, C=4, seed=4)      # C - 1 > p
    gen = _batches(H, y, w, [10, 14])
    _close(streaming_neural_collapse(gen, 4, classifier=W), neural_collapse(H, y, classifier=W, weights=w))
    acc = NCAccumulator(4)
    with pytest.raises(ValueError, match="pass 2"):
        acc.update(H, y).next_pass().result()
    with pytest.raises(ValueError, match="pass 1"):
        acc.update_ood(H)
    acc.update(H[:5], y[:5])
    with pytest.raises(ValueError, match="same samples"):
        acc.result()
    with pytest.raises(ValueError, match="exceeds"):
        streaming_neural_collapse(gen, 4, strict=True)


@pytest.mark.parametrize("C,k", [(3, 3), (2, 1)])
def test_particle_in_memory_streaming_agree(C, k):
    P = Particles.gaussian(40, 3, k, seed=C, activation="relu")
    g = torch.Generator().manual_seed(C)
    X = torch.randn(30, 3, generator=g, dtype=f64)
    Xo = torch.randn(9, 3, generator=g, dtype=f64) + 0.5
    y = torch.arange(30) % C
    w = torch.rand(30, generator=g, dtype=f64) + 0.05
    r = math.sqrt(P.m)
    F, Fo, A = P.features(X)[0] / r, P.features(Xo)[0] / r, P.a[0].T / r
    part = particle_neural_collapse(P, (X, y, w), backend="dense", ood_samples=Xo)
    mem = neural_collapse(F, y, classifier=A, weights=w, ood_features=Fo)
    stream = streaming_neural_collapse(_batches(F, y, w, [11, 19]), C, classifier=A,
                                       ood_batches=lambda: [Fo])
    _close(part, mem, rel=1e-10, abs_=1e-12)
    _close(stream, mem, rel=1e-10, abs_=1e-12)
    assert all(getattr(mem, f) is not None for f in ALL_FIELDS)


def test_particle_path_narrow_network():
    # m = 2 neurons, C = 4 classes: C - 1 > m; nc1 None with a reason, the rest measured
    P = Particles.gaussian(2, 2, 4, seed=1, activation="relu")
    X = torch.randn(40, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 4
    got = particle_neural_collapse(P, (X, y), backend="dense")
    assert got.nc1 is None and "neurons" in got.reasons["nc1"]
    _close(got, neural_collapse(P.features(X)[0] / math.sqrt(2), y, classifier=P.a[0].T / math.sqrt(2)),
           rel=1e-10, abs_=1e-12, fields=[f for f in ALL_FIELDS if f != "nc5"])
