"""Building blocks: a base class for distributions, point masses, user functions, mixtures.

Every distribution here draws its points in float64 on the CPU from a ``torch.Generator`` seeded
with ``seed`` and only then casts to the requested dtype and device, so the same seed gives the same
samples on every device (float32 samples are the float64 ones rounded).

Masses: a component or class weight is a *relative* weight, divided by the sum of the weights
(documented everywhere it happens); negative, NaN or all-zero weights are errors.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .base import Samples

__all__ = ["BaseDistribution", "PointMasses", "FunctionDistribution", "from_function", "Mixture",
           "ClassMixture", "union", "point_masses"]


def _whole(v) -> bool:
    """True when v is an integer value (an int, or a finite float with no fractional part)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    try:
        return math.isfinite(v) and int(v) == v
    except (TypeError, ValueError, OverflowError):
        return False


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an int)."""
    if not _whole(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) % (2 ** 63))
    return g


def child_seed(seed: int, i: int) -> int:
    """A deterministic, distinct seed for component ``i`` of a composite distribution."""
    return (int(seed) * 1_000_003 + 7_919 * (i + 1)) % (2 ** 61 - 1)


def check_n(n, *, minimum: int = 1) -> Optional[int]:
    if n is None:
        return None
    if not _whole(n) or n < minimum:
        raise ValueError(f"n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def relative_weights(weights, what: str = "weights") -> Tensor:
    """Validate non-negative finite weights with a positive sum; return them divided by the sum."""
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if not torch.isfinite(w).all():
        raise ValueError(f"{what} contain NaN/inf: {w.tolist()}")
    if (w < 0).any():
        raise ValueError(f"{what} must be non-negative; got {w.tolist()}")
    if w.sum() <= 0:
        raise ValueError(f"{what} sum to 0; give at least one a positive value")
    return w / w.sum()


def allocate(n: int, weights: Tensor) -> list[int]:
    """Split n points over components proportionally to weights (largest remainder), >= 1 each."""
    k = len(weights)
    if n < k:
        raise ValueError(f"n = {n} is smaller than the {k} sampled components; ask for n >= {k}")
    raw = weights * (n - k)
    counts = torch.floor(raw).long() + 1
    rest = n - int(counts.sum())
    if rest > 0:
        order = torch.argsort(raw - torch.floor(raw), descending=True, stable=True)
        counts[order[:rest]] += 1
    return counts.tolist()


class BaseDistribution:
    """Base class for distributions: subclass it and implement :meth:`_sample`.

    ``_sample(n, gen)`` returns float64 CPU tensors ``(X (n', d), y (n',) int, p (n',))`` with p
    summing to 1 (relative weights are normalised, negative ones rejected). Set ``exact = True``
    for laws made of atoms (they ignore ``n`` and the seed), ``num_classes`` and ``class_names``
    when known, and ``default_n`` for the size used when ``n`` is None.

    Example:
        >>> class Segment(BaseDistribution):
        ...     def _sample(self, n, gen):
        ...         x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        ...         return x, (x[:, 0] > 0.5).long(), torch.full((n,), 1.0 / n)
    """

    exact: bool = False
    default_n: int = 256
    num_classes: Optional[int] = None
    class_names: Optional[tuple[str, ...]] = None
    image_shape: Optional[tuple[int, ...]] = None

    def _sample(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def sample(self, n: Optional[int] = None, *, seed: int = 0, dtype: torch.dtype = torch.float64,
               device=None) -> Samples:
        """Weighted labelled samples.

        Args:
            n: number of points for continuous laws (ignored by exact atoms); None uses
                ``default_n``.
            seed: the seed; the same seed gives the same samples on every device and dtype.
            dtype: floating dtype of X and p.
            device: device of the tensors.

        Returns:
            Samples: ``X (n, d)``, ``y (n,)``, ``p (n,)`` summing to 1.
        """
        n = check_n(n)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
        X, y, p = self._sample(self.default_n if n is None else n, generator(seed))
        s = Samples.from_masses(X, y, p, num_classes=self.num_classes, class_names=self.class_names,
                                dtype=torch.float64)
        if self.image_shape is not None:
            s = Samples(s.X, s.y, s.p, s.num_classes, s.class_names, tuple(self.image_shape))
        return s.to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.startswith("_") and not isinstance(v, Tensor))
        return f"{type(self).__name__}({fields})"


# --------------------------------------------------------------------------- point masses
class PointMasses(BaseDistribution):
    """Weighted point masses sum_j p_j delta_{(x_j, y_j)} in any dimension; exact (n and seed ignored).

    Args:
        X ((n, d) or (n,) array): atoms (a 1-D array means d = 1).
        y ((n,) array): integer labels in 0..C-1.
        p ((n,) array): relative masses (divided by their sum); default equal.
        num_classes: C (default max(y) + 1); every class needs an atom of positive mass.
        class_names: optional names.

    Raises:
        ValueError: NaN/inf atoms, negative masses, masses summing to 0, mismatched lengths,
            a class with no atom.
    """

    exact = True

    def __init__(self, X, y, p=None, *, num_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None):
        s = Samples.from_masses(X, y, p, num_classes=num_classes, class_names=class_names,
                                dtype=torch.float64, device="cpu")
        self._s = s
        self.num_classes = s.num_classes
        self.class_names = s.class_names
        self.default_n = s.n

    @property
    def atoms(self) -> Samples:
        return self._s

    def _sample(self, n, gen):
        return self._s.X, self._s.y, self._s.p

    def __repr__(self) -> str:
        return f"PointMasses(n={self._s.n}, d={self._s.d}, num_classes={self.num_classes})"


def point_masses(X, y, p=None, **kwargs) -> PointMasses:
    """Shorthand for :class:`PointMasses`."""
    return PointMasses(X, y, p, **kwargs)


# --------------------------------------------------------------------------- user functions
class FunctionDistribution(BaseDistribution):
    """A distribution from a plain function ``fn(n, generator) -> (X, y) or (X, y, p)``.

    The function receives the number of points (``default_n`` when the caller passes None) and a
    seeded CPU ``torch.Generator``; it returns tensors or arrays. Masses default to equal and are
    relative (divided by their sum). Use the generator for all randomness so seeds reproduce.
    """

    def __init__(self, fn: Callable, *, num_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None, default_n: int = 256,
                 exact: bool = False, name: Optional[str] = None):
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else None
        self.default_n = check_n(default_n)
        self.exact = exact
        self.name = name or getattr(fn, "__name__", "function")

    def _sample(self, n, gen):
        out = self.fn(n, gen)
        if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
            raise ValueError(f"{self.name} must return (X, y) or (X, y, p); got {type(out).__name__}")
        X = torch.as_tensor(out[0]).to("cpu", torch.float64)
        y = torch.as_tensor(out[1]).to("cpu")
        p = None if len(out) == 2 or out[2] is None else torch.as_tensor(out[2]).to("cpu", torch.float64)
        if X.dim() == 1:
            X = X[:, None]
        if p is None:
            p = torch.full((X.shape[0],), 1.0 / max(X.shape[0], 1), dtype=torch.float64)
        return X, y, p

    def __repr__(self) -> str:
        return f"FunctionDistribution({self.name})"


def from_function(fn: Optional[Callable] = None, **kwargs):
    """Wrap ``fn(n, generator) -> (X, y[, p])`` as a distribution; usable as a decorator.

    Example:
        >>> @from_function(num_classes=2)
        ... def halves(n, gen):
        ...     x = 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64) - 1
        ...     return x, (x[:, 0] > 0).long()
    """
    if fn is None:
        return lambda f: FunctionDistribution(f, **kwargs)
    return FunctionDistribution(fn, **kwargs)


# --------------------------------------------------------------------------- mixtures
class Mixture(BaseDistribution):
    """A weighted mixture of distributions: ``sum_i w_i P_i`` with relative weights w_i.

    With ``relabel=False`` (:func:`union`) samples keep their labels; with ``relabel=True``
    (:class:`ClassMixture`) every sample of component i gets label i. ``n`` points are split over
    the non-exact components proportionally to their weights (at least one each); exact atoms
    are kept as they are. Component i is sampled with its own seed derived from ``seed`` and i.

    Raises:
        ValueError: no components, bad weights, components of different dimensions.
    """

    def __init__(self, components: Sequence, weights=None, *, relabel: bool = False,
                 class_names: Optional[Sequence[str]] = None):
        comps = list(components)
        if not comps:
            raise ValueError("a mixture needs at least one component")
        for i, c in enumerate(comps):
            if not hasattr(c, "sample"):
                raise ValueError(f"component {i} ({type(c).__name__}) has no .sample; pass a "
                                 "Distribution (see meanfield.data.from_function)")
        if weights is None:
            weights = [1.0] * len(comps)
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if w.numel() != len(comps):
            raise ValueError(f"mismatched lengths: {len(comps)} components but {w.numel()} weights")
        what = "class masses" if relabel else "mixture weights"
        if relabel and w.sum() > 0 and (w == 0).any():
            i = int((w == 0).nonzero()[0])
            raise ValueError(f"class {i} has mass 0 (an empty class); give it positive mass or drop it")
        self.weights = relative_weights(w, what)
        self.components = comps
        self.relabel = relabel
        self.exact = all(getattr(c, "exact", False) for c in comps)
        self.default_n = sum(getattr(c, "default_n", 256) for c in comps if not getattr(c, "exact", False)) or 1
        if relabel:
            self.num_classes = len(comps)
            self.class_names = tuple(class_names) if class_names is not None else None
        else:
            self.class_names = tuple(class_names) if class_names is not None else None
            known = [getattr(c, "num_classes", None) for c in comps]
            self.num_classes = max(known) if all(k is not None for k in known) else None

    def _sample(self, n, gen):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
        inexact = [i for i, c in enumerate(self.components) if not getattr(c, "exact", False)]
        counts = {}
        if inexact:  # a component of weight 0 still gets one point (of mass 0)
            w = self.weights[inexact]
            w = w / w.sum() if w.sum() > 0 else torch.full_like(w, 1.0 / len(inexact))
            counts = dict(zip(inexact, allocate(n, w)))
        Xs, ys, ps, d0 = [], [], [], None
        for i, c in enumerate(self.components):
            s = c.sample(counts.get(i), seed=child_seed(seed, i), dtype=torch.float64, device="cpu")
            if not isinstance(s, Samples):
                raise ValueError(f"component {i}: .sample must return Samples, got {type(s).__name__}")
            if d0 is None:
                d0 = s.d
            elif s.d != d0:
                kind = "class" if self.relabel else "component"
                raise ValueError(f"d mismatch between classes: {kind} 0 has d = {d0} but {kind} {i} "
                                 f"has d = {s.d}; every component must live in the same R^d")
            Xs.append(s.X)
            ys.append(torch.full_like(s.y, i) if self.relabel else s.y)
            ps.append(s.p * self.weights[i])
        return torch.cat(Xs), torch.cat(ys), torch.cat(ps)

    def __repr__(self) -> str:
        kind = "ClassMixture" if self.relabel else "Mixture"
        inner = ", ".join(f"({c!r}, {w:.4g})" for c, w in zip(self.components, self.weights.tolist()))
        return f"{kind}([{inner}])"


class ClassMixture(Mixture):
    """Class c is the distribution ``dists[c]`` with relative mass ``mass_c`` (all its points get label c).

    Args:
        classes: a sequence of ``(distribution, mass)`` pairs, one per class, in label order
            (class 1 is +1 in the binary convention); or a sequence of distributions with
            ``masses`` given separately (default equal).
        masses: relative class masses when ``classes`` holds bare distributions.
        class_names: optional names.

    Example:
        >>> two_sets = ClassMixture([(Ball([0, 0], 1.0), 0.3), (Annulus(2.0, 3.0), 0.7)])
    """

    def __init__(self, classes: Sequence, masses=None, *, class_names: Optional[Sequence[str]] = None):
        classes = list(classes)
        if classes and all(isinstance(c, (tuple, list)) and len(c) == 2 for c in classes):
            if masses is not None:
                raise ValueError("give masses either in the (distribution, mass) pairs or in masses=, not both")
            dists, masses = [c[0] for c in classes], [float(c[1]) for c in classes]
        else:
            dists = classes
        if class_names is not None and len(class_names) != len(dists):
            raise ValueError(f"{len(class_names)} class names for {len(dists)} classes")
        super().__init__(dists, masses, relabel=True, class_names=class_names)


def union(*dists, weights=None, class_names: Optional[Sequence[str]] = None) -> Mixture:
    """The mixture of labelled distributions that keeps their labels (relative ``weights``, default equal).

    ``union(Interval(-3, -1), Interval(1, 3))`` is one class on two intervals;
    ``union(moons, PointMasses(...))`` adds atoms to a labelled data set.
    """
    if len(dists) == 1 and isinstance(dists[0], (list, tuple)):
        dists = tuple(dists[0])
    return Mixture(dists, weights, relabel=False, class_names=class_names)
