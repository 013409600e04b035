"""Finite-width networks: deep homogeneous ReLU MLP, MLP with biases, small conv net, two-layer net.

Every model here follows one small protocol used by training, metrics and the fixed-ETF classifier:

- ``features(x)``: the penultimate features h(x), shape ``(n, feature_dim)``;
- ``classifier``: the last layer, a module with ``.weight (C, feature_dim)`` and ``.bias`` (or None);
  ``forward(x) = classifier(features(x))``;
- ``layers()``: the parameters grouped by layer, first to last (for per-layer weight decay and the
  layer-balance identity).

:class:`TwoLayerMeanField` is the mean-field parametrisation of :class:`meanfield.Particles`,

.. math::

    f(x) = \\frac1m \\sum_{i=1}^m a_i\\, \\sigma(w_i\\cdot x + b_i),

so a width-m net trained by SGD with learning rate ``eta * m`` and torch ``weight_decay = lambda/m``
on the risk ``sum_j p_j l(f(x_j), y_j)`` is the Euler scheme, step eta, of the flow (docs/science.md §2).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..activations import get_activation

__all__ = ["DeepHomogeneousMLP", "MLP", "ConvNet", "TwoLayerMeanField", "build_model", "list_models"]


def _gen(seed: Optional[int]) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def _check_pos(**kw) -> None:
    for name, v in kw.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _init_linear(lin: nn.Linear, g: torch.Generator, gain: float = math.sqrt(2.0)) -> None:
    """He (Kaiming-normal) init from a private generator (deterministic given the seed)."""
    with torch.no_grad():
        std = gain / math.sqrt(lin.in_features)
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=lin.weight.dtype) * std)
        if lin.bias is not None:
            lin.bias.zero_()


class _Base(nn.Module):
    classifier: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    @property
    def feature_dim(self) -> int:
        return self.classifier.weight.shape[1]

    @property
    def num_classes(self) -> int:
        return self.classifier.weight.shape[0]


def _build_stack(net: nn.Module, d_in: int, width, depth: int, num_classes: int, *, bias: bool,
                 init_scale: float, seed, dtype, device) -> None:
    """``net.hidden`` (depth - 1 linear layers) and ``net.classifier``, He-initialised from ``seed``."""
    widths = [width] * (depth - 1) if isinstance(width, int) else list(width)
    _check_pos(d_in=d_in, depth=depth, num_classes=num_classes)
    if depth < 2 or len(widths) != depth - 1 or any(int(w) != w or w < 1 for w in widths):
        raise ValueError(f"depth must be >= 2 with depth - 1 positive hidden widths; got "
                         f"depth={depth}, widths={widths}")
    dims = [d_in] + widths
    net.hidden = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=bias) for i in range(depth - 1))
    net.classifier = nn.Linear(dims[-1], num_classes, bias=bias)
    g = _gen(seed)
    for lin in list(net.hidden) + [net.classifier]:
        _init_linear(lin, g, math.sqrt(2.0) * init_scale)
    net.to(dtype=dtype, device=device)


class DeepHomogeneousMLP(_Base):
    """Bias-free ReLU network ``f = W_L relu(W_{L-1} ... relu(W_1 x))`` (positively 1-homogeneous in
    every W_k, the setting of docs/science.md §3.4).

    Args:
        d_in: input dimension.
        width: hidden width (an int for every hidden layer, or one int per hidden layer).
        depth: number of weight matrices L >= 2 (L - 1 hidden layers).
        num_classes: C, outputs.
        init_scale: multiplies the He initialisation.
        seed: initialisation seed.
        dtype, device: of the parameters.

    ``features(x) = relu(W_{L-1} ... relu(W_1 x))``, ``classifier = W_L`` (no bias).
    """

    def __init__(self, d_in: int, width: int | Sequence[int], depth: int, num_classes: int, *,
                 init_scale: float = 1.0, seed: Optional[int] = 0, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        _build_stack(self, d_in, width, depth, num_classes, bias=False, init_scale=init_scale,
                     seed=seed, dtype=dtype, device=device)

    def features(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for lin in self.hidden:
            h = torch.relu(lin(h))
        return h

    def weights(self) -> list[Tensor]:
        """[W_1, ..., W_L]."""
        return [lin.weight for lin in self.hidden] + [self.classifier.weight]

    def layers(self) -> list[list[nn.Parameter]]:
        return [[p] for p in self.weights()]


class MLP(_Base):
    """ReLU (or any registered activation) MLP with biases.

    Args:
        d_in, width, depth, num_classes: as :class:`DeepHomogeneousMLP`.
        activation: activation registry name.
    """

    def __init__(self, d_in: int, width: int | Sequence[int], depth: int, num_classes: int, *,
                 activation: str = "relu", init_scale: float = 1.0, seed: Optional[int] = 0,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.act = get_activation(activation)
        _build_stack(self, d_in, width, depth, num_classes, bias=True, init_scale=init_scale,
                     seed=seed, dtype=dtype, device=device)

    def features(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for lin in self.hidden:
            h = self.act.fn(lin(h))
        return h

    def layers(self) -> list[list[nn.Parameter]]:
        return [list(m.parameters()) for m in list(self.hidden) + [self.classifier]]


class ConvNet(_Base):
    """A small conv net for images ``(n, c, h, w)``: [conv3x3 - BN - ReLU - maxpool2] x blocks,
    global average pool, a hidden linear layer of ``feature_dim`` units with ReLU, a linear classifier.

    Args:
        in_channels: c.
        num_classes: C.
        channels: channels of the conv blocks, e.g. (32, 64).
        feature_dim: width of the penultimate layer (C for a fixed-ETF classifier).
        batch_norm: use BatchNorm2d after every conv (eval mode freezes its statistics).
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: Sequence[int] = (32, 64),
                 feature_dim: int = 128, batch_norm: bool = True, seed: Optional[int] = 0,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        _check_pos(in_channels=in_channels, num_classes=num_classes, feature_dim=feature_dim)
        if not channels:
            raise ValueError("channels must name at least one conv block, e.g. (32, 64)")
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(0 if seed is None else int(seed))  # conv init uses the global RNG
        try:
            blocks, c = [], in_channels
            for ch in channels:
                blocks += [nn.Conv2d(c, ch, 3, padding=1, bias=not batch_norm)]
                if batch_norm:
                    blocks.append(nn.BatchNorm2d(ch))
                blocks += [nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
                c = ch
            self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(c, feature_dim)
            self.classifier = nn.Linear(feature_dim, num_classes)
        finally:
            torch.random.set_rng_state(torch_state)
        self.to(dtype=dtype, device=device)

    def features(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"ConvNet needs images (n, c, h, w); got shape {tuple(x.shape)}")
        return torch.relu(self.fc(self.body(x)))

    def layers(self) -> list[list[nn.Parameter]]:
        out = [list(m.parameters()) for m in self.body if any(True for _ in m.parameters())]
        return out + [list(self.fc.parameters()), list(self.classifier.parameters())]


class _OuterLayer(nn.Module):
    """The outer weights of :class:`TwoLayerMeanField` seen as a classifier: ``h -> h a / m``."""

    def __init__(self, a: Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    @property
    def weight(self) -> Tensor:
        """(k, m): the effective classifier of the features sigma(w.x + b) (includes 1/m)."""
        return self.a.T / self.a.shape[0]

    bias = None

    def forward(self, h: Tensor) -> Tensor:
        return h @ self.a / self.a.shape[0]


class TwoLayerMeanField(_Base):
    """Two-layer net in the mean-field parametrisation of :class:`meanfield.Particles` (one system).

    Args:
        m: width (number of neurons).
        d: input dimension.
        k: outputs.
        activation: activation registry name.
        scale_a, scale_w, scale_b, seed, dtype, device: Gaussian init as ``Particles.gaussian``.

    Parameters ``w (m, d)``, ``b (m,)`` (``self.w``, ``self.b``) and ``a (m, k)``
    (``self.classifier.a``); ``features(x) = sigma(x w^T + b)`` (n, m).
    """

    def __init__(self, m: int, d: int, k: int = 1, activation: str = "relu", *, scale_a: float = 1.0,
                 scale_w: float = 1.0, scale_b: float = 1.0, seed: Optional[int] = 0,
                 dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        _check_pos(m=m, d=d, k=k)
        self.activation = get_activation(activation).name
        g = _gen(seed)
        a = torch.randn(m, k, generator=g, dtype=dtype) * scale_a
        w = torch.randn(m, d, generator=g, dtype=dtype) * scale_w
        b = torch.randn(m, generator=g, dtype=dtype) * scale_b
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(b)
        self.classifier = _OuterLayer(a)
        self.to(device=device)

    @property
    def m(self) -> int:
        return self.w.shape[0]

    @property
    def a(self) -> Tensor:
        return self.classifier.a

    def features(self, x: Tensor) -> Tensor:
        return get_activation(self.activation).fn(x.flatten(1) @ self.w.T + self.b)

    def layers(self) -> list[list[nn.Parameter]]:
        """[[w, b], [a]]: inner then outer (the flow's ``lam_w`` then ``lam_a``)."""
        return [[self.w, self.b], [self.classifier.a]]

    @classmethod
    def from_particles(cls, particles, system: int = 0) -> "TwoLayerMeanField":
        """The net whose neurons are those of system ``system`` of a :class:`meanfield.Particles`."""
        P = particles.select(system) if particles.batch > 1 else particles
        act = P.activation if isinstance(P.activation, str) else P.activation.name
        net = cls(P.m, P.d, P.k, act, dtype=P.dtype, device=P.device)
        with torch.no_grad():
            net.w.copy_(P.w[0])
            net.b.copy_(P.b[0])
            net.classifier.a.copy_(P.a[0])
        return net

    def to_particles(self):
        """This net as a batch-of-one :class:`meanfield.Particles` (detached copies)."""
        from ..particles import Particles
        return Particles(self.a.detach().clone()[None], self.w.detach().clone()[None],
                         self.b.detach().clone()[None], self.activation)


def _mlp_homog(d_in, num_classes, *, width=64, depth=3, **kw):
    return DeepHomogeneousMLP(d_in, width, depth, num_classes, **kw)


def _mlp(d_in, num_classes, *, width=64, depth=3, **kw):
    return MLP(d_in, width, depth, num_classes, **kw)


def _conv(d_in, num_classes, **kw):
    return ConvNet(d_in, num_classes, **kw)


_MODELS = {"homogeneous_mlp": _mlp_homog, "mlp": _mlp, "convnet": _conv}


def list_models() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, d_in: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a model by registry name (``homogeneous_mlp``, ``mlp``, ``convnet``; for ``convnet``
    ``d_in`` is the number of input channels).

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    try:
        f = _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_models())}") from None
    return f(d_in, num_classes, **kwargs)
