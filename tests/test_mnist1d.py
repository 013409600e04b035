"""MNIST-1D as a registered distribution (meanfield.data.mnist1d).

Oracle: the package's own local generator ``mnist1d.data.make_dataset`` with the same arguments
(an independent call). A small generated set (``num_samples=500``) keeps the tests fast; the
standard set (5000) is the default of the distribution.
"""

import random

import numpy as np
import pytest
import torch

from meanfield.data import get_distribution
from meanfield.data.mnist1d import generate, mnist1d

SMALL = {"num_samples": 500}


def test_matches_the_package_generator_and_splits():
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = 500
    ref = make_dataset(args)
    train = mnist1d(**SMALL).sample()
    test = mnist1d(train=False, **SMALL).sample()
    assert train.X.shape == (400, 40) and test.X.shape == (100, 40)
    np.testing.assert_array_equal(train.X.numpy(), ref["x"])
    np.testing.assert_array_equal(train.y.numpy(), ref["y"])
    np.testing.assert_array_equal(test.X.numpy(), ref["x_test"])
    assert train.num_classes == 10 and train.class_names == tuple("0123456789")
    assert torch.allclose(train.p.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_registered_balanced_and_seeded():
    d = get_distribution("mnist1d", per_class=3, **SMALL)
    a, b, c = d.sample(seed=0), d.sample(seed=0), d.sample(seed=1)
    assert a.X.shape == (30, 40) and torch.bincount(a.y).tolist() == [3] * 10
    assert torch.equal(a.X, b.X) and not torch.equal(a.X, c.X)
    other = get_distribution("mnist1d", per_class=3, data_seed=7, **SMALL).sample(seed=0)
    assert not torch.equal(a.X, other.X)
    two = mnist1d(per_class=4, classes=(3, 8), **SMALL).sample()
    assert two.num_classes == 2 and two.X.shape == (8, 40)


def test_global_random_state_untouched_and_no_download(monkeypatch):
    import mnist1d.data as pkg

    def refuse(*a, **k):
        raise AssertionError("the download path must never run")
    monkeypatch.setattr(pkg, "get_dataset", refuse)
    monkeypatch.setattr(pkg, "from_pickle", refuse)
    np.random.seed(123)
    random.seed(123)
    generate(data_seed=11, num_samples=100)      # not cached yet: the generator runs
    after = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    assert after == (np.random.rand(), random.random())


@pytest.mark.parametrize("kw, match", [
    ({"per_class": 0}, "n"),
    ({"per_class": 10_000}, "per_class"),
    ({"data_seed": -1}, "data_seed"),
    ({"num_samples": 5}, "num_samples"),
    ({"train": "yes"}, "train"),
    ({"standardise": "zscore"}, "standardisation"),
    ({"classes": (3, 11)}, "classes"),
])
def test_bad_input_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        mnist1d(**{**SMALL, **kw}).sample()
