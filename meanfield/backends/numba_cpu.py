"""Numba backend: fused, compiled, multi-threaded CPU kernels for the two reductions.

Both reductions are single fused passes over all (particle, sample) pairs that never materialise
an m x n matrix (memory O((m + n) d)):

.. math::

    f_{bj} = \\frac1m \\sum_i a_{bi}\\,\\sigma(z_{bij}),\\qquad z_{bij} = w_{bi}\\cdot x_{bj} + b_{bi}

    v^a_{bi} = -\\sum_j g_{bj}\\sigma(z_{bij}),\\quad
    v^w_{bi} = -\\sum_j (a_{bi}\\cdot g_{bj})\\sigma'(z_{bij})\\,x_{bj},\\quad
    v^b_{bi} = -\\sum_j (a_{bi}\\cdot g_{bj})\\sigma'(z_{bij})

Layout and parallelism (structure of arrays, ``prange`` over independent tiles, so no two threads
ever write the same element):

- ``outputs``: each task owns a tile of samples of one system and loops over all particles; the
  inner loop runs over the tile's samples (contiguous, vectorised), accumulating in a private
  (k, tile) buffer.
- ``velocities``: each task owns a tile of particles of one system and loops over all samples; the
  inner loop runs over the tile's particles, accumulating (v_a, v_w, v_b) in private buffers.

The inner dimension d and the number of outputs k are compile-time constants (the kernels are
specialised on them through the length of a dummy tuple), so the loops over d and k unroll and the
loop over the tile vectorises. One kernel pair is compiled per activation (the activation is a
closure constant, so the branch on it folds away), per dtype (float32 and float64 are separate
specialisations) and per (d, k); everything is cached on disk (``cache=True``, in numba's cache
folder, ``NUMBA_CACHE_DIR`` to move it). First-call compile cost: see :data:`COMPILE_NOTE`.

Conventions match :class:`meanfield.backends.dense.DenseBackend` and :mod:`meanfield.activations`
exactly: relu'(0) = 0, leaky relu slope 0.01 for z <= 0, smoothstep clamped to [0, 1], softplus
with torch's threshold (z for z > 20). Arithmetic uses ``fastmath`` contraction (FMA) and
no-signed-zero only: NaN and inf propagate (divergence detection relies on it).
In float32, tanh (and sigmoid = (1 + tanh(z/2))/2) is Eigen's rational approximation (max abs
error 3.4e-7, a few float32 ulps); float64 uses libm.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..activations import Activation, LEAKY_SLOPE
from .base import check_operands

__all__ = ["NumbaBackend", "ACTIVATION_CODES", "COMPILE_NOTE"]

#: Built-in activations the kernels know, with the integer code the kernels branch on.
ACTIVATION_CODES = {"relu": 0, "leaky_relu": 1, "smoothstep": 2, "tanh": 3, "sigmoid": 4,
                    "softplus": 5}

COMPILE_NOTE = ("first call per (activation, dtype, d, k): about 2-5 s to compile both kernels "
                "(4.6 s measured on a busy 2-core machine); later processes load them from "
                "numba's disk cache in about 0.15 s")

# fastmath: FMA contraction, reassociation of the sums (so they vectorise), no signed zeros; never
# nnan/ninf, so NaN and inf propagate (divergence detection relies on it)
_FASTMATH = {"contract", "nsz", "arcp", "reassoc"}

_KERNELS: dict = {}
_BLOCK = 2048
_DT = {torch.float32: np.float32, torch.float64: np.float64}  # particles (outputs) or samples (velocities) per cache block

try:  # this module is imported lazily (only when backend 'numba' is asked for)
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None


def _njit(**kw):
    return numba.njit(fastmath=_FASTMATH, cache=True, **kw) if numba is not None else (lambda f: f)


def _constants(dtype, m: int = 1) -> np.ndarray:
    """The constants of the kernels in the array dtype (no silent float64 promotion); last: 1/m."""
    return np.array([0.0, 1.0, 2.0, 3.0, 6.0, LEAKY_SLOPE, 20.0, 0.5, 1.0 / m], dtype=dtype)


# float32 tanh as Eigen's rational approximation (clamped to +-7.9053; max abs error 3.4e-7 against
# float64 tanh, measured): a polynomial ratio vectorises, libm's tanh is called element by element.
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
_TANH_CLAMP = 7.90531110763549805


def _tanh(z):  # pragma: no cover - replaced by the numba overload below
    return math.tanh(z)


if numba is not None:
    from numba.core import types as _nbtypes
    from numba.extending import overload as _overload

    @_overload(_tanh, inline="always", fastmath=_FASTMATH)
    def _tanh_ov(z):
        if isinstance(z, _nbtypes.Float) and z.bitwidth == 32:
            f = np.float32
            p0, p1, p2, p3, p4, p5, p6 = (f(c) for c in _TANH_P)
            q0, q1, q2, q3 = (f(c) for c in _TANH_Q)
            c = f(_TANH_CLAMP)

            def impl(z):
                x = min(max(z, -c), c)
                x2 = x * x
                p = x * (((((((p6 * x2 + p5) * x2 + p4) * x2 + p3) * x2 + p2) * x2 + p1) * x2) + p0)
                q = ((q3 * x2 + q2) * x2 + q1) * x2 + q0
                return p / q
            return impl

        def impl64(z):
            return np.tanh(z)
        return impl64


@_njit(inline="always")
def _act(code, z, cs):
    """sigma(z) for the activation of that code (``cs``: constants in the dtype of z)."""
    zero, one, two, three, six, slope, twenty, half = cs
    if code == 0:
        return max(z, zero)
    elif code == 1:
        return z if z > zero else slope * z
    elif code == 2:
        u = min(max(z, zero), one)
        return u * u * (three - two * u)
    elif code == 3:
        return _tanh(z)
    elif code == 4:
        return half + half * _tanh(half * z)
    else:
        return z if z > twenty else np.log1p(np.exp(z))


@_njit(inline="always")
def _dact(code, z, cs):
    """sigma'(z); relu'(0) = 0 as in :mod:`meanfield.activations`."""
    zero, one, two, three, six, slope, twenty, half = cs
    if code == 0:
        return one if z > zero else zero
    elif code == 1:
        return one if z > zero else slope
    elif code == 2:
        u = min(max(z, zero), one)
        return six * u * (one - u)
    elif code == 3:
        t = _tanh(z)
        return one - t * t
    else:  # sigmoid' = s (1 - s); softplus' = sigmoid; sigmoid(z) = (1 + tanh(z/2)) / 2
        s = half + half * _tanh(half * z)
        return s * (one - s) if code == 4 else s


def _build(code: int):
    """Kernels for one activation (``code`` is a closure constant, so its branch folds away).

    Each kernel is serial and releases the GIL; it processes the tasks ``t0 <= task < t1`` (a task
    is one tile of one system) and writes only the rows its tasks own, so the thread pool of
    :func:`_parallel` can run disjoint task ranges at once without races.
    """

    @_njit(nogil=True)
    def outputs_kernel(A, W, Bv, X, C, out, dk, kk, m, JT, t0, t1):
        # A (B,nbp,K,P), W (B,nbp,D,P), Bv (B,nbp,P): particles in zero-padded SoA blocks of P;
        # X (Bx,D,n) SoA; out (B,n,K) zeros on entry. Inner loops start at 0 on C-contiguous
        # blocks: no negative-index wraparound, so they vectorise.
        D = len(dk)
        K = len(kk)
        nbp, P = Bv.shape[1], Bv.shape[2]
        Bx, n = X.shape[0], X.shape[2]
        cs = (C[0], C[1], C[2], C[3], C[4], C[5], C[6], C[7])
        nb = (n + JT - 1) // JT
        S = np.empty(P, dtype=C.dtype)
        for task in range(t0, t1):
            bb = task // nb
            j0 = (task % nb) * JT
            j1 = min(n, j0 + JT)
            Xb = X[bb if Bx > 1 else 0]
            for blk in range(nbp):  # a block of particles stays in L1/L2 across the sample tile
                L = min(P, m - blk * P)
                Wp = W[bb, blk]
                Ap = A[bb, blk]
                Bp = Bv[bb, blk]
                for j in range(j0, j1):
                    if K == 1:
                        acc = cs[0]
                        for i in range(L):
                            z = Bp[i]
                            for c in range(D):
                                z += Wp[c, i] * Xb[c, j]
                            acc += Ap[0, i] * _act(code, z, cs)
                        out[bb, j, 0] += acc
                    else:
                        for i in range(L):
                            z = Bp[i]
                            for c in range(D):
                                z += Wp[c, i] * Xb[c, j]
                            S[i] = _act(code, z, cs)
                        for q in range(K):
                            acc = cs[0]
                            for i in range(L):
                                acc += Ap[q, i] * S[i]
                            out[bb, j, q] += acc
            for j in range(j0, j1):
                for q in range(K):
                    out[bb, j, q] *= C[8]

    @_njit(nogil=True)
    def velocities_kernel(A, W, Bv, X, G, C, va, vw, vb, dk, kk, n, IT, inner, t0, t1):
        # A (B,K,m), W (B,D,m) SoA; Bv (B,m); X (Bx,nbs,D,P), G (B,nbs,K,P): samples in
        # zero-padded SoA blocks of P; writes va (B,m,K), vw (B,m,D), vb (B,m); every task owns
        # the rows of its particles.
        D = len(dk)
        K = len(kk)
        m = Bv.shape[1]
        Bx, nbs, P = X.shape[0], X.shape[1], X.shape[3]
        cs = (C[0], C[1], C[2], C[3], C[4], C[5], C[6], C[7])
        nb = (m + IT - 1) // IT
        S = np.empty(P, dtype=C.dtype)
        T = np.empty(P, dtype=C.dtype)
        VA = np.empty((IT, K), dtype=C.dtype)
        VW = np.empty((IT, D), dtype=C.dtype)
        VB = np.empty(IT, dtype=C.dtype)
        for task in range(t0, t1):
            bb = task // nb
            i0 = (task % nb) * IT
            i1 = min(m, i0 + IT)
            Wb = W[bb]
            Ab = A[bb]
            Bb = Bv[bb]
            VA[:] = cs[0]
            VW[:] = cs[0]
            VB[:] = cs[0]
            for blk in range(nbs):  # a block of samples stays in L1 across the particle tile
                L = min(P, n - blk * P)
                Xs = X[bb if Bx > 1 else 0, blk]
                Gs = G[bb, blk]
                if inner and K == 1 and D <= 3:
                    # one fused pass with scalar accumulators (the common low-d case)
                    zero = cs[0]
                    for i in range(i0, i1):
                        r = i - i0
                        bi = Bb[i]
                        ai = Ab[0, i]
                        w0 = Wb[0, i]
                        w1 = Wb[1, i] if D > 1 else zero
                        w2 = Wb[2, i] if D > 2 else zero
                        sa = zero
                        sb = zero
                        s0 = zero
                        s1 = zero
                        s2 = zero
                        for j in range(L):
                            x0 = Xs[0, j]
                            z = bi + w0 * x0
                            if D > 1:
                                z += w1 * Xs[1, j]
                            if D > 2:
                                z += w2 * Xs[2, j]
                            gj = Gs[0, j]
                            sa += gj * _act(code, z, cs)
                            t = ai * gj * _dact(code, z, cs)
                            sb += t
                            s0 += t * x0
                            if D > 1:
                                s1 += t * Xs[1, j]
                            if D > 2:
                                s2 += t * Xs[2, j]
                        VA[r, 0] -= sa
                        VB[r] -= sb
                        VW[r, 0] -= s0
                        if D > 1:
                            VW[r, 1] -= s1
                        if D > 2:
                            VW[r, 2] -= s2
                    continue
                for i in range(i0, i1):
                    r = i - i0
                    # pass 1: activations (and derivative terms) of particle i on the block
                    for j in range(L):
                        z = Bb[i]
                        for c in range(D):
                            z += Wb[c, i] * Xs[c, j]
                        S[j] = _act(code, z, cs)
                        if inner:
                            ag = cs[0]
                            for q in range(K):
                                ag += Ab[q, i] * Gs[q, j]
                            T[j] = ag * _dact(code, z, cs)
                    # pass 2: the reductions over the block
                    for q in range(K):
                        acc = cs[0]
                        for j in range(L):
                            acc += S[j] * Gs[q, j]
                        VA[r, q] -= acc
                    if inner:
                        acc = cs[0]
                        for j in range(L):
                            acc += T[j]
                        VB[r] -= acc
                        for c in range(D):
                            acc = cs[0]
                            for j in range(L):
                                acc += T[j] * Xs[c, j]
                            VW[r, c] -= acc
            for i in range(i0, i1):
                for q in range(K):
                    va[bb, i, q] = VA[i - i0, q]
                if inner:
                    vb[bb, i] = VB[i - i0]
                    for c in range(D):
                        vw[bb, i, c] = VW[i - i0, c]

    return outputs_kernel, velocities_kernel


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


def _kernels(name: str):
    if name not in _KERNELS:
        _KERNELS[name] = _build(ACTIVATION_CODES[name])
    return _KERNELS[name]


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
    """A numpy view of a CPU tensor (copies only when not contiguous)."""
    return t.detach().contiguous().numpy()


class NumbaBackend:
    """Fused multi-threaded CPU kernels (numba), for the built-in activations.

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
        return (torch.device(device).type == "cpu" and act.builtin
                and act.name in ACTIVATION_CODES)

    def _check(self, act: Activation, *ts: Tensor) -> None:
        a = ts[0]
        if not self.supports(act, a.device):
            raise ValueError(f"backend 'numba' runs built-in activations on CPU tensors only (got "
                             f"activation {act.name!r} on {a.device.type}); use backend='dense'")
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
        ok, _ = _kernels(act.name)
        P = min(_BLOCK, m)
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
        va = torch.empty(B, m, k, dtype=a.dtype)
        vw = torch.empty(B, m, d, dtype=a.dtype) if inner else None
        vb = torch.empty(B, m, dtype=a.dtype) if inner else None
        an = _np(a)
        vwn = vw.numpy() if inner else np.empty((1, 1, 1), dtype=an.dtype)
        vbn = vb.numpy() if inner else np.empty((1, 1), dtype=an.dtype)
        tile, ntasks, T = self._plan(B, m, a.dtype)
        _, vk = _kernels(act.name)
        # a and w as SoA copies (B, k, m), (B, d, m); X, g, b are views
        P = min(_BLOCK, max(n, 1))
        # SoA copies, O((m + n) d): samples in blocks, X once even when Bx = 1
        _parallel(vk, ntasks, T, _np(a.transpose(1, 2)), _np(w.transpose(1, 2)), _np(b),
                  _blocks(X, P), _blocks(g, P), _constants(an.dtype), va.numpy(), vwn, vbn,
                  (0,) * d, (0,) * k, n, tile, bool(inner))
        return va, vw, vb
