"""Losses l(f, y) with their derivative in f, in a registry.

Outputs ``f`` have shape ``(..., n, k)`` (k outputs per sample) and labels ``y`` shape ``(..., n)``
with integer classes. Binary losses (``exponential``, ``logistic``) need ``k = 1`` and labels in
{0, 1}; the signed label is ``xi = 2 y - 1`` (class 1 is +1, class 0 is -1) — the one place the
binary +-1 convention lives (:func:`signed_labels`). ``mse`` targets ``xi`` when ``k = 1`` and the
one-hot vector ``e_y`` when ``k >= 2``; ``cross_entropy`` needs ``k >= 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from .registry import Registry

__all__ = ["Loss", "get_loss", "list_losses", "signed_labels", "one_hot_targets"]


def signed_labels(y: Tensor, dtype: torch.dtype) -> Tensor:
    """Binary labels {0, 1} as signs xi in {-1, +1} (class 1 -> +1)."""
    return (2 * y - 1).to(dtype)


def one_hot_targets(y: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """Targets for ``mse``: ``xi`` of shape (..., n, 1) when k = 1, else one-hot (..., n, k)."""
    if k == 1:
        return signed_labels(y, dtype).unsqueeze(-1)
    return F.one_hot(y.long(), k).to(dtype)


@dataclass(frozen=True)
class Loss:
    """A loss with its derivative.

    Attributes:
        name: registry name.
        value: ``(f (..., n, k), y (..., n)) -> (..., n)`` per-sample loss.
        grad: ``(f, y) -> (..., n, k)`` derivative dl/df.
        binary: True when the loss needs k = 1 and labels in {0, 1}.
        min_outputs: the smallest k it accepts.
        unbounded: True when minimisers run off to infinity without weight decay
            (exponential-type losses; log-time stepping is then advised).
        signed_single: True when, with k = 1, the target is the sign ``xi = 2 y - 1`` (``mse``):
            one output then needs 2 classes (labels 0, 1).
    """

    name: str
    value: Callable[[Tensor, Tensor], Tensor]
    grad: Callable[[Tensor, Tensor], Tensor]
    binary: bool = False
    min_outputs: int = 1
    unbounded: bool = False
    signed_single: bool = False

    def check(self, k: int, num_classes: int) -> None:
        """Raise a ValueError when this loss cannot be used with k outputs and C classes."""
        if self.binary and (k != 1 or num_classes > 2):
            raise ValueError(f"loss {self.name!r} is binary: it needs 1 output and 2 classes "
                             f"(got {k} outputs, {num_classes} classes); use 'cross_entropy' "
                             "or 'mse' for more classes")
        if k < self.min_outputs:
            raise ValueError(f"loss {self.name!r} needs at least {self.min_outputs} outputs, got {k}; "
                             "use one output per class")
        if self.signed_single and k == 1 and num_classes > 2:
            raise ValueError(f"loss {self.name!r} with 1 output needs 2 classes (±1 targets); got "
                             f"{num_classes} classes: use {num_classes} outputs (k = {num_classes})")
        if not self.binary and k >= 2 and num_classes > k:
            raise ValueError(f"{num_classes} classes but only {k} outputs for loss {self.name!r}")


def _exp_value(f, y):
    return torch.exp(-signed_labels(y, f.dtype) * f[..., 0])


def _exp_grad(f, y):
    xi = signed_labels(y, f.dtype)
    return (-xi * torch.exp(-xi * f[..., 0])).unsqueeze(-1)


def _logistic_value(f, y):
    return F.softplus(-signed_labels(y, f.dtype) * f[..., 0])


def _logistic_grad(f, y):
    xi = signed_labels(y, f.dtype)
    return (-xi * torch.sigmoid(-xi * f[..., 0])).unsqueeze(-1)


def at_label(f: Tensor, y: Tensor) -> Tensor:
    """``f[..., j, y_j]``: (..., n) from f (..., n, k) and labels y broadcastable to (..., n).

    ``torch.gather`` does not broadcast: labels shared by B systems (leading size 1) are expanded
    first, or every system would be read at system 0's outputs."""
    idx = y.long().unsqueeze(-1).expand(*f.shape[:-1], 1)
    return torch.gather(f, -1, idx).squeeze(-1)


def _ce_value(f, y):
    return torch.logsumexp(f, dim=-1) - at_label(f, y)


def _ce_grad(f, y):
    return torch.softmax(f, dim=-1) - F.one_hot(y.long(), f.shape[-1]).to(f.dtype)


def _mse_value(f, y):
    return 0.5 * ((f - one_hot_targets(y, f.shape[-1], f.dtype)) ** 2).sum(-1)


def _mse_grad(f, y):
    return f - one_hot_targets(y, f.shape[-1], f.dtype)


def _check_loss(name: str, loss) -> None:
    if not isinstance(loss, Loss):
        raise ValueError(f"loss {name!r} must be a meanfield.losses.Loss, got {type(loss).__name__}")


LOSSES: Registry = Registry("loss", check=_check_loss,
                            hint="add one with meanfield.losses.LOSSES.register(name, Loss(...))")
for _l in (Loss("exponential", _exp_value, _exp_grad, binary=True, unbounded=True),
           Loss("logistic", _logistic_value, _logistic_grad, binary=True, unbounded=True),
           Loss("cross_entropy", _ce_value, _ce_grad, min_outputs=2, unbounded=True),
           Loss("mse", _mse_value, _mse_grad, signed_single=True)):
    LOSSES.register(_l.name, _l, builtin=True)


def list_losses() -> list[str]:
    """Names of every registered loss."""
    return LOSSES.list()


def get_loss(name: str | Loss) -> Loss:
    """Look a loss up by name (a :class:`Loss` passes through).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, Loss):
        return name
    return LOSSES.get(name)
