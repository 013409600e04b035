"""Heads on frozen features: named presets of the models registry, one loss / decay / horizon.

A *head* is a network trained on the features of a frozen backbone
(:func:`meanfield.data.features.features`). Every head goes through the generic ``collapse``
machinery (:mod:`meanfield.experiments.collapse`): the mean-field head follows the Wasserstein
flow (``flow``), the finite heads the trainer (``train``), all with the same loss ``flow.loss``,
weight decay ``flow.lam`` and the same columns (the regime's statistic, NC1, NC3, the output
statistics). This module only names the presets and reads a head's activation:

==============  ==============================================================================
name            model
==============  ==============================================================================
``meanfield``   mean-field two-layer head, ``m`` particles (Wasserstein gradient flow)
``w10``         finite two-layer head with biases, width 10
``w100``        width 100
``w1000``       width 1000
``w10000``      width 10 000
``deep2``       MLP head, depth 2 (one hidden layer, width 256)
``deep3``       MLP head, depth 3 (two hidden layers of width 256)
==============  ==============================================================================

Example:
    >>> from meanfield.heads import head_spec
    >>> head_spec("w10", activation="tanh")
    ModelSpec(name='two_layer', params=(('activation', 'tanh'), ('width', 10)))
"""

from __future__ import annotations

from typing import Mapping

from .study.spec import ModelSpec

__all__ = ["HEADS", "head_spec", "head_activation", "head_overrides"]

HEADS: Mapping[str, tuple[str, dict]] = {
    "meanfield": ("meanfield", {"m": 300}),
    "w10": ("two_layer", {"width": 10}),
    "w100": ("two_layer", {"width": 100}),
    "w1000": ("two_layer", {"width": 1000}),
    "w10000": ("two_layer", {"width": 10000}),
    "deep2": ("mlp", {"width": 256, "depth": 2}),
    "deep3": ("mlp", {"width": 256, "depth": 3}),
}


def _preset(name: str) -> tuple[str, dict]:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
    return HEADS[name]


def head_spec(name: str, *, activation: str = "relu", **params) -> ModelSpec:
    """The :class:`ModelSpec` of a named head with its activation (and any other parameter)."""
    model, base = _preset(name)
    return ModelSpec(model, {**base, "activation": activation, **params})


def head_overrides(name: str, *, activation: str = "relu") -> dict:
    """``--set``-style overrides selecting a named head: ``{"model": ..., "model.width": ...}``."""
    model, base = _preset(name)
    return {"model": model, **{f"model.{k}": v for k, v in base.items()},
            "model.activation": activation}


def head_activation(model: ModelSpec) -> str:
    """The activation of a head's hidden layer(s): ``model.activation``, or ``relu`` for the
    bias-free homogeneous ``deep`` net (which has no activation parameter)."""
    kw = model.kwargs
    if "activation" in kw:
        return str(kw["activation"])
    if model.name in ("deep", "meanfield", "two_layer", "mlp"):
        return "relu"   # the registry's default activation of these models
    raise ValueError(f"cannot tell the activation of model {model.name!r}; give it an "
                     "`activation` parameter")
