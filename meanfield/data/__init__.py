"""Distributions: weighted labelled samples ``(X, y, p)`` for the simulator, the deep pipeline and the metrics."""

from .base import Distribution, Samples, as_samples

__all__ = ["Distribution", "Samples", "as_samples"]
