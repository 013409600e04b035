"""Backend protocol and registry (names resolved lazily, so optional libraries load on demand)."""

from __future__ import annotations

import importlib
import logging
from typing import Callable, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..activations import Activation

__all__ = ["Backend", "get_backend", "list_backends", "register_backend", "resolve_backend",
           "check_operands"]

log = logging.getLogger("meanfield")


@runtime_checkable
class Backend(Protocol):
    """The two reductions of a mean-field step (see :mod:`meanfield.backends`).

    Shapes: ``a (B, m, k)``, ``w (B, m, d)``, ``b (B, m)``, ``X (Bx, n, d)`` with ``Bx`` in
    {1, B} (1 = the same samples for every system), ``g (B, n, k)``.
    """

    name: str

    def available(self) -> bool:
        """Whether the backend can run here (libraries present)."""

    def supports(self, act: Activation, device: torch.device) -> bool:
        """Whether this activation runs on this device with this backend."""

    def outputs(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor) -> Tensor:
        """f ((B, n, k) Tensor) = (1/m) sum_i a_i sigma(w_i . x_j + b_i)."""

    def velocities(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Tensor,
                   *, inner: bool = True) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(v_a (B, m, k), v_w (B, m, d) or None, v_b (B, m) or None); None when inner=False."""


_FACTORIES: dict[str, str | Callable[[], Backend]] = {
    "dense": "meanfield.backends.dense:DenseBackend",
    "keops": "meanfield.backends.keops:KeOpsBackend",
    "numba": "meanfield.backends.numba_cpu:NumbaBackend",
}
_INSTANCES: dict[str, Backend] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Register a backend factory under a name (for experiments with a new reduction engine)."""
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def list_backends() -> list[str]:
    """Registered backend names, plus ``auto``."""
    return sorted(_FACTORIES) + ["auto"]


def get_backend(name: str | Backend) -> Backend:
    """The backend instance of that name (``auto`` is resolved by :func:`resolve_backend`).

    Raises:
        ValueError: for an unknown name (listing the valid ones) or a backend whose library is
            missing (saying what to install).
    """
    if not isinstance(name, str):
        return name
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(list_backends())}")
    if name not in _INSTANCES:
        fac = _FACTORIES[name]
        if isinstance(fac, str):
            mod, cls = fac.split(":")
            try:
                fac = getattr(importlib.import_module(mod), cls)
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ValueError(f"backend {name!r} cannot be loaded ({e}); install its library "
                                 "or use backend='dense'") from e
        _INSTANCES[name] = fac()
    be = _INSTANCES[name]
    if not be.available():
        raise ValueError(f"backend {name!r} is not available here (its library is missing or "
                         "failed to load); use backend='dense' or 'auto'")
    return be


def _try(name: str) -> Optional[Backend]:
    try:
        return get_backend(name)
    except ValueError:
        return None


# activations whose numba kernels vectorise (piecewise polynomials); tanh/sigmoid/softplus call
# libm scalar by scalar without SVML and measured no faster than dense (benchmarks/bench_step.py)
_NUMBA_FAST = ("relu", "leaky_relu", "smoothstep")


def resolve_backend(name: str | Backend, *, act: Activation, device: torch.device, m: int, n: int,
                    d: int, batch: int = 1) -> Backend:
    """Pick a concrete backend; ``auto`` chooses by device, size and availability and logs why.

    ``auto``: on CUDA, KeOps when installed (fused, O(m + n) memory) else dense; on CPU, the numba
    kernels for relu, leaky_relu and smoothstep at small d (d <= 16, where a fused pass beats
    BLAS), else dense (large d: the matrix products of ``dense`` win; tanh/sigmoid/softplus: no
    vectorised kernel). Tiny problems (B m n < 4096) use dense.
    """
    if name != "auto":
        be = get_backend(name)
        if not be.supports(act, device):
            raise ValueError(f"backend {be.name!r} does not support activation {act.name!r} on "
                             f"{device.type}; use backend='dense' (user-defined activations run "
                             "on dense only)")
        return be
    pick, why = None, ""
    if m * n * batch < 4096:
        pick, why = "dense", "tiny problem"
    elif device.type == "cuda":
        be = _try("keops")
        if be is not None and be.supports(act, device):
            pick, why = "keops", "CUDA device with pykeops"
        else:
            pick, why = "dense", "CUDA device, keops unavailable for this activation"
    else:
        be = _try("numba")
        if be is not None and be.supports(act, device) and d <= 16 and act.name in _NUMBA_FAST:
            pick, why = "numba", f"CPU, {act.name} (vectorised fused kernel), d={d} <= 16"
        else:
            pick, why = "dense", f"CPU, {act.name}, d={d}" + ("" if be is not None else ", numba unavailable")
    log.info("backend auto -> %s (%s)", pick, why)
    return get_backend(pick)


def check_operands(a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Optional[Tensor] = None) -> None:
    """Validate backend operand shapes (cheap; called by every backend)."""
    if a.dim() != 3 or w.dim() != 3 or b.dim() != 2:
        raise ValueError(f"backend operands must be batched: a (B,m,k), w (B,m,d), b (B,m); got "
                         f"a {tuple(a.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)}")
    B, m, _ = a.shape
    if w.shape[:2] != (B, m) or b.shape != (B, m):
        raise ValueError(f"particle shapes disagree: a {tuple(a.shape)}, w {tuple(w.shape)}, "
                         f"b {tuple(b.shape)}")
    if X.dim() != 3 or X.shape[0] not in (1, B) or X.shape[2] != w.shape[2]:
        raise ValueError(f"X must be (1 or B, n, d) with d = {w.shape[2]}, B = {B}; got {tuple(X.shape)}")
    if g is not None and (g.dim() != 3 or g.shape[0] != B or g.shape[1] != X.shape[1]
                          or g.shape[2] != a.shape[2]):
        raise ValueError(f"g must be (B, n, k) = ({B}, {X.shape[1]}, {a.shape[2]}); got {tuple(g.shape)}")
