"""Scalar math for the numba kernels: branch-free float32 approximations that vectorise.

libm's ``tanh``/``exp``/``log1p`` are called element by element (no SVML here), which stops the
fused loops from vectorising. In float32 the smooth activations therefore use arithmetic only:

- ``tanh32``: Eigen's rational approximation (odd degree-13 / even degree-6 polynomials, input
  clamped to +-7.9053); max abs error 3.4e-7 against float64 tanh.
- ``sigmoid32(z) = 1/2 + tanh32(z/2)/2``.
- ``softplus32(z) = max(z, 0) + log1p(u)``, ``u = exp(-|z|) = (1 - t)/(1 + t)`` with
  ``t = |tanh32(z/2)|`` (u = 0 past |z| = 15.8, where softplus's tail is below 1.4e-7), and
  ``log1p(u) = 2 atanh(v) = 2 (v + v^3/3 + ... + v^13/13)``, ``v = u/(2 + u) = (1 - t)/(3 + t)``
  in [0, 1/3] (series truncation < 1e-8). The tanh is the one sigmoid32 (softplus's derivative)
  computes, so a kernel that needs both computes it once.

The error bounds are stated on the activations (:mod:`meanfield.activations`) and pinned by
tests/test_activations.py. Float64 keeps libm (``*64``): float64 results do not change.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["tanh32", "sigmoid32", "softplus32", "tanh64", "sigmoid64", "softplus64", "FASTMATH"]

# FMA contraction, reassociation (so sums vectorise), no signed zeros; never nnan/ninf, so NaN and
# inf propagate (divergence detection relies on it)
FASTMATH = {"contract", "nsz", "arcp", "reassoc"}

_f = np.float32
_P = tuple(_f(c) for c in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                           5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                           -2.76076847742355e-16))
_Q = tuple(_f(c) for c in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                           1.19825839466702e-06))
P0, P1, P2, P3, P4, P5, P6 = _P
Q0, Q1, Q2, Q3 = _Q
CLAMP = _f(7.90531110763549805)
HALF, ONE, THREE, ZERO = _f(0.5), _f(1.0), _f(3.0), _f(0.0)
# 2 / (2k + 1) for the atanh series
L1, L3, L5, L7, L9, L11, L13 = (_f(2.0 / (2 * k + 1)) for k in range(7))


def _jit(f):
    if numba is None:  # pragma: no cover
        return f
    return numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)(f)


@_jit
def tanh32(z):
    x = min(max(z, -CLAMP), CLAMP)
    x2 = x * x
    p = x * ((((((P6 * x2 + P5) * x2 + P4) * x2 + P3) * x2 + P2) * x2 + P1) * x2 + P0)
    q = ((Q3 * x2 + Q2) * x2 + Q1) * x2 + Q0
    return p / q


@_jit
def sigmoid32(z):
    return HALF + HALF * tanh32(HALF * z)


@_jit
def softplus32(z):
    # tanh32 is odd, so |tanh32(z/2)| = tanh32(|z|/2); the same tanh32(z/2) as sigmoid32(z),
    # which the compiler computes once when a kernel needs both (softplus' = sigmoid)
    t = abs(tanh32(HALF * z))
    v = (ONE - t) / (THREE + t)           # u / (2 + u) with u = exp(-|z|) = (1 - t) / (1 + t)
    v2 = v * v
    s = v * ((((((L13 * v2 + L11) * v2 + L9) * v2 + L7) * v2 + L5) * v2 + L3) * v2 + L1)
    return max(z, ZERO) + s


@_jit
def tanh64(z):
    return np.tanh(z)


@_jit
def sigmoid64(z):
    return 0.5 + 0.5 * np.tanh(0.5 * z)


@_jit
def softplus64(z):
    # torch's softplus: z past the threshold 20
    return z if z > 20.0 else np.log1p(np.exp(z))
