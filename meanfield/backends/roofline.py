"""The machine's limits for one mean-field step, measured in the same run as the backends.

- :func:`fused_limit`: the simplest fused relu kernel of both reductions (k = 1, d = 2, structure
  of arrays, float32; outputs in sample tiles over particle cache blocks, velocities one particle
  per iteration over all samples), pairs/s at small d. Nothing real can run a relu step faster on
  this CPU with this compiler: it is the bar for ``numba``.
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
        # d = 2, k = 1, SoA: f_j = sum_i a_i relu(w_i . x_j + b_i); out (n,)
        m, n = b.shape[0], x0.shape[0]
        for t in prange((n + JT - 1) // JT):
            j0 = t * JT
            j1 = min(n, j0 + JT)
            for i0 in range(0, m, _B):
                i1 = min(m, i0 + _B)
                for j in range(j0, j1):
                    xa = x0[j]
                    xb = x1[j]
                    acc = np.float32(0)
                    for i in range(i0, i1):
                        acc += a[i] * max(b[i] + w0[i] * xa + w1[i] * xb, np.float32(0))
                    out[j] += acc

    @_jit
    def _velocities(w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb):
        # (v_w, v_b) = -a_i sum_j u_ij (x_j, 1) with u_ij = g_j 1[z_ij > 0], and, since relu is
        # 1-homogeneous (relu(z) = z 1[z > 0]), v_a = -sum_j u_ij z_ij. Each particle reads all
        # samples from index 0 (n floats x 3 stay in cache): an inner loop that starts at a
        # variable index keeps numba's negative-index check and ran 3x slower
        m, n = b.shape[0], x0.shape[0]
        for i in prange(m):       # numba splits the range into one static chunk per thread
            bi = b[i]
            wa = w0[i]
            wb = w1[i]
            sa = np.float32(0)
            sb = np.float32(0)
            s0 = np.float32(0)
            s1 = np.float32(0)
            for j in range(n):
                z = bi + wa * x0[j] + wb * x1[j]
                u = g[j] if z > np.float32(0) else np.float32(0)
                sa += u * z
                sb += u
                s0 += u * x0[j]
                s1 += u * x1[j]
            va[i] = -sa
            vb[i] = -a[i] * sb
            vw0[i] = -a[i] * s0
            vw1[i] = -a[i] * s1


def fused_limit(m: int = 100_000, n: int = 1_000, repeats: int = 5) -> dict:
    """Pairs/s of the fused relu roofline kernel (outputs + velocities, float32, d = 2, k = 1).

    Returns:
        dict with ``time_s`` (best of ``repeats``), ``pairs_per_s``, ``threads``.
    """
    if numba is None:  # pragma: no cover
        raise ValueError("the fused limit needs numba")
    rng = np.random.default_rng(0)
    f = np.float32
    w0, w1, b, a = (rng.standard_normal(m).astype(f) for _ in range(4))
    x0, x1, g = ((rng.standard_normal(n) / np.sqrt(2)).astype(f) for _ in range(3))
    out, va, vw0, vw1, vb = np.zeros(n, f), *(np.zeros(m, f) for _ in range(4))
    ops = ((w0, w1, b, a, x0, x1, out), (w0, w1, b, a, x0, x1, g, va, vw0, vw1, vb))
    threads = numba.get_num_threads()
    JT = max(8, min(256, n // (4 * threads) or 8))
    _outputs(*ops[0], JT)
    _velocities(*ops[1])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _outputs(*ops[0], JT)
        _velocities(*ops[1])
        best = min(best, time.perf_counter() - t0)
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
