"""Names for models, so an experiment's config can say ``model=deep``, ``model.width=256``.

Every entry is a factory

.. code-block:: python

    factory(input_dim, num_classes, *, seed, dtype, device, **params) -> model

whose keyword parameters after ``device`` (with their defaults) are the model's parameters: they
are what ``ModelSpec(name, params)`` holds, what ``--set model.X=...`` reaches and what
:func:`describe_model` lists. Built-ins:

- ``meanfield``: the two-layer network as a measure, :meth:`meanfield.Particles.gaussian`
  (``m`` neurons, mean-field scaling ``f = (1/m) sum_i a_i sigma(w_i.x + b_i)``);
- ``two_layer``: :class:`meanfield.deep.models.MLP` with one hidden layer and biases;
- ``deep``: :class:`meanfield.deep.models.DeepHomogeneousMLP`, bias-free ReLU (homogeneous);
- ``mlp``: :class:`meanfield.deep.models.MLP`, biases and any registered activation;
- ``convnet``: :class:`meanfield.deep.models.ConvNet` on images ``(n, c, h, w)``.

Add your own with :func:`register_model` (from a ``--plugin`` file or package); an unknown name
raises a ValueError listing the valid ones.

Example:
    >>> from meanfield.models import build_model
    >>> from meanfield.study.spec import ModelSpec
    >>> net = build_model(ModelSpec("deep", {"width": 16, "depth": 3}), 64, 10, seed=0)
    >>> net.num_classes
    10
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from .registry import Registry

__all__ = ["ModelEntry", "MODELS", "register_model", "unregister_model", "get_model", "list_models",
           "describe_model", "build_model"]

_RESERVED = ("seed", "dtype", "device")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        factory: ``factory(input_dim, num_classes, *, seed, dtype, device, **params)``.
        description: one line for listings.
    """

    factory: Callable[..., Any]
    description: str = ""

    def params(self) -> dict:
        """The factory's model parameters with their defaults (None where it has none)."""
        out = {}
        sig = inspect.signature(self.factory)
        for i, p in enumerate(sig.parameters.values()):
            if i < 2 or p.name in _RESERVED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = None if p.default is p.empty else p.default
        return out


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)
    raise ValueError(f"dtype must be float32 or float64 (or a torch dtype), got {dtype!r}")


# ------------------------------------------------------------------ built-in factories
def _meanfield(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
               dtype: torch.dtype = torch.float64, device="cpu", m: int = 1000,
               activation: str = "relu", outputs: Optional[int] = None, scale_a: float = 1.0,
               scale_w: float = 1.0, scale_b: float = 1.0, batch: int = 1):
    """Mean-field particles ``Particles.gaussian`` (a ~ N(0, scale_a²), w ~ N(0, scale_w² I), b ~ N(0, scale_b²)).

    Params: ``m`` neurons; ``activation`` (registry name); ``outputs`` k (None: 1 for two
    classes, labels +-1, else ``num_classes``); ``scale_a``, ``scale_w``, ``scale_b`` the init
    standard deviations; ``batch`` independent systems.
    """
    from .particles import Particles
    k = outputs if outputs is not None else (1 if num_classes <= 2 else num_classes)
    return Particles.gaussian(int(m), int(input_dim), int(k), scale_a=scale_a, scale_w=scale_w,
                              scale_b=scale_b, batch=int(batch), activation=activation, seed=seed,
                              dtype=_dtype(dtype), device=device if device is not None else "cpu")


def _two_layer(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
               dtype: torch.dtype = torch.float32, device=None, width: int = 128,
               activation: str = "relu", init_scale: float = 1.0):
    """Two-layer net with biases: ``W2 sigma(W1 x + b1) + b2`` (``width`` hidden units, He init)."""
    from .deep.models import MLP
    return MLP(input_dim, width, 2, num_classes, activation=activation, init_scale=init_scale,
               seed=seed, dtype=_dtype(dtype), device=device)


def _deep(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
          dtype: torch.dtype = torch.float32, device=None, width: int | Sequence[int] = 128,
          depth: int = 4, init_scale: float = 1.0):
    """Bias-free ReLU MLP ``W_L relu(... relu(W_1 x))``: ``depth`` = L weight matrices, hidden ``width``."""
    from .deep.models import DeepHomogeneousMLP
    return DeepHomogeneousMLP(input_dim, width, depth, num_classes, init_scale=init_scale, seed=seed,
                              dtype=_dtype(dtype), device=device)


def _mlp(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
         dtype: torch.dtype = torch.float32, device=None, width: int | Sequence[int] = 128,
         depth: int = 4, activation: str = "relu", init_scale: float = 1.0):
    """MLP with biases: ``depth`` weight matrices, hidden ``width``, any registered ``activation``."""
    from .deep.models import MLP
    return MLP(input_dim, width, depth, num_classes, activation=activation, init_scale=init_scale,
               seed=seed, dtype=_dtype(dtype), device=device)


def _convnet(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
             dtype: torch.dtype = torch.float32, device=None, in_channels: int = 1,
             channels: tuple = (32, 64), feature_dim: int = 128, batch_norm: bool = True):
    """Small conv net on images (n, in_channels, h, w): conv-BN-ReLU-pool blocks of ``channels``,
    a ``feature_dim``-wide ReLU layer, a linear classifier (train with ``train.input_shape``)."""
    from .deep.models import ConvNet
    if int(input_dim) % int(in_channels):
        raise ValueError(f"input_dim {input_dim} is not a multiple of in_channels={in_channels}")
    if isinstance(channels, int):
        channels = (channels,)
    return ConvNet(int(in_channels), num_classes, channels=tuple(channels), feature_dim=feature_dim,
                   batch_norm=batch_norm, seed=seed, dtype=_dtype(dtype), device=device)


def _first_line(fn) -> str:
    return (inspect.getdoc(fn) or "").split("\n")[0]


MEANFIELD = ModelEntry(_meanfield, _first_line(_meanfield))
TWO_LAYER = ModelEntry(_two_layer, _first_line(_two_layer))
DEEP = ModelEntry(_deep, _first_line(_deep))
MLP_ENTRY = ModelEntry(_mlp, _first_line(_mlp))
CONVNET = ModelEntry(_convnet, _first_line(_convnet))

_BUILTINS = {"meanfield": "MEANFIELD", "two_layer": "TWO_LAYER", "deep": "DEEP", "mlp": "MLP_ENTRY",
             "convnet": "CONVNET", "resnet18": "RESNET18"}


def _load_builtins() -> None:
    for name, attr in _BUILTINS.items():
        MODELS.register(name, f"meanfield.models:{attr}", builtin=True)


def _check(name: str, entry) -> None:
    if not isinstance(entry, ModelEntry):
        raise ValueError(f"model {name!r} must be a meanfield.models.ModelEntry, got {type(entry).__name__}")
    if not callable(entry.factory):
        raise ValueError(f"model {name!r}: factory must be callable")
    ps = list(inspect.signature(entry.factory).parameters.values())
    names = {p.name for p in ps}
    if len(ps) < 2 or not all(r in names or any(p.kind == p.VAR_KEYWORD for p in ps) for r in _RESERVED):
        raise ValueError(f"model {name!r}: the factory must be factory(input_dim, num_classes, *, "
                         "seed, dtype, device, **params)")


MODELS: Registry = Registry("model", loader=_load_builtins, check=_check,
                            hint="add yours with meanfield.models.register_model in a --plugin file")


def register_model(name: str, factory: Callable[..., Any], description: str = "", *,
                   overwrite: bool = False) -> ModelEntry:
    """Register ``factory(input_dim, num_classes, *, seed, dtype, device, **params)`` as ``name``.

    Its keyword parameters after ``device`` (with defaults) become the model's parameters.

    Raises:
        ValueError: a taken name (built-ins cannot be replaced; user entries with ``overwrite``)
            or a factory without that signature.
    """
    entry = ModelEntry(factory, description or _first_line(factory))
    return MODELS.register(name, entry, overwrite=overwrite)


def unregister_model(name: str) -> None:
    """Remove a user-registered model (built-ins cannot be removed)."""
    MODELS.unregister(name)


def get_model(name: str) -> ModelEntry:
    """The entry of that name. Raises ValueError listing the valid ones."""
    return MODELS.get(name)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return MODELS.list()


def describe_model(name: str) -> dict:
    """``{"name", "description", "params": {param: default}}`` of one model."""
    e = get_model(name)
    return {"name": name, "description": e.description, "params": e.params()}


def build_model(spec, input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
                dtype: torch.dtype | str = torch.float32, device=None, **overrides):
    """Build the model of a :class:`~meanfield.study.spec.ModelSpec` (or a registered name).

    Args:
        spec: a ``ModelSpec`` (name and parameters) or a model name.
        input_dim: d, the flattened input dimension.
        num_classes: C.
        seed, dtype, device: of the initialisation and parameters.
        **overrides: parameters replacing the spec's (e.g. per-arm widths).

    Raises:
        ValueError: unknown model (listing the valid ones) or a parameter it does not take
            (listing its parameters).
    """
    name, params = (spec, {}) if isinstance(spec, str) else (spec.name, spec.kwargs)
    entry = get_model(name)
    params = {**params, **overrides}
    valid = entry.params()
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(entry.factory).parameters.values())
    bad = [k for k in params if k not in valid]
    if bad and not takes_any:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, bad))} for model {name!r}; its "
                         f"parameters: {', '.join(valid) or '(none)'}")
    return entry.factory(input_dim, num_classes, seed=seed, dtype=dtype, device=device, **params)


def _resnet18(input_dim: int, num_classes: int, *, seed: Optional[int] = 0,
              dtype: torch.dtype = torch.float32, device=None, in_channels: int = 3,
              widths: tuple = (64, 128, 256, 512), feature_dim: Optional[int] = None,
              reduce: str = "linear"):
    """ResNet-18 (CIFAR variant) on images (n, in_channels, h, w), features optionally reduced to feature_dim.

    ``widths``: the four stage widths; ``reduce``: linear or last_block (:mod:`meanfield.deep.resnet`);
    train with ``train.input_shape``.
    """
    from .deep.resnet import ResNet18
    if int(input_dim) % int(in_channels):
        raise ValueError(f"input_dim {input_dim} is not a multiple of in_channels={in_channels}")
    return ResNet18(int(in_channels), num_classes, widths=tuple(widths), feature_dim=feature_dim,
                    reduce=reduce, seed=seed, dtype=_dtype(dtype), device=device)


RESNET18 = ModelEntry(_resnet18, _first_line(_resnet18))
