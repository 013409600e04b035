"""The two-layer network as a measure over neurons.

A width-m network is the empirical measure of m particles theta_i = (a_i, w_i, b_i):

.. math::

    f_\\pi(x) = \\frac1m \\sum_{i=1}^m a_i\\, \\sigma(w_i \\cdot x + b_i),
    \\qquad a_i \\in \\mathbb{R}^k,\\ w_i \\in \\mathbb{R}^d,\\ b_i \\in \\mathbb{R}.

Everything is batched: ``a (B, m, k)``, ``w (B, m, d)``, ``b (B, m)`` hold B independent networks
(B = 1 for a single one), so a sweep's grid steps as one system.

Variation (Barron) norms, conventions of docs/science.md §2 (|a| Euclidean over outputs, |w| Euclidean):
``l1``: mean_i |a_i| (|w_i| + |b_i|); ``l2``: mean_i |a_i| sqrt(|w_i|^2 + b_i^2).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch
from torch import Tensor

from .activations import Activation, get_activation

__all__ = ["Particles"]


def _generator(seed: Optional[int]) -> torch.Generator:
    """A private generator; ``seed=None`` draws its seed from ``os.urandom`` (torch's global RNG
    is never touched)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def _check_finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).sum().item()
        raise ValueError(f"particle tensor {name!r} has {bad} NaN/inf entries; pass finite values")


@dataclass(frozen=True)
class Particles:
    """A batch of B two-layer networks of m neurons each.

    Attributes:
        a ((B, m, k) Tensor): outer weights.
        w ((B, m, d) Tensor): inner weights.
        b ((B, m) Tensor): inner biases.
        activation: the activation's registry name (or an :class:`Activation`).
    """

    a: Tensor
    w: Tensor
    b: Tensor
    activation: str | Activation = "relu"

    def __post_init__(self):
        a, w, b = self.a, self.w, self.b
        if a.dim() != 3 or w.dim() != 3 or b.dim() != 2:
            raise ValueError(f"Particles needs a (B,m,k), w (B,m,d), b (B,m); got a {tuple(a.shape)}, "
                             f"w {tuple(w.shape)}, b {tuple(b.shape)} (use Particles.from_tensors "
                             "for unbatched tensors)")
        if w.shape[:2] != a.shape[:2] or b.shape != a.shape[:2]:
            raise ValueError(f"particle shapes disagree: a {tuple(a.shape)}, w {tuple(w.shape)}, "
                             f"b {tuple(b.shape)}")
        if not (a.dtype == w.dtype == b.dtype) or not a.is_floating_point():
            raise ValueError(f"a, w, b must share one floating dtype; got {a.dtype}, {w.dtype}, {b.dtype}")
        if a.shape[1] == 0:
            raise ValueError("a network needs at least one neuron (m >= 1)")
        get_activation(self.activation)  # validates the name

    # ----------------------------------------------------------------- sizes
    @property
    def batch(self) -> int:
        return self.a.shape[0]

    @property
    def m(self) -> int:
        return self.a.shape[1]

    @property
    def k(self) -> int:
        return self.a.shape[2]

    @property
    def d(self) -> int:
        return self.w.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.a.dtype

    @property
    def device(self) -> torch.device:
        return self.a.device

    @property
    def act(self) -> Activation:
        return get_activation(self.activation)

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_tensors(cls, a: Tensor, w: Tensor, b: Tensor, *, activation: str = "relu") -> "Particles":
        """Particles from user tensors; unbatched ``a (m,) or (m,k)``, ``w (m,d)``, ``b (m,)`` are accepted.

        Raises:
            ValueError: on NaN/inf or inconsistent shapes.
        """
        a, w, b = torch.as_tensor(a), torch.as_tensor(w), torch.as_tensor(b)
        if w.dim() == 1:
            raise ValueError("w must be (m, d) or (B, m, d); for d = 1 pass w[:, None]")
        if w.dim() == 2:  # unbatched
            a = a[:, None] if a.dim() == 1 else a
            a, w, b = a[None], w[None], b[None]
        elif a.dim() == 2:
            a = a[..., None]
        dtype = torch.promote_types(torch.promote_types(a.dtype, w.dtype), b.dtype)
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
        a, w, b = a.to(dtype), w.to(dtype), b.to(dtype)
        for name, t in (("a", a), ("w", w), ("b", b)):
            _check_finite(name, t)
        return cls(a, w, b, activation)

    @classmethod
    def gaussian(cls, m: int, d: int, k: int = 1, *, scale_a: float = 1.0, scale_w: float = 1.0,
                 scale_b: float = 1.0, batch: int = 1, activation: str = "relu",
                 seed: Optional[int] = 0, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> "Particles":
        """i.i.d. Gaussian neurons: a ~ N(0, scale_a^2 I_k), w ~ N(0, scale_w^2 I_d), b ~ N(0, scale_b^2)."""
        _check_sizes(m, d, k, batch)
        for name, v in (("scale_a", scale_a), ("scale_w", scale_w), ("scale_b", scale_b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        g = _generator(seed)
        a = torch.randn(batch, m, k, generator=g, dtype=dtype) * scale_a
        w = torch.randn(batch, m, d, generator=g, dtype=dtype) * scale_w
        b = torch.randn(batch, m, generator=g, dtype=dtype) * scale_b
        return cls(a.to(device), w.to(device), b.to(device), activation)

    @classmethod
    def sphere(cls, m: int, d: int, k: int = 1, *, outputs: str = "sign", scale_a: float = 1.0,
               radius: float = 1.0, batch: int = 1, activation: str = "relu",
               seed: Optional[int] = 0, dtype: torch.dtype = torch.float64,
               device: str | torch.device = "cpu") -> "Particles":
        """(w, b) uniform on the sphere of that radius in R^{d+1}; a = +-scale_a (``sign``) or Gaussian.

        Args:
            outputs: ``sign`` (a = +-scale_a, independent fair signs per output) or ``gaussian``.
        """
        _check_sizes(m, d, k, batch)
        if outputs not in ("sign", "gaussian"):
            raise ValueError(f"outputs must be 'sign' or 'gaussian', got {outputs!r}")
        g = _generator(seed)
        u = torch.randn(batch, m, d + 1, generator=g, dtype=dtype)
        u = radius * u / u.norm(dim=-1, keepdim=True)
        if outputs == "sign":
            a = scale_a * (2.0 * torch.randint(0, 2, (batch, m, k), generator=g) - 1.0).to(dtype)
        else:
            a = scale_a * torch.randn(batch, m, k, generator=g, dtype=dtype)
        return cls(a.to(device), u[..., :d].contiguous().to(device), u[..., d].contiguous().to(device),
                   activation)

    @classmethod
    def at_positions(cls, positions: Sequence[Sequence[float]] | Tensor, m: int, k: int = 1, *,
                     fractions: Optional[Sequence[float]] = None, scale_a: float = 1.0,
                     batch: int = 1, activation: str = "relu", seed: Optional[int] = 0,
                     dtype: torch.dtype = torch.float64,
                     device: str | torch.device = "cpu") -> "Particles":
        """Neurons placed at given inner positions (w, b), in given fractions, Gaussian outer weights.

        Args:
            positions ((P, d+1) array): rows (w_1..w_d, b).
            m: total number of neurons; group sizes are round(fraction * m), the rounding remainder
                going to the largest groups, every group getting at least one neuron.
            fractions ((P,) array): non-negative, normalised to sum 1; default equal.
        """
        pos = torch.as_tensor(positions, dtype=dtype)
        if pos.dim() != 2 or pos.shape[1] < 2:
            raise ValueError(f"positions must be (P, d+1) rows (w..., b); got shape {tuple(pos.shape)}")
        _check_finite("positions", pos)
        P, d = pos.shape[0], pos.shape[1] - 1
        q = torch.ones(P, dtype=torch.float64) if fractions is None else torch.as_tensor(fractions, dtype=torch.float64)
        if q.shape != (P,) or (q < 0).any() or not torch.isfinite(q).all() or q.sum() <= 0:
            raise ValueError(f"fractions must be {P} finite non-negative numbers with a positive sum; got {q.tolist()}")
        counts = group_sizes(q / q.sum(), m)
        _check_sizes(m, d, k, batch)
        idx = torch.repeat_interleave(torch.arange(P), torch.as_tensor(counts))
        w = pos[idx, :d].expand(batch, m, d).clone()
        b = pos[idx, d].expand(batch, m).clone()
        g = _generator(seed)
        a = scale_a * torch.randn(batch, m, k, generator=g, dtype=dtype)
        return cls(a.to(device), w.to(device), b.to(device), activation)

    # ----------------------------------------------------------------- methods
    def predict(self, X: Tensor, *, backend: str = "auto") -> Tensor:
        """Network outputs.

        Args:
            X ((n, d) or (B, n, d) Tensor): inputs.
            backend: reduction backend name.

        Returns:
            (B, n, k) Tensor: f(x_j) for every network of the batch.
        """
        from .backends import resolve_backend
        X = self._inputs(X)
        be = resolve_backend(backend, act=self.act, device=self.device, m=self.m, n=X.shape[1],
                             d=self.d, batch=self.batch, dtype=self.dtype)
        return be.outputs(self.act, self.a, self.w, self.b, X)

    def features(self, X: Tensor) -> Tensor:
        """Hidden activations sigma(w_i . x_j + b_i), materialised (small problems only).

        Returns:
            (B, n, m) Tensor. The mean-field feature inner product is ``h_j . h_j' / m``.
        """
        X = self._inputs(X)
        return self.act.fn(torch.matmul(X, self.w.transpose(1, 2)) + self.b[:, None, :])

    def variation_norm(self, kind: str = "l2") -> Tensor:
        """The l1 or l2 variation norm of every network (docs/science.md §2).

        Returns:
            (B,) Tensor.
        """
        an = self.a.norm(dim=-1)
        if kind == "l1":
            return (an * (self.w.norm(dim=-1) + self.b.abs())).mean(-1)
        if kind == "l2":
            return (an * torch.sqrt((self.w ** 2).sum(-1) + self.b ** 2)).mean(-1)
        raise ValueError(f"unknown variation norm {kind!r}; valid: l1, l2")

    def to(self, *args, **kwargs) -> "Particles":
        """Move/cast like ``Tensor.to``."""
        return replace(self, a=self.a.to(*args, **kwargs), w=self.w.to(*args, **kwargs),
                       b=self.b.to(*args, **kwargs))

    @classmethod
    def stack(cls, systems: Sequence["Particles"]) -> "Particles":
        """Concatenate batches along B: ``stack([P (B1 systems), Q (B2)])`` has B1 + B2 systems.

        Raises:
            ValueError: an empty list, or systems that differ in m, d, k, activation, dtype or
                device (the message names the first mismatch).
            TypeError: an element that is not Particles.
        """
        systems = list(systems)
        if not systems:
            raise ValueError("Particles.stack needs at least one Particles")
        for i, p in enumerate(systems):
            if not isinstance(p, Particles):
                raise TypeError(f"Particles.stack: element {i} is a {type(p).__name__}, not Particles")
        first = systems[0]

        def key(p):
            act = p.activation if isinstance(p.activation, str) else p.activation.name
            return {"m": p.m, "d": p.d, "k": p.k, "activation": act, "dtype": p.dtype,
                    "device": p.device}
        k0 = key(first)
        for i, p in enumerate(systems[1:], 1):
            ki = key(p)
            for name in k0:
                if ki[name] != k0[name]:
                    raise ValueError(f"Particles.stack: element {i} has {name} = {ki[name]} but element "
                                     f"0 has {name} = {k0[name]}; stack only networks of one shape, "
                                     "activation, dtype and device")
        return replace(first, a=torch.cat([p.a for p in systems]), w=torch.cat([p.w for p in systems]),
                       b=torch.cat([p.b for p in systems]))

    def select(self, index: int) -> "Particles":
        """The single network ``index`` of the batch, as a batch of one."""
        return replace(self, a=self.a[index:index + 1], w=self.w[index:index + 1],
                       b=self.b[index:index + 1])

    def state_dict(self) -> dict:
        """Plain tensors and the activation name, for ``torch.save``."""
        act = self.activation if isinstance(self.activation, str) else self.activation.name
        return {"a": self.a, "w": self.w, "b": self.b, "activation": act}

    @classmethod
    def from_state_dict(cls, sd: dict) -> "Particles":
        return cls(sd["a"], sd["w"], sd["b"], sd["activation"])

    def save(self, path) -> None:
        """Write :meth:`state_dict` with ``torch.save`` (the ``particles.pt`` of a run directory)."""
        from .record import atomic_torch_save
        atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path, *, device: str | torch.device = "cpu") -> "Particles":
        """Read a ``particles.pt`` written by :meth:`save`, with ``torch.load(weights_only=True)``:
        a file that would run code on unpickling is refused.

        Raises:
            ValueError: an unreadable or crafted file, or one without a, w, b, activation.
        """
        try:
            sd = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: cannot be read safely as particles ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if not isinstance(sd, dict) or not {"a", "w", "b", "activation"} <= set(sd):
            raise ValueError(f"{path}: not a particles file (need a dict with a, w, b, activation)")
        return cls.from_state_dict(sd)

    def _inputs(self, X: Tensor) -> Tensor:
        X = torch.as_tensor(X)
        if X.dim() == 2:
            X = X[None]
        if X.dim() != 3 or X.shape[-1] != self.d or X.shape[0] not in (1, self.batch):
            raise ValueError(f"inputs must be (n, {self.d}) or (B, n, {self.d}); got {tuple(X.shape)}")
        return X.to(self.dtype).to(self.device)


def group_sizes(q: Tensor, m: int) -> list[int]:
    """Split m into groups proportional to q (largest remainders; every positive q gets >= 1)."""
    P = q.numel()
    pos = int((q > 0).sum())
    if m < pos:
        raise ValueError(f"m = {m} neurons cannot fill {pos} groups with positive fractions")
    raw = q * m
    counts = torch.floor(raw).long()
    counts[(q > 0) & (counts == 0)] = 1
    rem = m - int(counts.sum())
    order = torch.argsort(raw - counts.double(), descending=True)
    i = 0
    while rem != 0:
        j = order[i % P]
        if rem > 0 and q[j] > 0:
            counts[j] += 1
            rem -= 1
        elif rem < 0 and counts[j] > 1:
            counts[j] -= 1
            rem += 1
        i += 1
    return counts.tolist()


def _check_sizes(m: int, d: int, k: int, batch: int) -> None:
    for name, v in (("m", m), ("d", d), ("k", k), ("batch", batch)):
        try:
            whole = not isinstance(v, bool) and int(v) == v
        except (TypeError, ValueError, OverflowError):  # NaN, inf, text
            whole = False
        if not whole or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if math.prod((batch, m, max(d, k))) > 2 ** 34:
        raise ValueError(f"batch*m*d = {batch * m * max(d, k)} is too large to allocate")
