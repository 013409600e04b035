"""Activation functions: one object per activation, carrying its value, derivative and fast kernels.

An :class:`Activation` is everything a backend needs: sigma and sigma' as elementwise torch
functions (the ``dense`` backend and the autograd oracle), and optionally its fused kernels:

- ``keops``: a :class:`KeOpsKernel`, the KeOps formula text of sigma and sigma' in the
  pre-activation ``Z`` (with named scalar parameters);
- ``numba``: a :class:`NumbaKernel`, a factory ``make(np_dtype) -> (sigma, dsigma)`` of plain
  scalar Python functions that the numba backend compiles and inlines into its fused loops (the
  constants they close over should be of ``np_dtype``, so float32 stays float32), with the
  approximation error bounds of that code against float64 torch.

The backends read these fields and never switch on names, so a new fast built-in touches this file
only, and a user activation registered with kernels runs on every backend that has one::

    register_activation("softsign", lambda z: z / (1 + z.abs()), lambda z: (1 + z.abs()) ** -2,
                        keops=("Z/(IntCst(1)+Abs(Z))", "Inv(Square(IntCst(1)+Abs(Z)))"),
                        numba=softsign_factory)

Registered with ``fn`` and ``deriv`` only, an activation runs on ``dense`` (the others say so).

Convention at kinks: torch's derivative of relu at exactly 0 is 0 and KeOps's is 1. This package
uses ``sigma'(0) = 0`` for relu and leaky relu's slope below 0; tests never place a pre-activation
exactly at a kink, and results must not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

from .registry import Registry

__all__ = ["Activation", "KeOpsKernel", "NumbaKernel", "ACTIVATIONS", "get_activation",
           "register_activation", "list_activations", "LEAKY_SLOPE"]

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class KeOpsKernel:
    """sigma and sigma' as KeOps formula text in the pre-activation ``Z``.

    Attributes:
        fn: sigma(Z), e.g. ``"ReLU(Z)"``.
        deriv: sigma'(Z), written out (never KeOps's symbolic ``Grad``: its ReLU' is 1 at 0).
        params: ``(name, value)`` scalar parameters used by the formulas, passed as ``Pm(1)``
            (KeOps's ``RatCst`` is rounded to float32, which would break float64 runs).
    """

    fn: str
    deriv: str
    params: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class NumbaKernel:
    """Scalar numba code for sigma and sigma'.

    Attributes:
        make: ``make(np_dtype) -> (sigma, dsigma)``: plain scalar Python functions (numba
            compiles them, ``inline="always"``, into the fused loops). They may call
            ``@numba.njit`` helpers (see :mod:`meanfield.backends.numba_math`).
        error: largest absolute error of (sigma, sigma') against float64 torch, by dtype name;
            ``0.0`` means correctly rounded libm-level code (the tests pin every bound).
        vectorised: dtype names for which the code is branch-free arithmetic (no libm call), so
            the fused loops vectorise; informational (``auto`` decides from measurements).
        cheap: the code is a few instructions (relu, leaky relu), so at d <= 3 the fused loops
            evaluate several (particle, sample) pairs per load of their operands (register
            blocking: 1.5-2x faster for relu). Costly code (a rational tanh) runs slower
            blocked, since the unrolled copies run out of registers; leave it False.
    """

    make: Callable
    error: dict = field(default_factory=lambda: {"float32": 0.0, "float64": 0.0})
    vectorised: tuple[str, ...] = ("float32", "float64")
    cheap: bool = False


@dataclass(frozen=True)
class Activation:
    """An elementwise activation with its derivative and optional fused kernels.

    Attributes:
        name: registry name.
        fn: sigma, elementwise, any shape.
        deriv: sigma', elementwise, same shape.
        homogeneous: True when sigma(c z) = c sigma(z) for c > 0 (relu, leaky relu).
        builtin: True for the package's own activations.
        keops: KeOps formulas (None: the keops backend does not run it).
        numba: numba scalar code (None: the numba backend does not run it).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    deriv: Callable[[Tensor], Tensor]
    homogeneous: bool = False
    builtin: bool = False
    keops: Optional[KeOpsKernel] = None
    numba: Optional[NumbaKernel] = None

    def __call__(self, z: Tensor) -> Tensor:
        return self.fn(z)


# ----------------------------------------------------------------------------- torch functions
def _relu_d(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def _leaky(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, LEAKY_SLOPE * z)


def _leaky_d(z: Tensor) -> Tensor:
    return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, LEAKY_SLOPE))


def _smoothstep(z: Tensor) -> Tensor:
    """0 for z <= 0, 3z^2 - 2z^3 on [0, 1], 1 for z >= 1 (C^1, flat at both ends)."""
    u = z.clamp(0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _smoothstep_d(z: Tensor) -> Tensor:
    u = z.clamp(0.0, 1.0)
    return 6.0 * u * (1.0 - u)


def _tanh_d(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return 1.0 - t * t


def _sigmoid_d(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


# ----------------------------------------------------------------------------- numba scalar code
# Each factory gets the array dtype and closes over constants of that dtype (no float64 promotion
# in float32 loops). Float64 smooth activations call libm (results identical to earlier versions);
# float32 ones use the branch-free approximations of numba_math (errors pinned in the tests).
def _nb_relu(dt):
    zero, one = dt(0), dt(1)
    return (lambda z: max(z, zero)), (lambda z: one if z > zero else zero)


def _nb_leaky(dt):
    zero, one, c = dt(0), dt(1), dt(LEAKY_SLOPE)
    return (lambda z: z if z > zero else c * z), (lambda z: one if z > zero else c)


def _nb_smoothstep(dt):
    zero, one, two, three, six = dt(0), dt(1), dt(2), dt(3), dt(6)

    def s(z):
        u = min(max(z, zero), one)
        return u * u * (three - two * u)

    def ds(z):
        u = min(max(z, zero), one)
        return six * u * (one - u)
    return s, ds


def _nb_tanh(dt):
    from .backends import numba_math as nm
    one = dt(1)
    th = nm.tanh32 if dt.__name__ == "float32" else nm.tanh64

    def ds(z):
        t = th(z)
        return one - t * t
    return th, ds


def _nb_sigmoid(dt):
    from .backends import numba_math as nm
    one = dt(1)
    sg = nm.sigmoid32 if dt.__name__ == "float32" else nm.sigmoid64

    def ds(z):
        s = sg(z)
        return s * (one - s)
    return sg, ds


def _nb_softplus(dt):
    from .backends import numba_math as nm
    if dt.__name__ == "float32":
        return nm.softplus32, nm.sigmoid32
    return nm.softplus64, nm.sigmoid64


# ----------------------------------------------------------------------------- keops formulas
_SIG = "Inv(IntCst(1)+Exp(-(Z)))"                 # sigmoid(Z), stable: exp overflow gives 0
_SIG2 = "Inv(IntCst(1)+Exp(IntCst(-2)*(Z)))"      # sigmoid(2Z)
_U = "ClampInt(Z,0,1)"

# float32 bounds of numba_math's approximations against float64 torch (measured on 2e6 points in
# [-30, 30] plus the tails, rounded up; tests/test_activations.py pins them)
_ERR_TANH = {"float32": 6e-7, "float64": 0.0}
_ERR_SIGMOID = {"float32": 4e-7, "float64": 0.0}
_ERR_SOFTPLUS = {"float32": 1e-6, "float64": 0.0}
_EXACT = {"float32": 0.0, "float64": 0.0}


def _load_builtins() -> None:
    def add(name, fn, deriv, keops, numba, homogeneous=False):
        ACTIVATIONS.register(name, Activation(name, fn, deriv, homogeneous=homogeneous,
                                              builtin=True, keops=keops, numba=numba),
                             builtin=True)

    add("relu", torch.relu, _relu_d, KeOpsKernel("ReLU(Z)", "(IntCst(1)-Step(-(Z)))"),
        NumbaKernel(_nb_relu, _EXACT, cheap=True), homogeneous=True)
    add("leaky_relu", _leaky, _leaky_d,
        KeOpsKernel("IfElse(Z,Z,c*(Z))", "IfElse(-(Z),c,IntCst(1))", (("c", LEAKY_SLOPE),)),
        NumbaKernel(_nb_leaky, _EXACT, cheap=True), homogeneous=True)
    add("smoothstep", _smoothstep, _smoothstep_d,
        KeOpsKernel(f"(Square({_U})*(IntCst(3)-IntCst(2)*{_U}))", f"(IntCst(6)*{_U}*(IntCst(1)-{_U}))"),
        NumbaKernel(_nb_smoothstep, _EXACT))
    # tanh z = 2 sigmoid(2z) - 1, tanh' z = 4 s (1 - s) with s = sigmoid(2z): no inf/inf anywhere
    add("tanh", torch.tanh, _tanh_d,
        KeOpsKernel(f"(IntCst(2)*{_SIG2}-IntCst(1))", f"(IntCst(4)*{_SIG2}*(IntCst(1)-{_SIG2}))"),
        NumbaKernel(_nb_tanh, _ERR_TANH, ("float32",)))
    add("sigmoid", torch.sigmoid, _sigmoid_d,
        KeOpsKernel(_SIG, f"({_SIG}*(IntCst(1)-{_SIG}))"),
        NumbaKernel(_nb_sigmoid, _ERR_SIGMOID, ("float32",)))
    # softplus z = relu(z) + log(1 + exp(-|z|)): no overflow
    add("softplus", torch.nn.functional.softplus, torch.sigmoid,
        KeOpsKernel("(ReLU(Z)+Log(IntCst(1)+Exp(-Abs(Z))))", _SIG),
        NumbaKernel(_nb_softplus, _ERR_SOFTPLUS, ("float32",)))


def _check(name: str, obj) -> None:
    if not isinstance(obj, Activation):
        raise ValueError(f"activation {name!r} must be an Activation, got {type(obj).__name__}")
    if obj.name != name:
        raise ValueError(f"activation registered as {name!r} is named {obj.name!r}")


#: The activation registry (a :class:`meanfield.registry.Registry`).
ACTIVATIONS: Registry[Activation] = Registry(
    "activation", loader=_load_builtins, check=_check,
    hint="or register your own with meanfield.register_activation")


def _as_keops(k) -> Optional[KeOpsKernel]:
    if k is None or isinstance(k, KeOpsKernel):
        return k
    if isinstance(k, (tuple, list)) and len(k) in (2, 3) and all(isinstance(s, str) for s in k[:2]):
        return KeOpsKernel(k[0], k[1], tuple(k[2]) if len(k) == 3 else ())
    raise ValueError("keops= takes a KeOpsKernel or a (sigma formula, sigma' formula[, params]) "
                     f"tuple of KeOps formula strings in Z; got {k!r}")


def _as_numba(k) -> Optional[NumbaKernel]:
    if k is None or isinstance(k, NumbaKernel):
        return k
    if callable(k):
        return NumbaKernel(k)
    if isinstance(k, (tuple, list)) and len(k) == 2 and all(callable(f) for f in k):
        s, ds = k
        return NumbaKernel(lambda dt: (s, ds))
    raise ValueError("numba= takes a NumbaKernel, a factory make(np_dtype) -> (sigma, dsigma) or "
                     f"a (sigma, dsigma) pair of scalar Python functions; got {k!r}")


def _check_homogeneous(name: str, fn, deriv) -> None:
    """homogeneous=True promises sigma(z) = z sigma'(z) (Euler's identity for a positively
    1-homogeneous sigma), which the numba kernels use to skip a sum: check it on a grid (to
    float32 rounding: user code may compute in float32)."""
    z = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    z = z[z != 0]
    with torch.no_grad():
        s = fn(z).to(torch.float64)
        gap = torch.nan_to_num((s - z * deriv(z).to(torch.float64)).abs(), nan=float("inf"))
    worst = int(gap.argmax())
    if gap[worst].item() > 1e-5 * (1.0 + s.abs().max().item()):
        raise ValueError(f"activation {name!r}: homogeneous=True needs sigma(z) = z sigma'(z) "
                         f"(positively 1-homogeneous, like relu), but fn(z) - z deriv(z) = "
                         f"{gap[worst].item():.3g} at z = {z[worst].item():g}; pass "
                         "homogeneous=False")


def register_activation(
    name: str,
    fn: Callable[[Tensor], Tensor],
    deriv: Callable[[Tensor], Tensor],
    *,
    homogeneous: bool = False,
    keops=None,
    numba=None,
    overwrite: bool = False,
) -> Activation:
    """Register a user-defined activation (dense only, or on fast backends with kernels).

    Args:
        name: the name to use in configs and on the command line.
        fn: sigma, an elementwise torch function.
        deriv: its derivative, elementwise.
        homogeneous: whether sigma is positively 1-homogeneous.
        keops: a :class:`KeOpsKernel` or ``(sigma, sigma')`` KeOps formulas in ``Z``: runs on keops.
        numba: a :class:`NumbaKernel`, a factory ``make(np_dtype) -> (sigma, dsigma)`` or a pair of
            scalar Python functions: runs on numba.
        overwrite: replace an existing user activation of that name.

    Returns:
        The registered :class:`Activation`.

    Raises:
        ValueError: when the name is taken (built-ins cannot be replaced) or a kernel is malformed.
    """
    if not callable(fn) or not callable(deriv):
        raise ValueError("register_activation needs two callables: fn and its derivative deriv")
    if homogeneous:
        _check_homogeneous(name, fn, deriv)
    act = Activation(name, fn, deriv, homogeneous=homogeneous, builtin=False,
                     keops=_as_keops(keops), numba=_as_numba(numba))
    return ACTIVATIONS.register(name, act, overwrite=overwrite)


def list_activations() -> list[str]:
    """Names of every registered activation."""
    return ACTIVATIONS.list()


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (an :class:`Activation` passes through).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS.get(name)
