"""Fixed simplex-ETF classifier (Zhu et al. 2021): the last layer frozen, feature dimension = C.

.. math::

    W = \\sqrt{\\frac{C}{C-1}}\\Big(I_C - \\frac1C \\mathbf 1\\mathbf 1^\\top\\Big)
    \\quad (C \\times C,\\ \\text{unit rows, pairwise cosine } -1/(C-1))

The weight is a buffer, not a parameter: it has no gradient and no optimiser state, which is where
the memory saving comes from (together with the narrower penultimate layer, see
:mod:`meanfield.deep.memory`).
"""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

__all__ = ["etf_weight", "ETFClassifier", "fix_classifier"]


def etf_weight(C: int, *, scale: float = 1.0, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(C, C) Tensor: ``scale * sqrt(C/(C-1)) (I - 11^T/C)``."""
    if int(C) != C or C < 2:
        raise ValueError(f"a simplex ETF needs C >= 2 classes, got {C!r}")
    J = torch.eye(C, dtype=dtype, device=device) - 1.0 / C
    return scale * math.sqrt(C / (C - 1)) * J


class ETFClassifier(nn.Module):
    """A frozen linear classifier ``h -> h W^T`` with W a rescaled simplex ETF (``weight`` is a buffer)."""

    bias = None

    def __init__(self, C: int, *, scale: float = 1.0, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.register_buffer("weight", etf_weight(C, scale=scale, dtype=dtype, device=device))

    def forward(self, h: Tensor) -> Tensor:
        return h @ self.weight.T


def fix_classifier(model: nn.Module, *, scale: float = 1.0) -> nn.Module:
    """Replace ``model.classifier`` by a frozen :class:`ETFClassifier` (in place; returns the model).

    The model's feature dimension must equal its number of classes (build it with the penultimate
    width = C, e.g. ``DeepHomogeneousMLP(d, [w, w, C], 4, C)`` or ``ConvNet(..., feature_dim=C)``).

    Raises:
        ValueError: when the model has no ``classifier`` or feature_dim != C.
    """
    clf = getattr(model, "classifier", None)
    if clf is None or not hasattr(clf, "weight"):
        raise ValueError("fix_classifier needs a model with a `classifier` last layer exposing `.weight`")
    C, p = clf.weight.shape
    if p != C:
        raise ValueError(f"the fixed ETF classifier needs feature dimension = number of classes; the "
                         f"model has feature_dim {p} and {C} classes: build it with a penultimate "
                         f"layer of width {C}")
    w = clf.weight
    model.classifier = ETFClassifier(C, scale=scale, dtype=w.dtype, device=w.device)
    return model
