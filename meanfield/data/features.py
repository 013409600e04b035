"""Features of one layer of a trained network, as a distribution the rest of the package accepts.

A *backbone* (a finite net of :mod:`meanfield.models`: ``mlp``, ``deep``, ``convnet``, or any
model with the same layer protocol) is trained on a source distribution (``digits``,
``mnist_subset``, ``mnist1d``, ``mnist`` / ``cifar10`` from a folder, ...) by
:func:`meanfield.deep.train.train`, or loaded from a weights-only file; then the activations of
one of its layers on the source samples, with their labels and masses, become weighted point
masses :func:`meanfield.data.point_masses` ``(H, y, p)``: a head (mean-field particles or any
finite net) is trained on them like on any other distribution (``--set data=features
--set data.layer=2``).

Layers are numbered from the input: ``0`` is the input itself (flattened), ``1 .. L-1`` the hidden
activations after each hidden layer (after the nonlinearity), ``L`` the outputs (logits), with
``L = num_layers(model)``. For a :class:`~meanfield.deep.models.ConvNet` with B conv blocks,
layers ``1 .. B`` are the flattened outputs of the blocks, ``B + 1`` the ReLU features of its
hidden linear layer, ``B + 2`` the logits.

The backbone is trained once per configuration (an in-memory cache keyed by every parameter, and
a weights-only file cache shared by processes: sweep workers, a later plot; see
:func:`_disk_path`), so the layers, heads, decays and seeds of a sweep share it. A user's own trained model enters as
a weights-only state dict (``torch.load(..., weights_only=True)``, never an arbitrary pickle) plus
its description from the models registry (``backbone``, ``width``, ``activation``): see
:func:`features` (``backbone_file``) and :func:`layer_samples`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .base import Samples
from .core import PointMasses

__all__ = ["num_layers", "layer_features", "train_backbone", "layer_samples", "features",
           "BACKBONES"]

BACKBONES = ("mlp", "deep", "convnet", "two_layer")


def _stack(model) -> Optional[list]:
    hidden = getattr(model, "hidden", None)
    return list(hidden) if isinstance(hidden, nn.ModuleList) else None


def num_layers(model: nn.Module) -> int:
    """L: the index of the output layer (layers are 0 = input, ..., L = logits).

    Raises:
        ValueError: a model that is neither an MLP-like stack (``hidden`` + ``classifier``) nor a
            ConvNet (``body`` + ``fc`` + ``classifier``).
    """
    hidden = _stack(model)
    if hidden is not None:
        return len(hidden) + 1
    if hasattr(model, "body") and hasattr(model, "fc"):
        return len(_conv_blocks(model)) + 2
    raise ValueError(f"{type(model).__name__} has no known layer structure: a backbone needs "
                     "`hidden` (a ModuleList) and `classifier` (MLP, deep) or `body`, `fc` and "
                     "`classifier` (ConvNet)")


def _conv_blocks(model) -> list[list[nn.Module]]:
    """The ConvNet body split after each MaxPool2d (the pooling/flatten tail dropped)."""
    blocks, cur = [], []
    for m in model.body:
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.Flatten)):
            break
        cur.append(m)
        if isinstance(m, nn.MaxPool2d):
            blocks.append(cur)
            cur = []
    return blocks


def _check_layer(layer, L: int) -> int:
    if isinstance(layer, bool) or int(layer) != layer or not 0 <= int(layer) <= L:
        raise ValueError(f"layer must be an integer in 0..{L} (0 = input, {L} = logits), got {layer!r}")
    return int(layer)


@torch.no_grad()
def layer_features(model: nn.Module, X: Tensor, layer: int, *,
                   input_shape: Optional[Sequence[int]] = None, batch: int = 4096) -> Tensor:
    """Activations of one layer of ``model`` on ``X``, in eval mode (mode restored).

    Args:
        model: a backbone (see the module docstring for the numbering).
        X ((n, d) Tensor): inputs, rows flattened.
        layer: 0 (input) .. ``num_layers(model)`` (logits).
        input_shape: reshape rows to ``(n, *input_shape)`` (images of a conv net).
        batch: rows per forward pass.

    Returns:
        (n, q) Tensor in the model's dtype.
    """
    layer = _check_layer(layer, num_layers(model))
    p0 = next(model.parameters())
    X = X.to(dtype=p0.dtype, device=p0.device)
    was = model.training
    model.eval()
    try:
        return torch.cat([_one(model, X[i:i + batch], layer, input_shape)
                          for i in range(0, X.shape[0], batch)]).flatten(1)
    finally:
        model.train(was)


def _one(model, x: Tensor, layer: int, input_shape) -> Tensor:
    if layer == 0:
        return x
    x = x.view(x.shape[0], *input_shape) if input_shape else x
    hidden = _stack(model)
    if hidden is not None:
        act = getattr(model, "act", None)
        h = x.flatten(1)
        for lin in hidden[:layer]:
            h = act.fn(lin(h)) if act is not None else torch.relu(lin(h))
        return model.classifier(h) if layer == len(hidden) + 1 else h
    blocks = _conv_blocks(model)
    h = x
    for blk in blocks[:layer]:
        for m in blk:
            h = m(h)
    if layer <= len(blocks):
        return h.flatten(1)
    h = torch.relu(model.fc(model.body(x)))
    return model.classifier(h) if layer == len(blocks) + 2 else h


def train_backbone(samples: Samples, backbone: str = "mlp", *, width=(64, 32, 16),
                   activation: str = "relu", epochs: int = 100, lr: float = 1e-3,
                   weight_decay: float = 5e-4, batch_size: Optional[int] = 128, seed: int = 0,
                   state: Optional[dict] = None) -> nn.Module:
    """A backbone of the models registry, trained on ``samples`` with cross-entropy (Adam).

    Args:
        samples: the source data (C >= 2 classes).
        backbone: ``mlp`` (biases, ``activation``), ``deep`` (bias-free ReLU), ``two_layer`` or
            ``convnet`` (images: ``samples.image_shape``).
        width: hidden widths of ``mlp`` / ``deep`` (one per hidden layer; depth = len + 1), or
            the conv channels of ``convnet``; ``two_layer`` uses the first.
        epochs, lr, weight_decay, batch_size, seed: the training (``epochs = 0``: untrained).
        state: a state dict to load instead of training (a user's own weights).

    Returns:
        the model in eval mode, float32.
    """
    from ..deep.train import TrainConfig, train
    from ..models import build_model
    from ..study.spec import ModelSpec
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)} (or train "
                         "your own model and pass its layer's features to point_masses)")
    widths = (int(width),) if isinstance(width, (int, float)) else tuple(int(w) for w in width)
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"width must be positive hidden widths, e.g. 64,32,16; got {width!r}")
    C = samples.num_classes
    shape = None
    if backbone == "convnet":
        if samples.image_shape is None:
            raise ValueError("backbone=convnet needs image data (samples.image_shape); use "
                             "backbone=mlp for vectors")
        shape = samples.image_shape
        spec = ModelSpec("convnet", {"in_channels": shape[0], "channels": widths})
    elif backbone == "two_layer":
        spec = ModelSpec("two_layer", {"width": widths[0], "activation": activation})
    elif backbone == "deep":
        spec = ModelSpec("deep", {"width": widths, "depth": len(widths) + 1})
    else:
        spec = ModelSpec("mlp", {"width": widths, "depth": len(widths) + 1, "activation": activation})
    net = build_model(spec, samples.d, C, seed=seed, dtype=torch.float32)
    if state is not None:
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"the weights do not fit backbone={backbone}, width={widths}: "
                             f"{str(e).splitlines()[0]}; give the backbone's own description") from None
    elif epochs > 0:
        cfg = TrainConfig(optimizer="adam", lr=lr, epochs=int(epochs), batch_size=batch_size,
                          weight_decay=weight_decay, loss="cross_entropy", seed=seed,
                          log_every=max(1, int(epochs)), input_shape=shape)
        train(net, samples.to(dtype=torch.float32), cfg, progress=False)
    net.eval()
    net.input_shape = shape
    return net


def layer_samples(model: nn.Module, samples: Samples, layer: int, *,
                  standardise: str = "global") -> Samples:
    """The features of one layer of ``model`` on ``samples`` as :class:`Samples` (float64).

    Labels, masses and class names are the source's; ``standardise`` (``global``, ``feature``,
    ``none``) rescales the features (an affine map: hulls, separability and collapse are
    unchanged, only the head's step sizes see it).
    """
    from .real import standardise as _std
    H = layer_features(model, samples.X, layer, input_shape=getattr(model, "input_shape", None))
    s = Samples(H.to(torch.float64).contiguous(), samples.y, samples.p.to(torch.float64),
                samples.num_classes, samples.class_names)
    return _std(s, standardise)


# ------------------------------------------------------------------ the registered distribution
def _source(source: str, folder: str, per_class: int, classes: tuple, data_seed: int) -> Samples:
    from .real import select_classes
    from .registry import get_distribution
    if not isinstance(source, str) or not source or source == "features":
        raise ValueError(f"source must name a registered distribution (digits, mnist_subset, "
                         f"mnist1d, mnist with folder=...), got {source!r}")
    dist = get_distribution(source, **({"folder": folder} if folder else {}))
    C = getattr(dist, "num_classes", None)
    n = None if (per_class is None or C is None) else int(per_class) * int(C)
    s = dist.sample(n, seed=int(data_seed), dtype=torch.float64)
    if classes:
        s = select_classes(s, classes)
    return s


@functools.lru_cache(maxsize=16)
def _backbone_cached(key: tuple) -> tuple:
    (source, folder, per_class, classes, data_seed, backbone, width, activation, epochs, lr,
     weight_decay, backbone_seed, backbone_file) = key
    s = _source(source, folder, per_class, classes, data_seed)
    state = None
    if backbone_file:
        path = Path(backbone_file)
        if not path.is_file():
            raise ValueError(f"backbone_file {backbone_file!r} is not a file; give a weights-only "
                             "state dict saved with torch.save(model.state_dict(), path)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, garbage or a full pickle: name the file
            raise ValueError(f"{path} is not a weights-only state dict ({type(e).__name__}); "
                             "save it with torch.save(model.state_dict(), path)") from None
    disk = _disk_path(key) if state is None and epochs > 0 else None
    if disk is not None and disk.is_file():
        try:
            state = torch.load(disk, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache file is retrained and replaced
            state = None
    net = train_backbone(s, backbone, width=width, activation=activation, epochs=epochs, lr=lr,
                         weight_decay=weight_decay, seed=backbone_seed, state=state)
    if disk is not None and state is None:
        try:
            from ..record import atomic_torch_save
            disk.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(net.state_dict(), disk)
        except OSError:
            pass
    return net, s


_DISK_VERSION = 1


def fixed_by_description(folder: str = "", backbone_file: str = "", **_) -> bool:
    """True when :func:`features`' parameters fix the features (so results computed from them may
    be cached under their description): False for data read from a user's folder or weights from
    a user's file, which may change under the same name."""
    return not folder and not backbone_file


def _disk_path(key: tuple) -> Optional[Path]:
    """Where a trained backbone of this description is cached across processes (sweep workers,
    the atlas's later plot), or None: caching off (``MEANFIELD_BACKBONE_CACHE=0``), or data read
    from a user's folder (which may change under the same name). Directory:
    ``$MEANFIELD_CACHE_DIR/backbones`` (default ``~/.cache/meanfield/backbones``); the file name
    hashes every parameter, the torch version and this module's cache version."""
    import hashlib
    from ..cache import cache_dir, results_cache_on
    if not results_cache_on() or not fixed_by_description(folder=key[1]):
        return None
    h = hashlib.sha1(repr((key, torch.__version__, _DISK_VERSION)).encode()).hexdigest()[:20]
    return cache_dir("backbones") / f"{h}.pt"


@functools.lru_cache(maxsize=64)
def _features_cached(key: tuple, layer: int, standardise: str) -> Samples:
    net, s = _backbone_cached(key)
    return layer_samples(net, s, layer, standardise=standardise)


def backbone_for(**params) -> tuple[nn.Module, Samples]:
    """The (cached) trained backbone and source samples of :func:`features`' parameters."""
    return _backbone_cached(_key(**params))


def _key(source="digits", folder="", per_class=50, classes=(), data_seed=0, backbone="mlp",
         width=(64, 32, 16), activation="relu", epochs=60, lr=3e-3, weight_decay=5e-4,
         backbone_seed=0, backbone_file="", **_) -> tuple:
    width = (int(width),) if isinstance(width, (int, float)) else tuple(int(w) for w in width)
    classes = tuple(int(c) for c in (classes or ()))
    if per_class is not None and (int(per_class) != per_class or per_class < 1):
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    return (source, str(folder or ""), None if per_class is None else int(per_class), classes,
            int(data_seed), backbone, width, activation, int(epochs), float(lr),
            float(weight_decay), int(backbone_seed), str(backbone_file or ""))


def features(source: str = "digits", layer: int = 2, *, backbone: str = "mlp",
             width: tuple = (64, 32, 16), activation: str = "relu", epochs: int = 60,
             lr: float = 3e-3, weight_decay: float = 5e-4, per_class: int = 50,
             classes: tuple = (), folder: str = "", data_seed: int = 0, backbone_seed: int = 0,
             backbone_file: str = "", standardise: str = "global") -> PointMasses:
    """Layer ``layer`` of a backbone trained on ``source``, as weighted point masses (exact).

    Args:
        source: a registered distribution with labels (``digits``, ``mnist_subset``,
            ``mnist1d``, ``mnist`` / ``cifar10`` with ``folder``).
        layer: 0 (the input) .. len(width) + 1 (the logits); see the module docstring.
        backbone: ``mlp``, ``deep``, ``two_layer`` or ``convnet``.
        width: hidden widths (``mlp``/``deep``: depth = len(width) + 1) or conv channels.
        activation: of the ``mlp`` / ``two_layer`` backbone.
        epochs: training epochs of the backbone (Adam, cross-entropy, mini-batches of 128);
            0 leaves it at its random initialisation.
        lr, weight_decay: of the backbone's training.
        per_class: source samples per class (balanced; the same samples train the backbone and
            carry the features).
        classes: keep only these source classes (relabelled 0..k-1), e.g. ``3,8``.
        folder: the data folder of ``mnist`` / ``cifar10``.
        data_seed, backbone_seed: seeds of the subsample and of the backbone's init/batches.
        backbone_file: a weights-only state dict of a backbone of this description (loaded with
            ``weights_only=True``) used instead of training.
        standardise: ``global``, ``feature`` or ``none`` scaling of the features.

    Returns:
        :class:`PointMasses` of the features (n and the sampling seed are ignored: the
        backbone, its samples and its features are fixed by the parameters).
    """
    key = _key(source=source, folder=folder, per_class=per_class, classes=classes,
               data_seed=data_seed, backbone=backbone, width=width, activation=activation,
               epochs=epochs, lr=lr, weight_decay=weight_decay, backbone_seed=backbone_seed,
               backbone_file=backbone_file)
    net, _ = _backbone_cached(key)
    layer = _check_layer(layer, num_layers(net))
    s = _features_cached(key, layer, str(standardise))
    return PointMasses(s.X, s.y, s.p, num_classes=s.num_classes, class_names=s.class_names)
