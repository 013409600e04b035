"""MNIST-1D (Greydanus & Kobak, arXiv:2011.14439) as a distribution, generated offline by ``mnist1d``.

The package's local generator ``mnist1d.data.make_dataset`` builds the data set from ten 1-D
digit templates (padding, shear, scale, translation, correlated and i.i.d. noise) and its
standard arguments (``get_dataset_args()``: 5000 signals of length 40, 80 % train / 20 % test,
seed 42), then centres and scales the whole set to mean 0 and standard deviation 1. Only that
generator runs here: never the package's ``get_dataset`` download path, which fetches a file and
unpickles it. The generator seeds Python's and numpy's *global* random states; they are restored
afterwards, so building the data set does not disturb the caller's random streams. Generated sets
are cached per ``(data_seed, num_samples)`` in the process.

The result is an :class:`~meanfield.data.real.ArrayData` (``X (n, 40)``, labels 0..9): with
``per_class=k`` ``sample(seed=s)`` draws a balanced subset of k signals per class chosen by ``s``;
without it, the whole split with equal masses (about 400 per class in train).
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np

from .real import ArrayData

__all__ = ["mnist1d", "generate"]

LENGTH = 40       # the package's final_seq_length
NUM_CLASSES = 10


@lru_cache(maxsize=4)
def _generate(data_seed: int, num_samples: int):
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.seed, args.num_samples = data_seed, num_samples
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = tuple(np.array(d[k]) for k in ("x", "y", "x_test", "y_test"))
    for a in out:
        a.setflags(write=False)
    return out


def generate(*, data_seed: int = 42, num_samples: int = 5000):
    """The raw generated arrays ``(x (N_train, 40), y, x_test (N_test, 40), y_test)`` (read-only).

    Raises:
        ValueError: data_seed not an integer in [0, 2**32), num_samples not an integer >= 20.
    """
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) \
            or not 0 <= data_seed < 2 ** 32:
        raise ValueError(f"data_seed must be an integer in [0, 2**32), got {data_seed!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 2 * NUM_CLASSES:
        raise ValueError(f"num_samples must be an integer >= {2 * NUM_CLASSES} (a train and a "
                         f"test sample of each of the {NUM_CLASSES} classes), got {num_samples!r}")
    return _generate(int(data_seed), int(num_samples))


def mnist1d(*, train: bool = True, per_class=None, data_seed: int = 42, num_samples: int = 5000,
            classes=None, standardise: str = "none") -> ArrayData:
    """MNIST-1D: 40-dimensional 1-D digit signals, 10 classes, generated offline.

    Args:
        train: the training split (80 % of ``num_samples``) or, False, the test split.
        per_class: signals per class drawn (balanced, by the sample seed); None: the whole split.
        data_seed: the generator's seed (42 is the package's standard data set).
        num_samples: signals generated before the split (5000 is the standard set).
        classes: keep only these classes, relabelled 0..k-1 in this order.
        standardise: ``none`` (the generator's own global standardisation of the whole set),
            ``global`` or ``feature`` (recomputed on each subsample).

    Raises:
        ValueError: bad data_seed / num_samples / per_class / classes / standardise.
    """
    if not isinstance(train, (bool, np.bool_)):
        raise ValueError(f"train must be True or False, got {train!r}")
    x, y, x_test, y_test = generate(data_seed=data_seed, num_samples=num_samples)
    X, Y = (x, y) if train else (x_test, y_test)
    return ArrayData(X.copy(), Y.copy(), per_class=per_class, classes=classes,
                     standardise=standardise, class_names=[str(c) for c in range(NUM_CLASSES)])
