"""The machine's limits for one mean-field step, measured in the same run as the backends.

- :func:`fused_limit`: the simplest fused relu kernel of both reductions (k = 1, d = 2, structure
  of arrays, float32; outputs in sample tiles over particle cache blocks, four samples per pass;
  velocities two particles per pass over all samples, with relu's homogeneity saving one of the
  four sums), pairs/s at small d. Nothing real can run a relu step faster on this CPU with this
  compiler: it is the bar for ``numba``.
  For an activation that is not relu-like (tanh, sigmoid, softplus, ...) the same fused kernels
  with its float32 numba code inlined (``act=``): the bar set by its own arithmetic.
- :func:`gemm_limit`: torch.mm GFLOP/s on the step's matrix shapes (large d, where a step is two
  matrix products of ~2 m n d flops each); the bar for ``dense``.

Used by :mod:`meanfield.bench` (CSV rows ``limit_fused`` and ``limit_gemm``).
"""

from __future__ import annotations

import time

import numpy as np

from .numba_math import FASTMATH, numba

__all__ = ["fused_limit", "gemm_limit"]

_B = 2048  # items per cache block


def _jit(f):
    return numba.njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)(f)


if numba is not None:
    prange = numba.prange

    @_jit
    def _outputs(w0, w1, b, a, x0, x1, out, JT):
        # d = 2, k = 1, SoA: f_j = sum_i a_i relu(w_i . x_j + b_i); out (n,). Four samples per
        # pass over a block of particles: each particle's (a, w, b) is loaded once for four
        # outputs (one sample per pass is bound by those loads: 1.6x slower)
        m, n = b.shape[0], x0.shape[0]
        zero = np.float32(0)
        for t in prange((n + JT - 1) // JT):
            j0 = t * JT
            j1 = min(n, j0 + JT)
            jb = j1 - (j1 - j0) % 4
            for i0 in range(0, m, _B):
                i1 = min(m, i0 + _B)
                for j in range(j0, jb, 4):
                    xa0, xa1, xa2, xa3 = x0[j], x0[j + 1], x0[j + 2], x0[j + 3]
                    xb0, xb1, xb2, xb3 = x1[j], x1[j + 1], x1[j + 2], x1[j + 3]
                    c0 = zero
                    c1 = zero
                    c2 = zero
                    c3 = zero
                    for i in range(i0, i1):
                        ai, bi, wa, wb = a[i], b[i], w0[i], w1[i]
                        c0 += ai * max(bi + wa * xa0 + wb * xb0, zero)
                        c1 += ai * max(bi + wa * xa1 + wb * xb1, zero)
                        c2 += ai * max(bi + wa * xa2 + wb * xb2, zero)
                        c3 += ai * max(bi + wa * xa3 + wb * xb3, zero)
                    out[j] += c0
                    out[j + 1] += c1
                    out[j + 2] += c2
                    out[j + 3] += c3
                for j in range(jb, j1):
                    xa = x0[j]
                    xb = x1[j]
                    acc = zero
                    for i in range(i0, i1):
                        acc += a[i] * max(b[i] + w0[i] * xa + w1[i] * xb, zero)
                    out[j] += acc

    @_jit
    def _velocities(w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb):
        # (v_w, v_b) = -a_i sum_j u_ij (x_j, 1) with u_ij = g_j 1[z_ij > 0], and, since relu is
        # 1-homogeneous (relu(z) = z 1[z > 0]), v_a = -sum_j u_ij z_ij = -(b_i sb + w_i . s): no
        # fourth sum. Two particles per pass over the samples (each sample loaded once for
        # both); an odd last particle is done alone. Inner loops start at index 0: a loop from a
        # variable index keeps numba's negative-index check and ran 3x slower
        m, n = b.shape[0], x0.shape[0]
        zero = np.float32(0)
        for q in prange((m + 1) // 2):   # numba splits the range into one static chunk per thread
            i = 2 * q
            k = min(i + 1, m - 1)        # the odd last particle: its pair is itself
            p0, u0, v0 = b[i], w0[i], w1[i]
            p1, u1, v1 = b[k], w0[k], w1[k]
            sb0 = zero
            s00 = zero
            s10 = zero
            sb1 = zero
            s01 = zero
            s11 = zero
            for j in range(n):
                xa = x0[j]
                xb = x1[j]
                gj = g[j]
                t0 = gj if p0 + u0 * xa + v0 * xb > zero else zero
                t1 = gj if p1 + u1 * xa + v1 * xb > zero else zero
                sb0 += t0
                s00 += t0 * xa
                s10 += t0 * xb
                sb1 += t1
                s01 += t1 * xa
                s11 += t1 * xb
            va[i] = -(p0 * sb0 + u0 * s00 + v0 * s10)
            vb[i] = -a[i] * sb0
            vw0[i] = -a[i] * s00
            vw1[i] = -a[i] * s10
            va[k] = -(p1 * sb1 + u1 * s01 + v1 * s11)
            vb[k] = -a[k] * sb1
            vw0[k] = -a[k] * s01
            vw1[k] = -a[k] * s11


_GENERIC: dict = {}


def _blocked(W, b, a):
    """(W (d, m), b, a) -> zero-padded particle blocks (nb, d, P), (nb, P), (nb, P)."""
    from .numba_cpu import _block_len
    d, m = W.shape
    P = _block_len(min(m, _B), W.itemsize)
    nb = -(-m // P)
    W3 = np.zeros((nb, d, P), W.dtype)
    B3, A3 = np.zeros((nb, P), W.dtype), np.zeros((nb, P), W.dtype)
    for k in range(nb):
        i0, i1 = k * P, min(m, (k + 1) * P)
        W3[k, :, :i1 - i0], B3[k, :i1 - i0], A3[k, :i1 - i0] = W[:, i0:i1], b[i0:i1], a[i0:i1]
    return W3, B3, A3


def _generic(d: int):
    """(outputs, velocities) relu kernels for d > 2 (d a compile-time constant of the closure):
    W (d, m) and X (d, n) in structure of arrays; outputs one sample per pass over a particle
    block (the particles copied into zero-padded blocks, :func:`_blocked`); velocities in two passes per particle (t_j = g_j 1[z_ij > 0] stored for the block,
    then the d + 1 sums of t, relu's v_a from homogeneity)."""
    if d in _GENERIC:
        return _GENERIC[d]
    D = d

    @_jit
    def outputs(W3, B3, A3, X, out, JT):
        # particles in zero-padded blocks W3 (nb, D, P), B3 and A3 (nb, P) (P from
        # _block_len: rows not 4 KB apart); inner loops from 0 over a contiguous block
        nb, P, n = B3.shape[0], B3.shape[1], X.shape[1]
        zero = np.float32(0)
        for t in prange((n + JT - 1) // JT):
            j0 = t * JT
            j1 = min(n, j0 + JT)
            for k in range(nb):
                Wp, bp, ap = W3[k], B3[k], A3[k]
                for j in range(j0, j1):
                    acc = zero
                    for i in range(P):
                        z = bp[i]
                        for c in range(D):
                            z += Wp[c, i] * X[c, j]
                        acc += ap[i] * max(z, zero)
                    out[j] += acc

    @_jit
    def velocities(W, b, a, X, g, va, vw, vb, chunks):
        m, n = b.shape[0], X.shape[1]
        zero = np.float32(0)
        for q in prange(chunks):
            T = np.empty(n, dtype=np.float32)
            for i in range(q * m // chunks, (q + 1) * m // chunks):
                bi = b[i]
                for j in range(n):
                    z = bi
                    for c in range(D):
                        z += W[c, i] * X[c, j]
                    T[j] = g[j] if z > zero else zero
                sb = zero
                for j in range(n):
                    sb += T[j]
                sa = bi * sb
                vb[i] = -a[i] * sb
                for c in range(D):
                    s = zero
                    for j in range(n):
                        s += T[j] * X[c, j]
                    vw[c, i] = -a[i] * s
                    sa += W[c, i] * s
                va[i] = -sa

    _GENERIC[d] = (outputs, velocities)
    return _GENERIC[d]


_SMOOTH: dict = {}


def _smooth(name: str):
    """(outputs, velocities) fused kernels at d = 2, k = 1 with the activation ``name``'s float32
    numba code inlined: one sample per output pass over particle blocks, one particle per velocity
    pass over all samples (register blocking slows these activations: their arithmetic already
    fills the registers), the four sums of g sigma, g sigma', g sigma' x. Compiled once per
    process (closures over compiled functions do not hit numba's disk cache)."""
    if name in _SMOOTH:
        return _SMOOTH[name]
    from ..activations import get_activation
    from .numba_kernels import jit_scalar
    sig, dsig = jit_scalar(get_activation(name).numba.make(np.float32))
    jit = numba.njit(parallel=True, fastmath=FASTMATH, error_model="numpy")

    @jit
    def outputs(w0, w1, b, a, x0, x1, out, JT):
        m, n = b.shape[0], x0.shape[0]
        zero = np.float32(0)
        for t in prange((n + JT - 1) // JT):
            j0 = t * JT
            j1 = min(n, j0 + JT)
            for i0 in range(0, m, _B):
                i1 = min(m, i0 + _B)
                for j in range(j0, j1):
                    xa = x0[j]
                    xb = x1[j]
                    acc = zero
                    for i in range(i0, i1):
                        acc += a[i] * sig(b[i] + w0[i] * xa + w1[i] * xb)
                    out[j] += acc

    @jit
    def velocities(w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb):
        m, n = b.shape[0], x0.shape[0]
        zero = np.float32(0)
        for i in prange(m):
            p, u, v = b[i], w0[i], w1[i]
            sa = zero
            sb = zero
            s0 = zero
            s1 = zero
            for j in range(n):
                xa = x0[j]
                xb = x1[j]
                z = p + u * xa + v * xb
                sa += g[j] * sig(z)
                t = g[j] * dsig(z)
                sb += t
                s0 += t * xa
                s1 += t * xb
            va[i] = -sa
            vb[i] = -a[i] * sb
            vw0[i] = -a[i] * s0
            vw1[i] = -a[i] * s1

    _SMOOTH[name] = (outputs, velocities)
    return _SMOOTH[name]


def fused_limit(m: int = 100_000, n: int = 1_000, repeats: int = 5, min_time: float = 0.0,
                d: int = 2, act: str = "relu") -> dict:
    """Pairs/s of the fused relu roofline kernel (outputs + velocities, float32, k = 1).

    Args:
        m, n: particles and samples.
        repeats: timed runs at least; more until ``min_time`` seconds have been timed.
        d: input dimension: d = 2 runs the register-blocked kernels above, d > 2 the plain
            fused kernels of :func:`_generic` (the bar at that d: a pair costs ~d times more).
        act: ``relu`` (the kernels above; also the bar of leaky relu), or an activation with
            numba code that is not relu-like (tanh, sigmoid, softplus, smoothstep, a user's):
            the plain fused kernels of :func:`_smooth` with its float32 code inlined, d = 2
            only. The bar for that activation: the cost of its own arithmetic, twice a pair.

    Returns:
        dict with ``time_s`` (best of ``repeats``), ``pairs_per_s``, ``threads``.
    """
    if numba is None:  # pragma: no cover
        raise ValueError("the fused limit needs numba")
    if d < 2:
        raise ValueError(f"the fused limit is measured at d >= 2, got d = {d}")
    rng = np.random.default_rng(0)
    f = np.float32
    threads = numba.get_num_threads()
    JT = max(8, min(256, n // (4 * threads) or 8))
    if act != "relu" and d != 2:
        raise ValueError(f"the fused limit of {act!r} is measured at d = 2 only, got d = {d}")
    if d == 2:
        w0, w1, b, a = (rng.standard_normal(m).astype(f) for _ in range(4))
        x0, x1, g = ((rng.standard_normal(n) / np.sqrt(2)).astype(f) for _ in range(3))
        out, va, vw0, vw1, vb = np.zeros(n, f), *(np.zeros(m, f) for _ in range(4))
        ko, kv = (_outputs, _velocities) if act == "relu" else _smooth(act)
        ops = ((w0, w1, b, a, x0, x1, out, JT), (w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb))
    else:
        W = rng.standard_normal((d, m)).astype(f)
        b, a = (rng.standard_normal(m).astype(f) for _ in range(2))
        X = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(f)
        g = rng.standard_normal(n).astype(f)
        out, va, vb, vw = np.zeros(n, f), np.zeros(m, f), np.zeros(m, f), np.zeros((d, m), f)
        ko, kv = _generic(d)
        ops = ((*_blocked(W, b, a), X, out, JT), (W, b, a, X, g, va, vw, vb, max(1, min(m, 8 * threads))))
    ko(*ops[0])
    kv(*ops[1])
    best, timed, k = float("inf"), 0.0, 0
    while k < repeats or timed < min_time:
        t0 = time.perf_counter()
        ko(*ops[0])
        kv(*ops[1])
        dt = time.perf_counter() - t0
        best, timed, k = min(best, dt), timed + dt, k + 1
    return {"time_s": best, "pairs_per_s": m * n / best, "threads": threads}


def gemm_limit(m: int, n: int, d: int, dtype: str = "float32", repeats: int = 3) -> dict:
    """torch.mm throughput on a step's shapes: (m, d) @ (d, n) and (m, n) @ (n, d).

    The second product is taken with d columns, not d + 1 (the bias): torch.mm runs a width of
    785 about 15 % slower than 784, and the limit is the fastest a step's products can run.

    Returns:
        dict with ``gflops`` (best), and ``time_s``: the time of the step's two products at that
        rate (4 m n d flops), the fastest a matrix-product step can be.
    """
    import torch
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    mc = min(m, max(1, 2 ** 24 // max(n, 1)))        # a chunk of rows under ~64 MB
    W = torch.randn(mc, d, generator=g).to(dt)
    Xt = torch.randn(d, n, generator=g).to(dt)
    G = torch.randn(n, d, generator=g).to(dt)
    Z = torch.empty(mc, n, dtype=dt)
    V = torch.empty(mc, d, dtype=dt)
    torch.mm(W, Xt, out=Z)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(W, Xt, out=Z)
        torch.mm(Z, G, out=V)
        best = min(best, time.perf_counter() - t0)
    flops = 4.0 * mc * n * d
    rate = flops / best
    return {"gflops": rate / 1e9, "time_s": 4.0 * m * n * d / rate}
