"""The source text of the fused numba kernels (see :mod:`meanfield.backends.numba_kernels`, which
builds it per activation and dtype, for the math, the layout and the disk cache).

The text is executed in a namespace that supplies the activation; it is kept as a string so the
same source can be written into a generated module that numba caches on disk.
"""

from __future__ import annotations

__all__ = ["KERNEL_SOURCE", "WIDE_OUT", "WIDE_VEL"]

#: Input dimensions above which w . x is taken one coordinate at a time over a block: a fused
#: loop over d inside the vectorised loop is faster up to d = 40 once the cache blocks' rows are
#: not 4 KB apart (numba_cpu._block_len), and stops vectorising past that (outputs at m = 2e4,
#: n = 1e3, relu float32: 6.1 against 12.7 ms at d = 10, 19 against 28 ms at d = 32, 550 against
#: 39 ms at d = 48; velocities: no gain past 32).
WIDE_OUT, WIDE_VEL = 32, 32

#: The kernel source. Globals of the module it runs in (numba reads them as compile-time
#: constants): ``sig``, ``dsig``; ``WIDE_OUT``, ``WIDE_VEL``; ``BLOCK`` (the activation's
#: ``numba.cheap``: register blocking at d <= 3); ``HOMOG`` (``homogeneous``: sigma(z) =
#: z sigma'(z), so the k = 1 velocity loops get sum_j g_j sigma(z_ij) = b_i sb_i + w_i . s_i from
#: the sums they keep anyway); ``np`` and ``_njit``.
KERNEL_SOURCE = '''
@_njit(nogil=True)
def outputs_kernel(A, W, Bv, X, C, out, dk, kk, m, JT, t0, t1):
    # A (B,nbp,K,P), W (B,nbp,D,P), Bv (B,nbp,P): particles in zero-padded SoA blocks of P;
    # X (Bx,D,n) SoA; out (B,n,K) zeros on entry. Inner loops start at 0 on C-contiguous
    # blocks: no negative-index wraparound, so they vectorise.
    D = len(dk)
    K = len(kk)
    nbp, P = Bv.shape[1], Bv.shape[2]
    Bx, n = X.shape[0], X.shape[2]
    zero = C[0]
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
            jb = j0
            if BLOCK and K == 1 and D <= 3:
                # four samples per pass over the block: each particle's (a, w, b) is loaded once
                # for four outputs (the pass was bound by those loads)
                jb = j1 - (j1 - j0) % 4
                for j in range(j0, jb, 4):
                    xa0 = Xb[0, j]
                    xa1 = Xb[0, j + 1]
                    xa2 = Xb[0, j + 2]
                    xa3 = Xb[0, j + 3]
                    xb0 = Xb[1 if D > 1 else 0, j]
                    xb1 = Xb[1 if D > 1 else 0, j + 1]
                    xb2 = Xb[1 if D > 1 else 0, j + 2]
                    xb3 = Xb[1 if D > 1 else 0, j + 3]
                    xc0 = Xb[2 if D > 2 else 0, j]
                    xc1 = Xb[2 if D > 2 else 0, j + 1]
                    xc2 = Xb[2 if D > 2 else 0, j + 2]
                    xc3 = Xb[2 if D > 2 else 0, j + 3]
                    c0 = zero
                    c1 = zero
                    c2 = zero
                    c3 = zero
                    for i in range(L):
                        bi = Bp[i]
                        ai = Ap[0, i]
                        u = Wp[0, i]
                        z0 = bi + u * xa0
                        z1 = bi + u * xa1
                        z2 = bi + u * xa2
                        z3 = bi + u * xa3
                        if D > 1:
                            v = Wp[1, i]
                            z0 += v * xb0
                            z1 += v * xb1
                            z2 += v * xb2
                            z3 += v * xb3
                        if D > 2:
                            r = Wp[2, i]
                            z0 += r * xc0
                            z1 += r * xc1
                            z2 += r * xc2
                            z3 += r * xc3
                        c0 += ai * sig(z0)
                        c1 += ai * sig(z1)
                        c2 += ai * sig(z2)
                        c3 += ai * sig(z3)
                    out[bb, j, 0] += c0
                    out[bb, j + 1, 0] += c1
                    out[bb, j + 2, 0] += c2
                    out[bb, j + 3, 0] += c3
            for j in range(jb, j1):
                if D > WIDE_OUT:
                    # wide inputs: w . x one input coordinate at a time over the block (a loop
                    # over d inside the particle loop stops vectorising past d ~ 40: 14x slower
                    # at d = 48)
                    for i in range(L):
                        S[i] = Bp[i]
                    for c in range(D):
                        xc = Xb[c, j]
                        for i in range(L):
                            S[i] += Wp[c, i] * xc
                    for i in range(L):
                        S[i] = sig(S[i])
                    for q in range(K):
                        acc = zero
                        for i in range(L):
                            acc += Ap[q, i] * S[i]
                        out[bb, j, q] += acc
                elif K == 1:
                    acc = zero
                    for i in range(L):
                        z = Bp[i]
                        for c in range(D):
                            z += Wp[c, i] * Xb[c, j]
                        acc += Ap[0, i] * sig(z)
                    out[bb, j, 0] += acc
                else:
                    for i in range(L):
                        z = Bp[i]
                        for c in range(D):
                            z += Wp[c, i] * Xb[c, j]
                        S[i] = sig(z)
                    for q in range(K):
                        acc = zero
                        for i in range(L):
                            acc += Ap[q, i] * S[i]
                        out[bb, j, q] += acc
        for j in range(j0, j1):
            for q in range(K):
                out[bb, j, q] *= C[1]

@_njit(inline="always")
def _pre(Z, bi, Wb, i, Xs, L, D):
    # Z[j] = b_i + w_i . x_j over a block, one input coordinate at a time (wide inputs)
    for j in range(L):
        Z[j] = bi
    for c in range(D):
        wc = Wb[c, i]
        for j in range(L):
            Z[j] += wc * Xs[c, j]


@_njit(nogil=True)
def velocities_kernel(A, W, Bv, X, G, C, va, vw, vb, dk, kk, n, IT, inner, t0, t1):
    # A (B,K,m), W (B,D,m) SoA; Bv (B,m); X (Bx,nbs,D,P), G (B,nbs,K,P): samples in
    # zero-padded SoA blocks of P; writes va (B,m,K), vw (B,m,D), vb (B,m); every task owns
    # the rows of its particles.
    D = len(dk)
    K = len(kk)
    m = Bv.shape[1]
    Bx, nbs, P = X.shape[0], X.shape[1], X.shape[3]
    zero = C[0]
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
        VA[:] = zero
        VW[:] = zero
        VB[:] = zero
        for blk in range(nbs):  # a block of samples stays in L1 across the particle tile
            L = min(P, n - blk * P)
            Xs = X[bb if Bx > 1 else 0, blk]
            Gs = G[bb, blk]
            if inner and K == 1 and D <= 3:
                # one fused pass with scalar accumulators (the common low-d case); for d <= 2,
                # two particles per pass over the block (each sample is loaded once for both)
                ib = i0
                if BLOCK and D <= 2:
                    ib = i1 - (i1 - i0) % 2
                for i in range(i0, ib, 2):
                    r = i - i0
                    p0 = Bb[i]
                    p1 = Bb[i + 1]
                    u0 = Wb[0, i]
                    u1 = Wb[0, i + 1]
                    v0 = Wb[1 if D > 1 else 0, i]
                    v1 = Wb[1 if D > 1 else 0, i + 1]
                    sa0 = zero
                    sb0 = zero
                    s00 = zero
                    s10 = zero
                    sa1 = zero
                    sb1 = zero
                    s01 = zero
                    s11 = zero
                    for j in range(L):
                        x0 = Xs[0, j]
                        gj = Gs[0, j]
                        z0 = p0 + u0 * x0
                        z1 = p1 + u1 * x0
                        if D > 1:
                            x1 = Xs[1, j]
                            z0 += v0 * x1
                            z1 += v1 * x1
                        if not HOMOG:
                            sa0 += gj * sig(z0)
                            sa1 += gj * sig(z1)
                        t0_ = gj * dsig(z0)
                        t1_ = gj * dsig(z1)
                        sb0 += t0_
                        sb1 += t1_
                        s00 += t0_ * x0
                        s01 += t1_ * x0
                        if D > 1:
                            s10 += t0_ * x1
                            s11 += t1_ * x1
                    if HOMOG:  # sigma(z) = z sigma'(z): sum_j g sigma = b sb + w . s
                        sa0 = p0 * sb0 + u0 * s00
                        sa1 = p1 * sb1 + u1 * s01
                        if D > 1:
                            sa0 += v0 * s10
                            sa1 += v1 * s11
                    VA[r, 0] -= sa0
                    VA[r + 1, 0] -= sa1
                    VB[r] -= Ab[0, i] * sb0
                    VB[r + 1] -= Ab[0, i + 1] * sb1
                    VW[r, 0] -= Ab[0, i] * s00
                    VW[r + 1, 0] -= Ab[0, i + 1] * s01
                    if D > 1:
                        VW[r, 1] -= Ab[0, i] * s10
                        VW[r + 1, 1] -= Ab[0, i + 1] * s11
                for i in range(ib, i1):
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
                        if not HOMOG:
                            sa += gj * sig(z)
                        t = gj * dsig(z)
                        sb += t
                        s0 += t * x0
                        if D > 1:
                            s1 += t * Xs[1, j]
                        if D > 2:
                            s2 += t * Xs[2, j]
                    if HOMOG:
                        sa = bi * sb + w0 * s0
                        if D > 1:
                            sa += w1 * s1
                        if D > 2:
                            sa += w2 * s2
                    VA[r, 0] -= sa
                    VB[r] -= ai * sb
                    VW[r, 0] -= ai * s0
                    if D > 1:
                        VW[r, 1] -= ai * s1
                    if D > 2:
                        VW[r, 2] -= ai * s2
                continue
            if inner and K == 1:
                # d > 3, k = 1: pass 1 keeps sum_j g_j sigma(z_ij) in a scalar and stores
                # t_j = g_j sigma'(z_ij); pass 2 takes the d + 1 sums of t (a_i factored out).
                # 5x faster at d = 10 than the general passes below
                for i in range(i0, i1):
                    r = i - i0
                    bi = Bb[i]
                    sa = zero
                    if D > WIDE_VEL:
                        _pre(S, bi, Wb, i, Xs, L, D)
                        for j in range(L):
                            gj = Gs[0, j]
                            if not HOMOG:
                                sa += gj * sig(S[j])
                            T[j] = gj * dsig(S[j])
                    else:
                        for j in range(L):
                            z = bi
                            for c in range(D):
                                z += Wb[c, i] * Xs[c, j]
                            gj = Gs[0, j]
                            if not HOMOG:
                                sa += gj * sig(z)
                            T[j] = gj * dsig(z)
                    ai = Ab[0, i]
                    acc = zero
                    for j in range(L):
                        acc += T[j]
                    VB[r] -= ai * acc
                    if HOMOG:
                        sa = bi * acc
                    for c in range(D):
                        acc = zero
                        for j in range(L):
                            acc += T[j] * Xs[c, j]
                        VW[r, c] -= ai * acc
                        if HOMOG:
                            sa += Wb[c, i] * acc
                    VA[r, 0] -= sa
                continue
            for i in range(i0, i1):
                r = i - i0
                # pass 1: activations (and derivative terms) of particle i on the block; the
                # branch on `inner` stays outside the loops (inside, it kept them scalar)
                bi = Bb[i]
                if D > WIDE_VEL:
                    _pre(S, bi, Wb, i, Xs, L, D)
                    if inner:
                        for j in range(L):
                            ag = zero
                            for q in range(K):
                                ag += Ab[q, i] * Gs[q, j]
                            T[j] = ag * dsig(S[j])
                    for j in range(L):
                        S[j] = sig(S[j])
                elif inner:
                    for j in range(L):
                        z = bi
                        for c in range(D):
                            z += Wb[c, i] * Xs[c, j]
                        S[j] = sig(z)
                        ag = zero
                        for q in range(K):
                            ag += Ab[q, i] * Gs[q, j]
                        T[j] = ag * dsig(z)
                else:
                    for j in range(L):
                        z = bi
                        for c in range(D):
                            z += Wb[c, i] * Xs[c, j]
                        S[j] = sig(z)
                # pass 2: the reductions over the block
                for q in range(K):
                    acc = zero
                    for j in range(L):
                        acc += S[j] * Gs[q, j]
                    VA[r, q] -= acc
                if inner:
                    acc = zero
                    for j in range(L):
                        acc += T[j]
                    VB[r] -= acc
                    for c in range(D):
                        acc = zero
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

'''
