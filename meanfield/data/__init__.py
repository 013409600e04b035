"""Distributions: weighted labelled samples ``(X, y, p)`` for the simulator, the deep pipeline and the metrics.

Everything here satisfies one protocol, :class:`Distribution`: ``sample(n=None, *, seed=0,
dtype=torch.float64, device=None) -> Samples``. Build classes from sets with
:class:`ClassMixture` (``[(set_for_class_0, mass_0), ...]``), write your own with
:func:`from_function` or by subclassing :class:`BaseDistribution`, or name a built-in with
:func:`get_distribution`. Binary convention: labels 0..C-1, class 1 is +1.
"""

from .base import Distribution, Samples, as_samples
from .core import (BaseDistribution, ClassMixture, FunctionDistribution, Mixture, PointMasses,
                   from_function, point_masses, union)
from .real import (ArrayData, balanced_subsample, cifar10, digits, mnist, mnist_subset,
                   read_cifar_batch, read_idx, select_classes, standardise)
from .registry import describe_distribution, get_distribution, list_distributions, register_distribution
from .shapes import Annulus, Ball, Box, Interval, Region, Sphere, Uniform
from .synthetic import Circles, Enclosure, GaussianMixture, Moons, line_classes, three_atoms, xor


def plot_distribution(samples, ax=None, **kwargs):
    """Draw a distribution (see :func:`meanfield.data.plot.plot_distribution`)."""
    from .plot import plot_distribution as _plot

    return _plot(samples, ax, **kwargs)


__all__ = [
    "Distribution", "Samples", "as_samples", "BaseDistribution", "FunctionDistribution", "from_function",
    "PointMasses", "point_masses", "Mixture", "ClassMixture", "union",
    "Interval", "Box", "Ball", "Sphere", "Annulus", "Region", "Uniform",
    "GaussianMixture", "Moons", "Circles", "xor", "three_atoms", "line_classes", "Enclosure",
    "ArrayData", "digits", "mnist_subset", "mnist", "cifar10", "read_idx", "read_cifar_batch",
    "balanced_subsample", "select_classes", "standardise",
    "get_distribution", "list_distributions", "describe_distribution", "register_distribution",
    "plot_distribution",
]
