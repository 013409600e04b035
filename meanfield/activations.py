"""Activation functions with their derivatives, in a registry.

Every activation is a pair (sigma, sigma') of elementwise torch functions. The fused backends
(KeOps, numba) generate their own code from the *name*, so a user-defined activation runs on the
``dense`` backend only (the others say so).

Convention at kinks: torch's derivative of relu at exactly 0 is 0 and KeOps's is 1. This package
uses ``sigma'(0) = 0`` for relu and leaky relu's slope below 0; tests never place a pre-activation
exactly at a kink, and results must not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Activation", "get_activation", "register_activation", "list_activations"]

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An elementwise activation with its derivative.

    Attributes:
        name: registry name.
        fn: sigma, elementwise, any shape.
        deriv: sigma', elementwise, same shape.
        homogeneous: True when sigma(c z) = c sigma(z) for c > 0 (relu, leaky relu).
        builtin: True for the activations the fused backends know by name.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    deriv: Callable[[Tensor], Tensor]
    homogeneous: bool = False
    builtin: bool = False

    def __call__(self, z: Tensor) -> Tensor:
        return self.fn(z)


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


_REGISTRY: dict[str, Activation] = {}


def register_activation(
    name: str,
    fn: Callable[[Tensor], Tensor],
    deriv: Callable[[Tensor], Tensor],
    *,
    homogeneous: bool = False,
    overwrite: bool = False,
) -> Activation:
    """Register a user-defined activation (dense backend only).

    Args:
        name: the name to use in configs and on the command line.
        fn: sigma, an elementwise torch function.
        deriv: its derivative, elementwise.
        homogeneous: whether sigma is positively 1-homogeneous.
        overwrite: replace an existing user activation of that name.

    Returns:
        The registered :class:`Activation`.

    Raises:
        ValueError: when the name is taken (built-ins cannot be replaced).
    """
    if not callable(fn) or not callable(deriv):
        raise ValueError("register_activation needs two callables: fn and its derivative deriv")
    if name in _REGISTRY and (_REGISTRY[name].builtin or not overwrite):
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True "
                         "to replace a user-defined one (built-ins cannot be replaced)")
    act = Activation(name, fn, deriv, homogeneous=homogeneous, builtin=False)
    _REGISTRY[name] = act
    return act


def _builtin(name, fn, deriv, homogeneous=False):
    _REGISTRY[name] = Activation(name, fn, deriv, homogeneous=homogeneous, builtin=True)


_builtin("relu", torch.relu, _relu_d, homogeneous=True)
_builtin("leaky_relu", _leaky, _leaky_d, homogeneous=True)
_builtin("smoothstep", _smoothstep, _smoothstep_d)
_builtin("tanh", torch.tanh, _tanh_d)
_builtin("sigmoid", torch.sigmoid, _sigmoid_d)
_builtin("softplus", torch.nn.functional.softplus, torch.sigmoid)


def list_activations() -> list[str]:
    """Names of every registered activation."""
    return sorted(_REGISTRY)


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (an :class:`Activation` passes through).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, Activation):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(list_activations())} "
                         "(or register your own with meanfield.register_activation)") from None
