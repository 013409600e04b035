"""Numba backend: fused, compiled, multi-threaded CPU kernels for the two reductions.

The kernels (:mod:`meanfield.backends.numba_kernels`) are built per activation from the scalar
code the activation carries (:attr:`meanfield.activations.Activation.numba`), so any activation
with numba code runs here, built-in or registered by a user; one kernel pair is compiled per
(activation, dtype, d, k). Built-ins are cached on disk (``cache=True``, in numba's cache
folder, ``NUMBA_CACHE_DIR`` to move it); first-call compile cost: see :data:`COMPILE_NOTE`.

Conventions match :class:`meanfield.backends.dense.DenseBackend` and :mod:`meanfield.activations`
exactly: relu'(0) = 0, leaky relu slope 0.01 for z <= 0, smoothstep clamped to [0, 1], softplus
with torch's threshold (z for z > 20) in float64. Arithmetic uses ``fastmath`` contraction (FMA),
reassociation and no-signed-zero only: NaN and inf propagate (divergence detection relies on it).
In float32, tanh, sigmoid and softplus are branch-free approximations that vectorise
(:mod:`meanfield.backends.numba_math`, error bounds on each activation); float64 uses libm.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..activations import Activation
from .base import check_operands
from .numba_math import numba

__all__ = ["NumbaBackend", "COMPILE_NOTE"]

COMPILE_NOTE = ("first call per (activation, dtype, d, k): about 2-5 s to compile both kernels "
                "(4.6 s measured on a busy 2-core machine); later processes load them from "
                "numba's disk cache in about 0.15 s")

_KERNELS: dict = {}
#: particles (outputs) or samples (velocities) per cache block. Not a multiple of 1024: a block
#: holds one row per input coordinate, and rows a multiple of 4 KB apart fall in the same cache
#: sets (at d = 10, 2048-float rows ran the outputs kernel 1.3-2.4x slower, varying from process
#: to process with the physical pages, than 2032-float rows)
_BLOCK = 2032


def _block_len(size: int, itemsize: int) -> int:
    """Items per block for ``size`` items: at most :data:`_BLOCK`, one cache line more when the
    rows would be a multiple of 4 KB apart (the blocks are zero-padded, so a longer block is only
    padding)."""
    P = max(1, min(_BLOCK, size))
    if (P * itemsize) % 4096 == 0:
        P += 64 // itemsize
    return P
_DT = {torch.float32: np.float32, torch.float64: np.float64}


def _constants(dtype, m: int = 1) -> np.ndarray:
    """The kernels' constants in the array dtype (no silent float64 promotion): 0, 1/m."""
    return np.array([0.0, 1.0 / m], dtype=dtype)


def _kernels(act: Activation, dtype: torch.dtype):
    """The (outputs, velocities) kernels of ``act`` in ``dtype``, compiled on first use.

    Keyed by the activation object itself (a user re-registering a name gets new kernels).
    Built-ins are cached on disk; user code is compiled once per process.
    """
    key = (act.name, id(act), dtype)
    if key not in _KERNELS:
        from .numba_kernels import build_kernels
        _KERNELS[key] = build_kernels(act, _DT[dtype])
    return _KERNELS[key]


_POOL = None


def _threads() -> int:
    env = os.environ.get("MEANFIELD_NUM_THREADS") or os.environ.get("NUMBA_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _parallel(kernel, ntasks: int, threads: int, *args) -> None:
    """Run ``kernel(*args, t0, t1)`` on ``threads`` contiguous task ranges at once (GIL released)."""
    global _POOL
    T = max(1, min(threads, ntasks))
    if T == 1:
        kernel(*args, 0, ntasks)
        return
    if _POOL is None or _POOL._max_workers < T - 1:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=T - 1, thread_name_prefix="meanfield-numba")
    cuts = [ntasks * r // T for r in range(T + 1)]
    futs = [_POOL.submit(kernel, *args, cuts[r], cuts[r + 1]) for r in range(1, T)]
    kernel(*args, cuts[0], cuts[1])
    for f in futs:
        f.result()


def _blocks(t: Tensor, P: int) -> np.ndarray:
    """(B, m, c) -> zero-padded SoA blocks (B, ceil(m/P), c, P); (B, m) -> (B, ceil(m/P), P)."""
    src = t.detach().numpy()
    flat = src.ndim == 2
    src = src[..., None] if flat else src
    B, m, c = src.shape
    nb = max(1, -(-m // P))
    out = np.empty((B, nb, c, P), dtype=src.dtype)
    full = m // P
    if full:
        out[:, :full] = src[:, :full * P].reshape(B, full, P, c).transpose(0, 1, 3, 2)
    if full < nb:
        out[:, full] = 0
        out[:, full, :, :m - full * P] = src[:, full * P:].transpose(0, 2, 1)
    return out[:, :, 0] if flat else out


def _np(t: Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (copies only when not contiguous).

    The copy is numpy's: the velocities kernel ran 1.5x slower (9.9 against 6.8 ms at m = 1e5,
    n = 1e3, d = 2) on a transposed copy made by torch's ``contiguous()`` than on numpy's.
    """
    return np.ascontiguousarray(t.detach().numpy())


class NumbaBackend:
    """Fused multi-threaded CPU kernels (numba), for activations that carry numba code.

    Args:
        tile: samples per task in ``outputs`` and particles per task in ``velocities`` (a task's
            private accumulators stay in the L1/L2 cache); ``None`` picks 512 (float32) or 256
            (float64), smaller when that would leave a thread idle.
        threads: worker threads (default: the CPUs this process may use, or
            ``MEANFIELD_NUM_THREADS`` / ``NUMBA_NUM_THREADS``).
    """

    name = "numba"
    #: the kernels run their own threads: the flow keeps torch's elementwise work single-threaded
    #: meanwhile (OpenMP threads spinning against numba's measured 6x slower batched steps)
    owns_threads = True

    def __init__(self, tile: Optional[int] = None, threads: Optional[int] = None):
        self.tile = tile
        self.threads = threads

    def available(self) -> bool:
        return numba is not None

    def supports(self, act: Activation, device: torch.device) -> bool:
        return torch.device(device).type == "cpu" and getattr(act, "numba", None) is not None

    def _check(self, act: Activation, *ts: Tensor) -> None:
        a = ts[0]
        if not self.supports(act, a.device):
            raise ValueError(f"backend 'numba' runs activations with numba code on CPU tensors "
                             f"only (got activation {act.name!r} on {a.device.type}); use "
                             "backend='dense' or register the activation with numba=...")
        if a.dtype not in (torch.float32, torch.float64) or any(t.dtype != a.dtype for t in ts):
            raise ValueError("backend 'numba' needs float32 or float64 operands of one dtype, got "
                             f"{sorted({str(t.dtype) for t in ts})}; cast them with .to(dtype)")
        if any(t.device.type != "cpu" for t in ts):
            raise ValueError("backend 'numba' needs every operand on the CPU; move them with .cpu()")

    def _plan(self, B: int, size: int, dtype: torch.dtype) -> tuple[int, int, int]:
        """(tile, number of tasks, threads) for B systems of ``size`` owned items each."""
        T = self.threads or _threads()
        t = self.tile or (512 if dtype == torch.float32 else 256)
        while self.tile is None and t > 16 and B * math.ceil(size / t) < 4 * T:
            t //= 2
        return t, B * math.ceil(size / t), T

    def outputs(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor) -> Tensor:
        """f ((B, n, k) Tensor) = (1/m) sum_i a_i sigma(w_i . x_j + b_i)."""
        check_operands(a, w, b, X)
        self._check(act, a, w, b, X)
        B, m, k = a.shape
        n, d = X.shape[1], X.shape[2]
        out = torch.zeros(B, n, k, dtype=a.dtype)
        if n == 0:
            return out
        tile, ntasks, T = self._plan(B, n, a.dtype)
        ok, _ = _kernels(act, a.dtype)
        P = _block_len(m, a.element_size())
        # SoA copies, O((m + n) d): particles in blocks, X (Bx, d, n) once even when Bx = 1
        _parallel(ok, ntasks, T, _blocks(a, P), _blocks(w, P), _blocks(b, P),
                  _np(X.transpose(1, 2)), _constants(_DT[a.dtype], m), out.numpy(), (0,) * d,
                  (0,) * k, m, tile)
        return out

    def velocities(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Tensor,
                   *, inner: bool = True) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Velocity field of the data term, see :mod:`meanfield.backends`."""
        check_operands(a, w, b, X, g)
        self._check(act, a, w, b, X, g)
        B, m, k = a.shape
        n, d = X.shape[1], X.shape[2]
        # outputs in numpy's memory: malloc reuses its heap from step to step, while torch's
        # allocator returned fresh pages whose first-touch faults landed in the kernel (median
        # velocities 8.6 against 6.7 ms at m = 1e5, n = 1e3, d = 2)
        np_dt = _DT[a.dtype]
        va = torch.from_numpy(np.empty((B, m, k), dtype=np_dt))
        vw = torch.from_numpy(np.empty((B, m, d), dtype=np_dt)) if inner else None
        vb = torch.from_numpy(np.empty((B, m), dtype=np_dt)) if inner else None
        an = _np(a)
        vwn = vw.numpy() if inner else np.empty((1, 1, 1), dtype=an.dtype)
        vbn = vb.numpy() if inner else np.empty((1, 1), dtype=an.dtype)
        tile, ntasks, T = self._plan(B, m, a.dtype)
        _, vk = _kernels(act, a.dtype)
        # a and w as SoA copies (B, k, m), (B, d, m); X, g, b are views
        P = _block_len(n, a.element_size())
        # SoA copies, O((m + n) d): samples in blocks, X once even when Bx = 1
        _parallel(vk, ntasks, T, _np(a.transpose(1, 2)), _np(w.transpose(1, 2)), _np(b),
                  _blocks(X, P), _blocks(g, P), _constants(an.dtype), va.numpy(), vwn, vbn,
                  (0,) * d, (0,) * k, n, tile, bool(inner))
        return va, vw, vb
