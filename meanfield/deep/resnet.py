"""A ResNet-18-shaped conv net for CIFAR-shaped images, its closed-form size, synthetic CIFAR-shaped data.

The CIFAR variant of ResNet-18 (He et al. 2016, as commonly used on 32 x 32 inputs): a 3x3 stem
convolution (stride 1, no max-pool) with BatchNorm and ReLU, four stages of two basic blocks
(``conv3x3-BN-ReLU-conv3x3-BN`` plus the identity, or a ``1x1 conv-BN`` projection where the
stride or the width changes, then ReLU) of widths ``(64, 128, 256, 512)`` and strides
``(1, 2, 2, 2)``, global average pooling, a linear classifier. Convolutions have no bias.
With C = 10 classes it has 11,173,962 trainable parameters.

**Reduced feature dimension** (``feature_dim = K``), for a fixed simplex-ETF classifier
(:mod:`meanfield.deep.fixed_etf`), two constructions:

- ``reduce="linear"``: a linear layer ``512 -> K`` (with bias, no activation) after the pooling;
  the features are its output. With no activation no coordinate can die under the frozen ETF
  (the failure of ReLU features, docs/science.md §3.5), but the composition "learned linear map
  then fixed ETF" is itself a learned linear classifier of rank <= K - 1: the trainable count
  is the learned model's (``512 K + K`` either way) and the memory saving is ~0;
- ``reduce="last_block"``: the last basic block's *output* width is K: its second convolution is
  ``512 -> K`` (its first stays ``512 -> 512``) and its shortcut becomes a ``1x1`` projection
  ``512 -> K`` with BatchNorm; its closing ReLU is dropped (so no coordinate dies); the pooled
  K-vector is the feature. This removes most of one ``512 x 512 x 3 x 3`` convolution, about a
  fifth of the network's parameters.

Layout follows :mod:`meanfield.deep.models`: ``features(x)``, ``classifier``, ``layers()``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..data.base import Samples

__all__ = ["ResNet18", "resnet18_num_params", "resnet18_buffer_bytes", "synthetic_cifar", "REDUCE"]

REDUCE = ("linear", "last_block")
WIDTHS = (64, 128, 256, 512)
_STRIDES = (1, 2, 2, 2)


class BasicBlock(nn.Module):
    """``relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))``, inner width ``c_mid`` (default
    ``c_out``); ``last_relu=False`` drops the final ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, c_mid: Optional[int] = None,
                 last_relu: bool = True):
        super().__init__()
        c_mid = c_out if c_mid is None else c_mid
        self.conv1 = nn.Conv2d(c_in, c_mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.conv2 = nn.Conv2d(c_mid, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.last_relu = last_relu

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return torch.relu(out) if self.last_relu else out


class ResNet18(nn.Module):
    """ResNet-18 (CIFAR variant) on images ``(n, in_channels, h, w)``, h, w >= 8.

    Args:
        in_channels: c (3 for CIFAR).
        num_classes: C.
        widths: the four stage widths (ResNet-18: 64, 128, 256, 512; smaller for tests).
        feature_dim: None (features = the pooled ``widths[-1]``-vector) or K (reduced, see ``reduce``).
        reduce: ``linear`` or ``last_block`` (module docstring); used when ``feature_dim`` is set.
        seed, dtype, device: initialisation (torch's default init under ``torch.manual_seed(seed)``;
            the global RNG state is restored afterwards).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, *, widths: Sequence[int] = WIDTHS,
                 feature_dim: Optional[int] = None, reduce: str = "linear", seed: Optional[int] = 0,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("feature_dim", 1 if feature_dim is None else feature_dim), *zip(("width",) * 4, widths)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if len(widths) != 4:
            raise ValueError(f"widths must name the 4 stage widths, e.g. 64,128,256,512; got {widths}")
        if reduce not in REDUCE:
            raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(REDUCE)}")
        self.reduce_mode = reduce if feature_dim is not None else None
        state = torch.random.get_rng_state()
        torch.manual_seed(0 if seed is None else int(seed))
        try:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU())
            blocks, c = [], widths[0]
            for i, (w, s) in enumerate(zip(widths, _STRIDES)):
                blocks.append(BasicBlock(c, w, s))
                last = i == 3 and self.reduce_mode == "last_block"
                blocks.append(BasicBlock(w, int(feature_dim) if last else w, 1, c_mid=w, last_relu=not last))
                c = int(feature_dim) if last else w
            self.blocks = nn.Sequential(*blocks)
            self.reduce = nn.Linear(c, int(feature_dim)) if self.reduce_mode == "linear" else None
            self.classifier = nn.Linear(c if self.reduce is None else int(feature_dim), num_classes)
        finally:
            torch.random.set_rng_state(state)
        self.to(dtype=dtype, device=device)

    def features(self, x: Tensor) -> Tensor:
        """(n, feature_dim) penultimate features."""
        if x.dim() != 4:
            raise ValueError(f"ResNet18 needs images (n, c, h, w); got shape {tuple(x.shape)} "
                             "(set train.input_shape, e.g. 3,32,32)")
        h = self.blocks(self.stem(x)).mean((2, 3))
        return h if self.reduce is None else self.reduce(h)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    def layers(self) -> list[list[nn.Parameter]]:
        """Parameters by module: stem, every block, the reduction (if any), the classifier."""
        mods = [self.stem, *self.blocks] + ([self.reduce] if self.reduce is not None else [])
        return [list(m.parameters()) for m in mods + [self.classifier] if any(True for _ in m.parameters())]


def _block_params(c_in: int, c_mid: int, c_out: int, stride: int) -> tuple[int, int, int]:
    """(trainable scalars, BatchNorm layers, BatchNorm channels) of one basic block."""
    p, bn, ch = 9 * c_in * c_mid + 9 * c_mid * c_out + 2 * c_mid + 2 * c_out, 2, c_mid + c_out
    if stride != 1 or c_in != c_out:
        p, bn, ch = p + c_in * c_out + 2 * c_out, bn + 1, ch + c_out
    return p, bn, ch


def _count(in_channels, widths, feature_dim, reduce) -> tuple[int, int, int]:
    """(body scalars incl. the reduction, BatchNorm layers, BatchNorm channels, output width)."""
    widths = tuple(int(w) for w in widths)
    p, bn, ch = 9 * in_channels * widths[0] + 2 * widths[0], 1, widths[0]
    c = widths[0]
    for i, (w, s) in enumerate(zip(widths, _STRIDES)):
        out = int(feature_dim) if (i == 3 and feature_dim is not None and reduce == "last_block") else w
        for (a, b, st) in ((c, w, s), (w, out, 1)):
            dp, dbn, dch = _block_params(a, w, b, st)
            p, bn, ch = p + dp, bn + dbn, ch + dch
        c = out
    if feature_dim is not None and reduce == "linear":
        p += c * int(feature_dim) + int(feature_dim)
        c = int(feature_dim)
    return p, bn, ch, c


def resnet18_num_params(*, in_channels: int = 3, num_classes: int = 10, widths: Sequence[int] = WIDTHS,
                        feature_dim: Optional[int] = None, reduce: str = "linear",
                        fixed_classifier: bool = False) -> int:
    """Trainable scalars of :class:`ResNet18`, counted from the architecture (no model built).

    ``fixed_classifier``: the classifier is a frozen buffer (no weight, no bias trained).
    11,173,962 for the defaults (C = 10).
    """
    if reduce not in REDUCE:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(REDUCE)}")
    p, _, _, c = _count(in_channels, widths, feature_dim, reduce)
    return p if fixed_classifier else p + c * num_classes + num_classes


def resnet18_buffer_bytes(*, in_channels: int = 3, widths: Sequence[int] = WIDTHS,
                          feature_dim: Optional[int] = None, reduce: str = "linear",
                          element_size: int = 4) -> int:
    """Bytes of the BatchNorm buffers: running mean and variance per channel, one int64 counter per layer."""
    _, bn, ch, _ = _count(in_channels, widths, feature_dim, reduce)
    return 2 * ch * element_size + 8 * bn


def synthetic_cifar(per_class: int, num_classes: int = 10, *, image_size: int = 32, noise: float = 1.0,
                    seed: int = 0, template_seed: int = 0, dtype: torch.dtype = torch.float32,
                    device=None) -> Samples:
    """CIFAR-shaped synthetic images: class c is a smooth random 3-channel template T_c plus noise.

    ``T_c`` is a 4 x 4 x 3 standard normal image upsampled bilinearly to ``image_size`` (drawn with
    ``template_seed``, the same for a training and a test set); ``x = T_c + noise * N(0, I)`` with
    ``seed``. Returned flattened ``(n, 3 * image_size**2)`` with ``image_shape = (3, s, s)``, equal
    masses, classes in blocks.

    Raises:
        ValueError: per_class < 1, fewer than 2 classes, noise < 0, image_size < 8.
    """
    if int(per_class) != per_class or per_class < 1 or num_classes < 2 or not noise >= 0 or image_size < 8:
        raise ValueError(f"need per_class >= 1, num_classes >= 2, noise >= 0, image_size >= 8; got "
                         f"{per_class}, {num_classes}, {noise}, {image_size}")
    gt = torch.Generator().manual_seed(int(template_seed))
    T = torch.randn(num_classes, 3, 4, 4, generator=gt, dtype=torch.float64)
    T = nn.functional.interpolate(T, size=(image_size, image_size), mode="bilinear", align_corners=False)
    g = torch.Generator().manual_seed(int(seed))
    y = torch.arange(num_classes).repeat_interleave(int(per_class))
    X = T[y] + noise * torch.randn(y.numel(), 3, image_size, image_size, generator=g, dtype=torch.float64)
    n = y.numel()
    return Samples(X.reshape(n, -1).to(dtype=dtype, device=device), y.to(device),
                   torch.full((n,), 1.0 / n, dtype=dtype, device=device), num_classes,
                   tuple(f"template {c}" for c in range(num_classes)), (3, image_size, image_size))


def state_saving_theory(*, in_channels: int = 3, num_classes: int = 10, widths: Sequence[int] = WIDTHS,
                        reduce: str = "linear", copies: int = 3) -> float:
    """Training-state saving of the fixed-ETF ResNet-18 over the learned one, counted exactly.

    ``1 - (4 k P_fixed + B_fixed + 4 C^2) / (4 k P_learned + B_learned)`` in float32 bytes, with P
    the trainable scalars (:func:`resnet18_num_params`), ``k = copies`` tensors per scalar
    (parameter, gradient and ``k - 2`` optimiser tensors: 3 for SGD with momentum, 4 for Adam),
    B the BatchNorm buffers (:func:`resnet18_buffer_bytes`) and ``C x C`` the frozen ETF buffer.
    """
    kw = dict(in_channels=in_channels, widths=widths)
    p_l = resnet18_num_params(num_classes=num_classes, **kw)
    p_f = resnet18_num_params(num_classes=num_classes, feature_dim=num_classes, reduce=reduce,
                              fixed_classifier=True, **kw)
    b_l = resnet18_buffer_bytes(**kw)
    b_f = resnet18_buffer_bytes(feature_dim=num_classes, reduce=reduce, **kw) + 4 * num_classes ** 2
    return 1.0 - (4 * copies * p_f + b_f) / (4 * copies * p_l + b_l)


def sgd_steps(model: nn.Module, images: Tensor, labels: Tensor, batches: Sequence[Tensor], *,
              optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9) -> list[dict]:
    """Cross-entropy training steps on the given mini-batches (train-mode BatchNorm).

    Args:
        model: any classifier ``(n, c, h, w) -> (n, C)``; only parameters with ``requires_grad``
            are trained (a frozen ETF classifier stays).
        images ((n, c, h, w) Tensor), labels ((n,) Tensor): the training set.
        batches: index tensors, one per step.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.

    Returns:
        one row per step: ``{"step", "loss", "batch_accuracy"}`` (of the mini-batch, before the update).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: sgd, adam")
    model.train()
    rows = []
    for t, idx in enumerate(batches, start=1):
        out = model(images[idx])
        loss = nn.functional.cross_entropy(out, labels[idx])
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is {float(loss)} at step {t}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rows.append({"step": t, "loss": loss.item(),
                     "batch_accuracy": float((out.argmax(1) == labels[idx]).float().mean())})
    return rows
