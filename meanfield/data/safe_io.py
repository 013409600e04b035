"""Bounded reads and safe unpickling of untrusted data files (used by :mod:`meanfield.data.real`).

- :func:`read_bytes` reads a (possibly gzip) file but never more than a limit of decompressed
  bytes; :func:`read_exact` / :func:`at_end` read exactly what a header states and check nothing
  follows, so a small gzip that inflates to gigabytes costs only what its header announces.
- :func:`safe_unpickle` is a restricted unpickler: it rebuilds numpy arrays (protocols 2-5, numpy
  1 and 2 module names), plain dtypes, lists, dicts, tuples, sets, strings, bytes and numbers.
  Any other global -- the way a crafted pickle runs code (``os.system``, ``builtins.exec``,
  ``builtins.open`` ...) -- raises a ValueError naming the file and the global; nothing runs.
"""

from __future__ import annotations

import builtins
import gzip
import io
import pickle
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["MAX_BYTES", "open_data", "read_exact", "at_end", "read_bytes", "safe_unpickle"]

MAX_BYTES = 2 ** 31  #: the most (decompressed) bytes any reader here accepts from one file


def open_data(path: Path):
    """Open a file for binary reading, through gzip when its name ends in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return (gzip.open if path.suffix == ".gz" else open)(path, "rb")


def read_exact(f, n: int, path: Path, what: str) -> bytes:
    """Exactly n bytes from an open (possibly gzip) file, or a ValueError naming the file."""
    try:
        raw = f.read(n)
    except (OSError, EOFError, zlib.error) as e:  # a cut or corrupt gzip stream
        raise ValueError(f"{path}: cannot read {what} (truncated or corrupt gzip file?): {e}") from None
    if len(raw) != n:
        raise ValueError(f"{path}: truncated: {what} needs {n} bytes, the file holds {len(raw)}")
    return raw


def at_end(f, path: Path, what: str) -> None:
    """Raise unless the (decompressed) file has no byte left after what was read."""
    try:
        extra = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: truncated or corrupt gzip file after {what}: {e}") from None
    if extra:
        raise ValueError(f"{path}: has trailing bytes after {what} (more data than its header states)")


def read_bytes(path: Path, limit: Optional[int] = None) -> bytes:
    """The whole (decompressed) file, refusing more than ``limit`` bytes (default MAX_BYTES)."""
    limit = MAX_BYTES if limit is None else int(limit)
    with open_data(path) as f:
        try:
            raw = f.read(limit + 1)
        except (OSError, EOFError, zlib.error) as e:  # a cut gzip stream
            raise ValueError(f"{path}: cannot read (truncated or corrupt gzip file?): {e}") from None
    if len(raw) > limit:
        raise ValueError(f"{path}: larger than {limit} bytes (decompressed); not a data file this "
                         "reader accepts")
    return raw


# --------------------------------------------------------------------------- safe unpickling
def _np_attr(name: str):
    core = getattr(np, "_core", None) or np.core  # numpy >= 2 / numpy 1
    return getattr(core.numeric if name == "_frombuffer" else core.multiarray, name)


def _plain_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"forbidden global: numpy.dtype({args[0]!r}) holds Python objects")
    return dt


def _scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("forbidden global: numpy scalar of an object dtype")
    return _np_attr("scalar")(dtype, *args)


def _latin1(s, encoding="latin1"):  # how protocol-2 pickles of Python 3 store bytes
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"forbidden global: _codecs.encode(..., {encoding!r})")
    return s.encode("latin1")


def _safe_globals() -> dict:
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _plain_dtype,
               ("_codecs", "encode"): _latin1}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _np_attr("_reconstruct")
        allowed[(mod, "scalar")] = _scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _np_attr("_frombuffer")
    for mod in ("builtins", "__builtin__"):
        allowed.update({(mod, n): getattr(builtins, n) for n in ("set", "frozenset", "bytearray")})
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays/dtypes and plain containers only; any other global is refused."""

    def find_class(self, module, name):
        try:
            return _safe_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def safe_unpickle(raw: bytes, path) -> object:
    """Unpickle ``raw`` (read from ``path``) without running code from it.

    Python 2 strings are kept as bytes (``encoding='bytes'``, as in the CIFAR files).

    Raises:
        ValueError: a forbidden global (named, with the file) or a corrupt/truncated pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("forbidden global"):
            raise ValueError(f"{path}: refused to unpickle: {e} (only numpy arrays, lists, dicts, "
                             "strings, bytes and numbers are allowed; the file may be crafted to run "
                             "code)") from None
        raise ValueError(f"{path}: not a CIFAR-10 python batch (truncated or corrupt pickle: "
                         f"{type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ValueError(f"{path}: not a CIFAR-10 python batch (truncated or corrupt pickle: "
                         f"{type(e).__name__}: {e})") from None
