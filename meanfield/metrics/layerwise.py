"""Collapse at every layer: one table, one row per layer (finite nets and mean-field nets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .core import ALL_FIELDS, NCMetrics
from .measures import neural_collapse, particle_neural_collapse


@dataclass(frozen=True)
class LayerOutput:
    """One layer's output on the samples: name, features (n, q), the weight that produced them,
    and the classifier (the next layer's weight and bias when it maps to the C outputs)."""

    name: str
    H: Tensor
    weight: Optional[Tensor] = None
    classifier: Optional[Tensor] = None
    bias: Optional[Tensor] = None


@dataclass(frozen=True)
class LayerCollapse:
    """One row: layer ``index`` (0 = first), its ``name``, feature dimension ``dim``, the metrics."""

    index: int
    name: str
    dim: int
    metrics: NCMetrics


@dataclass(frozen=True)
class LayerwiseCollapse:
    """The table of :func:`layerwise_collapse` (rows first layer to output)."""

    rows: tuple

    def to_rows(self) -> list[dict]:
        """Flat dicts ``{"layer", "index", "dim", <every NCMetrics scalar>}``."""
        return [{"layer": r.name, "index": r.index, "dim": r.dim, **r.metrics.as_dict()} for r in self.rows]

    def column(self, name: str) -> list:
        """One metric across layers."""
        if name not in ALL_FIELDS:
            raise ValueError(f"unknown metric {name!r}; valid: {', '.join(ALL_FIELDS)}")
        return [getattr(r.metrics, name) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


def _cls(model) -> tuple[Tensor, Optional[Tensor]]:
    b = getattr(model.classifier, "bias", None)
    return model.classifier.weight.detach(), None if b is None else b.detach()


@torch.no_grad()
def layer_outputs(model: nn.Module, X: Tensor) -> list[LayerOutput]:
    """The output of every layer of a model of :mod:`meanfield.deep.models` (eval mode).

    DeepHomogeneousMLP / MLP: every hidden activation, then the logits; ConvNet: every conv block's
    activation (flattened), the pooled vector, the fc features, the logits; TwoLayerMeanField: the
    hidden activations, the logits; any other model with ``features`` and ``classifier``: the
    penultimate features and the logits.
    """
    from ..deep.models import MLP, ConvNet, DeepHomogeneousMLP, TwoLayerMeanField
    was = model.training
    model.eval()
    try:
        W, b = _cls(model)
        outs: list[LayerOutput] = []
        if isinstance(model, (DeepHomogeneousMLP, MLP)):
            act = torch.relu if isinstance(model, DeepHomogeneousMLP) else model.act.fn
            h = X.flatten(1)
            for i, lin in enumerate(model.hidden):
                h = act(lin(h))
                last = i == len(model.hidden) - 1
                outs.append(LayerOutput(f"hidden{i + 1}", h, lin.weight.detach(),
                                        W if last else None, b if last else None))
        elif isinstance(model, ConvNet):
            h, conv, k = X, None, 0
            for mod in model.body:
                h = mod(h)
                if isinstance(mod, nn.Conv2d):
                    conv = mod.weight.detach()
                if isinstance(mod, nn.ReLU):
                    k += 1
                    outs.append(LayerOutput(f"conv{k}", h.flatten(1), conv))
            outs.append(LayerOutput("pool", h.flatten(1)))
            h = torch.relu(model.fc(h))
            outs.append(LayerOutput("fc", h, model.fc.weight.detach(), W, b))
        elif isinstance(model, TwoLayerMeanField):
            outs.append(LayerOutput("hidden", model.features(X), model.w.detach(), W, b))
        else:
            outs.append(LayerOutput("features", model.features(X), None, W, b))
        outs.append(LayerOutput("output", model(X).detach(), W))
        return outs
    finally:
        model.train(was)


def model_samples(model: nn.Module, samples):
    """(X, y, p, C) on the model's device and dtype; a tuple ``(X, y[, p])`` may hold images."""
    from ..data.base import as_samples
    p0 = next(model.parameters())
    if isinstance(samples, (tuple, list)) and torch.as_tensor(samples[0]).dim() > 2:
        X = torch.as_tensor(samples[0]).to(dtype=p0.dtype, device=p0.device)
        y = torch.as_tensor(samples[1], device=p0.device)
        p = None if len(samples) < 3 else torch.as_tensor(samples[2], device=p0.device)
        return X, y, p, None
    s = as_samples(samples, dtype=p0.dtype, device=p0.device)
    return s.X, s.y, s.p, s.num_classes


def layerwise_collapse(model, samples, *, rtol: Optional[float] = None, strict: Optional[bool] = False,
                       backend: str = "auto", system: int = 0) -> LayerwiseCollapse:
    """Every collapse measure at the output of every layer, as one table.

    The classifier of a layer is the next layer's weight (and bias) where that layer maps to the C
    outputs (the penultimate layer); other layers get the measures that need no classifier. The
    last row is the output layer (the logits as features).

    Args:
        model: a model of :mod:`meanfield.deep.models` (DeepHomogeneousMLP, MLP, ConvNet,
            TwoLayerMeanField; others through ``features``/``classifier``) or a mean-field
            :class:`meanfield.Particles` (its hidden layer through :func:`particle_neural_collapse`,
            then its outputs).
        samples: :class:`meanfield.data.Samples` or ``(X, y[, p])``.
        rtol, strict: as :func:`neural_collapse` (default ``strict=False``: an undefined measure at
            one layer, e.g. dead features, is None with a reason, never an exception).
        backend, system: for Particles.

    Returns:
        :class:`LayerwiseCollapse` (``.rows``, ``.to_rows()``, ``.column(name)``).
    """
    from ..data.base import as_samples
    from ..particles import Particles
    kw = dict(rtol=rtol, strict=strict)
    if isinstance(model, Particles):
        s = as_samples(samples, dtype=model.dtype, device=model.device)
        net = model.select(int(system))
        hid = particle_neural_collapse(model, s, backend=backend, system=system, **kw)
        f = net.predict(s.X, backend=backend)[0]
        out = neural_collapse(f, s.y, weights=s.p, num_classes=s.num_classes, **kw)
        return LayerwiseCollapse((LayerCollapse(0, "hidden", net.m, hid),
                                  LayerCollapse(1, "output", f.shape[1], out)))
    if not isinstance(model, nn.Module) or not hasattr(model, "classifier"):
        raise ValueError(f"model must be a network with features/classifier or Particles; got {type(model).__name__}")
    X, y, p, C = model_samples(model, samples)
    rows = []
    for i, o in enumerate(layer_outputs(model, X)):
        m = neural_collapse(o.H, y, classifier=o.classifier, bias=o.bias, weights=p,
                            num_classes=C, **kw)
        rows.append(LayerCollapse(i, o.name, o.H.shape[1], m))
    return LayerwiseCollapse(tuple(rows))
