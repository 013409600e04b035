"""Collapse metrics: closed forms (simplex ETF, orthogonal frame, hand-computed cases), invariances,
the wide-feature NC1 identity, the particle path, weights, output collapse, bad input, the figure."""

import math

import pytest
import torch

from meanfield import Particles
from meanfield.metrics import (NC_FIELDS, margin, neural_collapse, normalised_outputs,
                               output_collapse, output_spread, particle_neural_collapse,
                               particle_output_collapse)
from meanfield.theory.etf import (collapsed_metrics, orthogonal_frame, orthogonal_frame_nc3,
                                  random_rotation, simplex_etf, simplex_etf_gram_ortho)

from cases import collapsed_features, random_nc_problem

f64 = torch.float64


def _collapsed(M, reps=3):
    return collapsed_features(M, reps)


def _random_problem(n=40, p=6, C=4, seed=0):
    return random_nc_problem(n, p, C, seed)[:4]


def _close(r1, r2, rel=1e-10, abs_=1e-12):
    for k in NC_FIELDS:
        a, b = getattr(r1, k), getattr(r2, k)
        assert (a is None) == (b is None), k
        if a is not None:
            assert abs(a - b) <= rel * abs(b) + abs_, (k, a, b)


# ----------------------------------------------------------------------------- theory frames
@pytest.mark.parametrize("C", [2, 3, 7])
def test_simplex_etf_frame(C):
    for p in (C - 1, C, C + 4):
        M = simplex_etf(C, p, rotate=True, seed=2)
        assert M.shape == (p, C)
        J = torch.eye(C, dtype=f64) - 1.0 / C
        assert torch.allclose(M.T @ M, C / (C - 1) * J, atol=1e-13)
        assert torch.allclose(M.sum(1), torch.zeros(p, dtype=f64), atol=1e-13)
    E = orthogonal_frame(C, C + 2, rotate=True, seed=1)
    assert torch.allclose(E.T @ E, torch.eye(C, dtype=f64), atol=1e-13)
    with pytest.raises(ValueError, match="p >= C - 1"):
        simplex_etf(C, C - 2)
    with pytest.raises(ValueError, match="p >= C"):
        orthogonal_frame(C, C - 1)


# ----------------------------------------------------------------------------- collapsed frames
@pytest.mark.parametrize("C", [2, 3, 5, 10])
def test_simplex_etf_collapse_is_zero(C):
    M = simplex_etf(C, C + 3, rotate=True, seed=C)
    H, y = _collapsed(M)
    r = neural_collapse(H, y, classifier=M.T)
    exact = collapsed_metrics("simplex", C)
    for k in NC_FIELDS:
        if k.startswith("gram_ortho"):
            assert abs(getattr(r, k) - simplex_etf_gram_ortho(C)) < 1e-12
            assert getattr(r, k) > 0.1 / math.sqrt(C)
        else:
            assert getattr(r, k) < 1e-10, (k, getattr(r, k))
        assert abs(getattr(r, k) - exact[k]) < 1e-10


@pytest.mark.parametrize("C", [2, 3, 5, 10])
def test_orthogonal_frame_collapse(C):
    E = orthogonal_frame(C, C + 2, rotate=True, seed=C)
    H, y = _collapsed(E)
    r = neural_collapse(H, y, classifier=E.T)     # W = Hbar^T: the MSE-UFM orthogonal frame
    for k in ("nc1", "nc2_equinorm", "nc2_equinorm_w", "nc2_equiangular", "nc2_etf", "nc4",
              "gram_ortho_w", "gram_ortho_h"):
        assert getattr(r, k) < 1e-10, (k, getattr(r, k))
    assert r.nc2_etf_w > 0.1 / math.sqrt(C)
    assert abs(r.nc2_etf_w - simplex_etf_gram_ortho(C)) < 1e-12
    assert abs(r.nc3 - (2 - 2 * math.sqrt((C - 1) / C))) < 1e-12
    assert abs(r.nc3 - orthogonal_frame_nc3(C)) < 1e-15
    exact = collapsed_metrics("orthogonal", C)
    for k in NC_FIELDS:
        assert abs(getattr(r, k) - exact[k]) < 1e-10


def test_collapsed_float32():
    M = simplex_etf(4, 6, rotate=True, dtype=torch.float32)
    H, y = _collapsed(M)
    r = neural_collapse(H, y, classifier=M.T)
    assert all(getattr(r, k) < 1e-5 for k in NC_FIELDS if not k.startswith("gram"))


def test_small_perturbations_give_small_values():
    C = 4
    M = simplex_etf(C, 8, rotate=True, seed=1)
    H, y = _collapsed(M, reps=10)
    g = torch.Generator().manual_seed(0)
    N, D = torch.randn(H.shape, generator=g, dtype=f64), torch.randn(C, 8, generator=g, dtype=f64)
    vals = {}
    for eps in (1e-3, 1e-5):
        r = neural_collapse(H + eps * N, y, classifier=M.T + eps * D)
        vals[eps] = r
        for k in NC_FIELDS:
            if not k.startswith("gram"):
                assert getattr(r, k) < 30 * eps, (k, eps, getattr(r, k))
    # nc1 is quadratic in the within-class noise, nc2 linear: the ratios pin the orders
    assert 0.3e4 < vals[1e-3].nc1 / vals[1e-5].nc1 < 3e4
    assert 30 < vals[1e-3].nc2_etf / vals[1e-5].nc2_etf < 300


# ----------------------------------------------------------------------------- conventions
def test_nc1_divides_by_C_hand_computed():
    # 1-d features: class 0 at {-1.5, -0.5}, class 1 at {0.5, 1.5}; Sigma_W = 1/4, Sigma_B = 1
    H = torch.tensor([[-1.5], [-0.5], [0.5], [1.5]], dtype=f64)
    y = torch.tensor([0, 0, 1, 1])
    assert abs(neural_collapse(H, y).nc1 - 0.125) < 1e-14      # Tr(Sigma_W Sigma_B^+)/C, not 1/4


def test_std_ddof0_centring_and_raw_w_hand_computed():
    # centred means (2,0), (-1,1), (-1,-1): norms 2, sqrt2, sqrt2 -> std/mean = 3 - 2 sqrt2 (ddof 0)
    Mu = torch.tensor([[2.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=f64) + torch.tensor([5.0, -3.0], dtype=f64)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 2])          # unbalanced: mu_G = mean of class means
    W = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=f64)   # raw norms 3, 1, 1
    r = neural_collapse(Mu[y], y, classifier=W)
    assert abs(r.nc2_equinorm - (3 - 2 * math.sqrt(2))) < 1e-14
    assert abs(r.nc2_equinorm_w - 2 * math.sqrt(2) / 5) < 1e-14  # not centred (that gives 3-2sqrt2)
    assert abs(r.nc2_equiangular - (2 * math.sqrt(2) - 1) / 6) < 1e-14
    assert r.nc1 < 1e-25


def test_nc4_mass_fraction_and_binary_convention():
    C = 3
    M = simplex_etf(C)
    H, y = _collapsed(M, reps=2)
    w = torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 3.0], dtype=f64)
    Wswap = M.T[[1, 0, 2]]                        # classes 0 and 1 swapped by the classifier
    r = neural_collapse(H, y, classifier=Wswap, weights=w)
    assert abs(r.nc4 - (2 + 4) / 12) < 1e-14
    # binary single-row classifier: f = w.h, class 1 when f > 0 (logits (-f/2, f/2))
    H2 = torch.tensor([[-1.0, 0.2], [-1.0, -0.2], [1.0, 0.3], [1.0, -0.3]], dtype=f64)
    y2 = torch.tensor([0, 0, 1, 1])
    assert neural_collapse(H2, y2, classifier=torch.tensor([[1.0, 0.0]], dtype=f64)).nc4 == 0.0
    assert neural_collapse(H2, y2, classifier=torch.tensor([[-1.0, 0.0]], dtype=f64)).nc4 == 1.0
    r = neural_collapse(H2, y2, classifier=torch.tensor([[1.0, 0.0]], dtype=f64),
                        bias=torch.tensor([-5.0], dtype=f64))  # all predicted class 0
    assert r.nc4 == 0.5
    full = neural_collapse(H2, y2, classifier=torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=f64))
    _close(full, neural_collapse(H2, y2, classifier=torch.tensor([[1.0, 0.0]], dtype=f64)))
    assert neural_collapse(H2, y2).nc3 is None and neural_collapse(H2, y2).nc4 is None


# ----------------------------------------------------------------------------- invariances
def test_invariances():
    H, y, W, w = _random_problem(p=6)
    base = neural_collapse(H, y, classifier=W, weights=w)
    Q = random_rotation(6, seed=5)
    shift = torch.randn(6, dtype=f64)
    for Hs in (7.3 * H, H @ Q.T, H + shift):
        assert abs(neural_collapse(Hs, y, weights=w).nc1 - base.nc1) < 1e-10 * base.nc1
    _close(neural_collapse(H @ Q.T, y, classifier=W @ Q.T, weights=w), base)   # joint rotation
    _close(neural_collapse(2.5 * H, y, classifier=0.1 * W, weights=w), base)  # scale-free, no bias


# ----------------------------------------------------------------------------- wide NC1
def _direct_nc1(H, y, w, C):
    p = w / w.sum()
    P = torch.zeros(C, dtype=f64).index_add_(0, y, p)
    Mu = torch.zeros(C, H.shape[1], dtype=f64).index_add_(0, y, p[:, None] * H) / P[:, None]
    D = H - Mu[y]
    SW = (p[:, None] * D).T @ D
    Mt = Mu - Mu.mean(0)
    SB = Mt.T @ Mt / C
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # a small p x p eigensolve; threads only contend on a busy box
    try:
        return float(torch.trace(SW @ torch.linalg.pinv(SB, hermitian=True, rtol=1e-9)) / C)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("n,p,C", [(60, 5, 4), (30, 200, 5), (12, 40, 3)])
def test_wide_nc1_equals_direct_formula(n, p, C):
    H, y, _, w = _random_problem(n=n, p=p, C=C, seed=p)
    got = neural_collapse(H, y, weights=w).nc1
    ref = _direct_nc1(H, y, w, C)
    assert abs(got - ref) < 1e-10 * ref


def test_very_wide_features_match_their_span():
    # p = 20000 >> n: a p x p matrix would not fit; the span of the data is 10-dimensional
    H, y, W, w = _random_problem(n=30, p=10, C=3, seed=3)
    Q, _ = torch.linalg.qr(torch.randn(20000, 10, dtype=f64, generator=torch.Generator().manual_seed(0)))
    wide = neural_collapse(H @ Q.T, y, classifier=W @ Q.T, weights=w)
    _close(wide, neural_collapse(H, y, classifier=W, weights=w), rel=1e-9)
    assert abs(wide.nc1 - _direct_nc1(H, y, w, 3)) < 1e-9 * wide.nc1


# ----------------------------------------------------------------------------- weights
def test_weights_duplicate_equals_double_mass_and_scale_free():
    H, y, W, w = _random_problem(n=20, p=5, C=3, seed=7)
    base = neural_collapse(H, y, classifier=W, weights=w)
    _close(neural_collapse(H, y, classifier=W, weights=123.0 * w), base)
    w2 = w.clone()
    w2[4] *= 2
    dup = torch.cat([torch.arange(20), torch.tensor([4])])
    _close(neural_collapse(H[dup], y[dup], classifier=W, weights=torch.cat([w, w[4:5]])),
           neural_collapse(H, y, classifier=W, weights=w2))
    # uniform default = equal weights
    _close(neural_collapse(H, y, classifier=W), neural_collapse(H, y, classifier=W, weights=torch.ones(20)))


# ----------------------------------------------------------------------------- particles
@pytest.mark.parametrize("C,k", [(3, 3), (2, 1), (4, 4)])
def test_particle_path_equals_dense_path(C, k):
    P = Particles.gaussian(40, 3, k, seed=C, activation="relu")
    g = torch.Generator().manual_seed(C)
    X = torch.randn(30, 3, generator=g, dtype=f64)
    y = torch.arange(30) % C
    w = torch.rand(30, generator=g, dtype=f64) + 0.05
    bias = torch.randn(C, generator=g, dtype=f64) * 0.3
    a = P.a[0].T
    r = math.sqrt(P.m)
    feats = P.features(X)[0]
    for b in (None, bias if k == C else None):
        got = particle_neural_collapse(P, (X, y, w), bias=b, backend="dense")
        ref = neural_collapse(feats / r, y, classifier=a / r, bias=b, weights=w)
        _close(got, ref, rel=1e-8, abs_=1e-12)
    # without a bias the sqrt(m) scaling is immaterial: the plain feature matrix gives the same
    _close(particle_neural_collapse(P, (X, y, w)), neural_collapse(feats, y, classifier=a, weights=w),
           rel=1e-8, abs_=1e-12)


@pytest.mark.slow
def test_particle_path_keops_equals_dense():
    pytest.importorskip("pykeops")
    P = Particles.gaussian(300, 2, 3, seed=0)
    X = torch.randn(100, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(100) % 3
    _close(particle_neural_collapse(P, (X, y), backend="keops"),
           particle_neural_collapse(P, (X, y), backend="dense"), rel=1e-10, abs_=1e-13)


def test_particle_path_system_and_errors():
    P = Particles.gaussian(30, 2, 3, batch=2, seed=0, activation="tanh")
    X = torch.randn(24, 2, dtype=f64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(24) % 3
    got = particle_neural_collapse(P, (X, y), system=1)
    _close(got, neural_collapse(P.features(X)[1], y, classifier=P.a[1].T), rel=1e-8, abs_=1e-12)
    with pytest.raises(ValueError, match="system"):
        particle_neural_collapse(P, (X, y), system=2)
    with pytest.raises(ValueError, match="outputs"):
        particle_neural_collapse(P, (X, y % 2))


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    H, y, W, w = _random_problem(n=12, p=4, C=3)
    cases = [
        (dict(features=H, labels=torch.zeros(12, dtype=torch.long)), "single class"),
        (dict(features=H[:, :1], labels=y, strict=True), "exceeds the feature dimension"),
        (dict(features=torch.where(torch.arange(4) == 2, float("nan"), H), labels=y), "NaN"),
        (dict(features=H, labels=y[:-1]), "shape mismatch"),
        (dict(features=H[None], labels=y), r"\(n, p\)"),
        (dict(features=H, labels=y, classifier=W[:, :3]), "shape mismatch"),
        (dict(features=H, labels=y, classifier=W, bias=torch.zeros(2)), "shape mismatch"),
        (dict(features=H, labels=y, bias=torch.zeros(3)), "without a classifier"),
        (dict(features=H, labels=y + 1, num_classes=3), "out of range"),
        (dict(features=H, labels=y - 1), "out of range"),
        (dict(features=H, labels=y, num_classes=4), "class 3 has no samples"),
        (dict(features=H, labels=y, weights=-w), "negative"),
        (dict(features=H, labels=y, weights=w[:5]), "shape mismatch"),
        (dict(features=H, labels=y, weights=torch.where(y == 1, 0.0, w)), "class 1 has zero total mass"),
        (dict(features=H, labels=y, classifier=W.clone().fill_(float("inf"))), "NaN/inf"),
        (dict(features=torch.ones(12, 4, dtype=f64), labels=y), "degenerate"),
        (dict(features=H, labels=y, classifier=torch.zeros(3, 4, dtype=f64)), "classifier W is zero"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            neural_collapse(kw.pop("features"), kw.pop("labels"), **kw)


# ----------------------------------------------------------------------------- output collapse
def test_output_collapse_binary_hand_computed():
    f = torch.tensor([-3.0, -1.0, -2.0, 0.5, 4.0, 1.5], dtype=f64)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.equal(output_spread(f, y), torch.tensor([2.0, 3.5], dtype=f64))
    assert margin(f, y) == 0.5                     # xi = 2y - 1: class 0 is -1
    w = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=f64)   # zero mass: sample ignored
    assert margin(f, y, w) == 1.0
    r = output_collapse(f, y, weights=w, scale="margin")
    assert (r.spread, r.margin, r.scale, r.normalised_spread) == (2.5, 1.0, 1.0, 2.5)
    r = output_collapse(f, y, scale=2.0)
    assert r.normalised_spread == 1.75 and r.normalised_margin == 0.25 and r.spread_per_class == (2.0, 3.5)
    assert output_collapse(f, y).normalised_spread is None
    assert torch.equal(normalised_outputs(f, 2.0)[:, 0], f / 2)
    with pytest.raises(ValueError, match="not separated"):
        output_collapse(-f, y, scale="margin")
    with pytest.raises(ValueError, match="unknown scale"):
        output_collapse(f, y, scale="l3")


def test_output_collapse_multiclass():
    f = torch.tensor([[3.0, 0.0, 1.0], [2.0, 1.0, -1.0], [0.0, 2.0, 1.5], [1.0, 0.0, 4.0]], dtype=f64)
    y = torch.tensor([0, 0, 1, 2])
    assert margin(f, y) == 0.5                     # sample 2: 2 - 1.5
    assert torch.equal(output_spread(f, y), torch.tensor([2.0, 0.0, 0.0], dtype=f64))  # sup-norm diameter


def test_particle_output_collapse_uses_variation_norm():
    P = Particles.gaussian(25, 2, 1, seed=3)
    X = torch.randn(10, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 2
    f = P.predict(X)[0]
    for norm in ("l1", "l2"):
        r = particle_output_collapse(P, (X, y), norm=norm)
        s = float(P.variation_norm(norm)[0])
        assert abs(r.normalised_spread - float(output_spread(f, y).max()) / s) < 1e-14
        assert r.margin == margin(f, y)
    with pytest.raises(ValueError, match="unknown norm"):
        particle_output_collapse(P, (X, y), norm="l3")


# ----------------------------------------------------------------------------- figure
def test_plot_metrics_overlays_runs(tmp_path):
    from meanfield.plotting import plot_metrics
    rows = lambda s: [{"t": t, "nc1": s / (1 + t), "nc3": s * 0.5 / (1 + t) ** 2} for t in (0.0, 0.1, 1.0, 10.0)]
    fig = plot_metrics([rows(1.0), rows(2.0)], metrics=("nc1", "nc3"), labels=["a", "b"])
    axes = fig.axes
    assert len(axes) == 2 and all(a.get_xscale() == "log" and a.get_yscale() == "log" for a in axes)
    assert [len(a.lines) for a in axes] == [2, 2]
    assert len(axes[0].lines[0].get_xdata()) == 3           # t = 0 dropped on the log axis
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["a", "b"]
    fig.savefig(tmp_path / "m.png")
    with pytest.raises(ValueError, match="nc9"):
        plot_metrics(rows(1.0), metrics=("nc9",))
