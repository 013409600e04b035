"""Wasserstein gradient flow of the particle measure: velocity field, integrators, log-time, Langevin.

Risk with per-layer weight decay (docs/science.md §2):

.. math::

    R(\\pi) = \\sum_j p_j\\, \\ell(f_\\pi(x_j), y_j)
              + \\frac{\\lambda_a}{2}\\int |a|^2 d\\pi + \\frac{\\lambda_w}{2}\\int (|w|^2 + b^2) d\\pi

Particles follow ``d theta_i/dt = -grad V[pi](theta_i) = -m grad_{theta_i} R`` (plus
``sqrt(2 tau) dB`` for mean-field Langevin). The velocity is computed with two explicit reductions
(see :mod:`meanfield.backends`); autograd is only the test oracle.

Time stepping: ``fixed`` uses ``dt``; ``log`` uses ``dt_k = min(dt_max, max(dt, ds * t_k))`` (a
constant step ``ds`` in log-time once ``t > dt / ds``, capped at ``dt_max``), the regime of
exponential-type losses without weight decay where parameters grow like log t. A run covers
``[t0, t_end]`` in absolute time and lands exactly on ``stops`` (:mod:`meanfield.stepping`).

Modules: this one holds the configuration, data, result, velocity and risk; the loop
(:func:`simulate`) lives in :mod:`meanfield.simulation`, integrators in :mod:`meanfield.stepping`,
blow-up checks in :mod:`meanfield.divergence`; all are re-exported here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Optional

import torch
from torch import Tensor

from .backends import Backend, resolve_backend
from .data.base import Samples, as_samples
from .divergence import DivergenceCheck, DivergenceError
from .losses import get_loss
from .particles import Particles
from .stepping import State, VelFn, get_integrator, list_integrators, next_dt, register_integrator
from .threads import torch_threads

__all__ = ["FlowConfig", "FlowResult", "DivergenceError", "DivergenceCheck", "BatchedData",
           "simulate", "velocity", "risk", "list_integrators", "get_integrator",
           "register_integrator"]


@dataclass(frozen=True)
class FlowConfig:
    """Everything that defines a flow (shared by the API and the CLI).

    Attributes:
        loss: loss registry name.
        lam: weight decay on every parameter (a, w, b); per system when a tuple of length B.
        lam_a: weight decay on the outer weights a (overrides ``lam``).
        lam_w: weight decay on the inner weights (w, b) (overrides ``lam``).
        tau: Langevin temperature (noise sqrt(2 tau dt) per coordinate per step).
        integrator: integrator registry name (``euler``, ``heun``, ``rk4``).
        dt: the time step (the smallest step with ``stepping='log'``).
        t_end: final time (absolute: a run covers ``[t0, t_end]``).
        stepping: ``fixed`` or ``log``.
        ds: log-time step for ``stepping='log'``.
        dt_max: the largest step of ``stepping='log'`` (None: unbounded). With weight decay the
            flow has a finite stiffness, so ``ds * t`` must stop growing somewhere.
        train_inner: False freezes (w, b) (only a moves).
        backend: backend registry name or ``auto``.
        max_steps: safety cap on the number of steps.
        t0: start time (log-time steps use the absolute time t, so a run from t0 steps like the
            tail of a run from 0); ``simulate(result, ...)`` continues a result from its time.
        stops: times the flow lands on exactly (a step is shortened to end there), e.g. a phase
            boundary: a run cut at a stop and continued equals the uninterrupted run bit for bit.
        divergence: blow-up checks (:class:`meanfield.divergence.DivergenceCheck`).
    """

    loss: str = "logistic"
    lam: float | tuple[float, ...] = 0.0
    lam_a: Optional[float | tuple[float, ...]] = None
    lam_w: Optional[float | tuple[float, ...]] = None
    tau: float | tuple[float, ...] = 0.0
    integrator: str = "heun"
    dt: float = 1e-2
    t_end: float = 10.0
    stepping: str = "fixed"
    ds: float = 0.02
    dt_max: Optional[float] = None
    train_inner: bool = True
    backend: str = "auto"
    max_steps: int = 10_000_000
    t0: float = 0.0
    stops: tuple[float, ...] = ()
    divergence: DivergenceCheck = DivergenceCheck()

    def __post_init__(self):
        get_loss(self.loss)
        get_integrator(self.integrator)
        if self.stepping not in ("fixed", "log"):
            raise ValueError(f"unknown stepping {self.stepping!r}; valid: fixed, log")
        if not (isinstance(self.t0, (int, float)) and math.isfinite(self.t0) and 0 <= self.t0):
            raise ValueError(f"t0 must be a finite number >= 0, got {self.t0!r}")
        if isinstance(self.t_end, (int, float)) and self.t_end <= self.t0:
            raise ValueError(f"t_end = {self.t_end!r} must be after t0 = {self.t0!r}")
        stops = self.stops if isinstance(self.stops, (tuple, list)) else (self.stops,)
        if any(not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0) for x in stops) \
                or list(stops) != sorted(set(stops)):
            raise ValueError(f"stops must be increasing positive finite times, got {self.stops!r}")
        object.__setattr__(self, "stops", tuple(float(x) for x in stops))
        if not isinstance(self.divergence, DivergenceCheck):
            raise TypeError(f"divergence must be a DivergenceCheck, got {type(self.divergence).__name__}"
                            "; e.g. DivergenceCheck(enabled=False) to switch the checks off")
        for name in ("dt", "t_end", "ds", "dt_max"):
            v = getattr(self, name)
            if v is None and name == "dt_max":
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        for name in ("lam", "lam_a", "lam_w", "tau"):
            v = getattr(self, name)
            if v is None and name in ("lam_a", "lam_w"):
                continue
            vals = v if isinstance(v, (tuple, list)) else (v,)
            for x in vals:
                if isinstance(x, bool) or not isinstance(x, numbers.Real) or not (math.isfinite(x) and x >= 0):
                    raise ValueError(f"{name} must be finite and >= 0 (a number or a tuple of them), "
                                     f"got {v!r}")
        ms = self.max_steps
        if isinstance(ms, bool) or not isinstance(ms, numbers.Integral) or ms < 1:
            raise ValueError(f"max_steps must be a positive integer, got {ms!r}")
        if not isinstance(self.backend, Backend) and self.backend != "auto":
            from .backends import list_backends
            if not isinstance(self.backend, str) or self.backend not in list_backends():
                raise ValueError(f"unknown backend {self.backend!r}; valid: {', '.join(list_backends())}")


@dataclass(frozen=True)
class BatchedData:
    """Samples for B systems: ``X (Bx, n, d)``, ``y (By, n)``, ``p (Bp, n)``, each leading size 1 or B."""

    X: Tensor
    y: Tensor
    p: Tensor
    num_classes: int

    @classmethod
    def build(cls, data, *, dtype: torch.dtype, device, d: int = 1) -> "BatchedData":
        """From Samples, a Distribution, a tuple, or a sequence of Samples (one per system);
        ``None`` gives no data at all (the flow of the regulariser and the noise alone)."""
        if data is None:
            return cls(torch.zeros(1, 0, d, dtype=dtype, device=device),
                       torch.zeros(1, 0, dtype=torch.long, device=device),
                       torch.zeros(1, 0, dtype=dtype, device=device), 1)
        if isinstance(data, BatchedData):
            return cls(data.X.to(dtype=dtype, device=device), data.y.to(device),
                       data.p.to(dtype=dtype, device=device), data.num_classes)
        if isinstance(data, (list, tuple)) and data and all(isinstance(s, Samples) for s in data):
            ss = [s.to(dtype=dtype, device=device) for s in data]
            if len({(s.n, s.d) for s in ss}) != 1:
                raise ValueError("batched systems must share n and d; got "
                                 f"{sorted({(s.n, s.d) for s in ss})}")
            same_X = all(torch.equal(s.X, ss[0].X) for s in ss)
            same_y = all(torch.equal(s.y, ss[0].y) for s in ss)
            X = ss[0].X[None] if same_X else torch.stack([s.X for s in ss])
            y = ss[0].y[None] if same_y else torch.stack([s.y for s in ss])
            return cls(X, y, torch.stack([s.p for s in ss]), max(s.num_classes for s in ss))
        s = as_samples(data, dtype=dtype, device=device)
        return cls(s.X[None], s.y[None], s.p[None], s.num_classes)

    @property
    def n(self) -> int:
        return self.X.shape[1]


@dataclass(frozen=True)
class FlowResult:
    """The outcome of :func:`simulate`.

    Attributes:
        particles: final state.
        t: final time.
        steps: number of steps taken.
        history: recorded rows (dicts of floats), see :class:`meanfield.record.Recorder`.
        backend: name of the backend that ran.
        config: the flow configuration.
        resumed_from: time of the checkpoint the run resumed from, or None.
        snapshots: neuron snapshots kept by the recorder (``Recorder(snapshot=K)``).
        seed: the seed of the Langevin noise (drawn from ``os.urandom`` when :func:`simulate`
            got ``seed=None``): an int for one system, the B systems' seeds for a batch.
        rng_state ((B, N) uint8 Tensor): the noise generators' states at the end (one per
            system), so that ``simulate(result, ...)`` continues the noise where it stopped.

    Every history row has a ``system`` column (0 when B = 1).
    """

    particles: Particles
    t: float
    steps: int
    history: list = field(default_factory=list)
    backend: str = ""
    config: Optional[FlowConfig] = None
    resumed_from: Optional[float] = None
    snapshots: list = field(default_factory=list)
    seed: Optional[int | tuple[int, ...]] = None
    rng_state: Optional[Tensor] = None

    def select(self, index: int) -> "FlowResult":
        """System ``index`` alone, as the result of a run with B = 1.

        Its particles are ``particles.select(index)``, its history the rows of that system with
        ``system`` renumbered 0, its snapshots that system's neurons, and per-system config
        values (tuples of ``lam``, ``lam_a``, ``lam_w``, ``tau``) that system's entry, its seed
        and noise generator state that system's (every system has its own generator), so
        ``simulate(result.select(i), ...)`` continues system i exactly as in the batch.

        Raises:
            IndexError: index outside ``0..B-1``.
        """
        B = self.particles.batch
        if not -B <= int(index) < B:
            raise IndexError(f"system {index} out of range for a batch of {B}")
        i = int(index) % B
        hist = [{**r, "system": 0} for r in self.history if int(r.get("system", 0)) == i]
        snaps = [{**sn, "a": sn["a"][i:i + 1], "w": sn["w"][i:i + 1], "b": sn["b"][i:i + 1]}
                 for sn in self.snapshots]
        cfg = self.config
        if cfg is not None:
            cfg = replace(cfg, **{k: getattr(cfg, k)[i] for k in ("lam", "lam_a", "lam_w", "tau")
                                  if isinstance(getattr(cfg, k), (tuple, list))})
        seed = self.seed[i] if isinstance(self.seed, (tuple, list)) else self.seed
        rng = self.rng_state
        if rng is not None and rng.dim() == 2:
            rng = rng[i:i + 1]
        return replace(self, particles=self.particles.select(i), history=hist, snapshots=snaps,
                       config=cfg, seed=seed, rng_state=rng)


# ----------------------------------------------------------------------------- velocity and risk
def _per_system(v, B: int, like: Tensor) -> Tensor:
    """A scalar or length-B sequence as a (B,) tensor."""
    if isinstance(v, (tuple, list)):
        if len(v) != B:
            raise ValueError(f"per-system value has length {len(v)} but the batch has {B} systems")
        return torch.tensor([float(x) for x in v], dtype=like.dtype, device=like.device)
    return torch.full((B,), float(v), dtype=like.dtype, device=like.device)


def _decays(cfg: FlowConfig, B: int, like: Tensor) -> tuple[Tensor, Tensor]:
    lam_a = cfg.lam if cfg.lam_a is None else cfg.lam_a
    lam_w = cfg.lam if cfg.lam_w is None else cfg.lam_w
    return _per_system(lam_a, B, like), _per_system(lam_w, B, like)


def _weights(data: BatchedData, loss, f: Tensor) -> Tensor:
    """g = p * dl/df, shape (B, n, k)."""
    return data.p[..., None] * loss.grad(f, data.y)


def velocity(particles: Particles, data, config: FlowConfig, *, backend: Optional[Backend] = None
             ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """The velocity field -grad V[pi](theta_i) at every particle (no noise).

    Args:
        particles: B networks of m neurons.
        data: Samples / Distribution / tuple, or a sequence of Samples (one per system).
        config: loss, weight decay, train_inner, backend.

    Returns:
        (v_a (B, m, k), v_w (B, m, d) or None, v_b (B, m) or None); None when inner weights are frozen.
    """
    data = BatchedData.build(data, dtype=particles.dtype, device=particles.device, d=particles.d)
    loss = get_loss(config.loss)
    if data.n:
        loss.check(particles.k, data.num_classes)
    be = backend or resolve_backend(config.backend, act=particles.act, device=particles.device,
                                    m=particles.m, n=data.n, d=particles.d, batch=particles.batch,
                                    dtype=particles.dtype)
    vel = _make_vel(particles, data, config, be)
    with _own_threads(be):
        return vel((particles.a, particles.w, particles.b))


def _own_threads(be: Backend):
    """Torch single-threaded while a backend that runs its own threads (numba) works.

    Torch's OpenMP threads spin after each elementwise op and take the cores from the kernels'
    threads: one numba relu step (m = 1e5, n = 1e3, d = 2, 2 cores) took 29 ms with torch on two
    threads and 15 ms on one. :func:`meanfield.simulate` runs its whole loop this way.
    """
    return torch_threads(1 if getattr(be, "owns_threads", False) else None)


def _make_vel(particles: Particles, data: BatchedData, config: FlowConfig, be: Backend) -> VelFn:
    act = particles.act
    loss = get_loss(config.loss)
    la, lw = _decays(config, particles.batch, particles.a)
    inner = config.train_inner

    fused = getattr(be, "outputs_velocities", None)

    def vel(s: State, f: Optional[Tensor] = None, keep: Optional[list] = None) -> State:
        """Velocities at s (outputs f there if known; ``keep`` receives the outputs used)."""
        a, w, b = s
        if f is None and fused is not None:   # one pass for both (the backend's own chunks)
            f, (va, vw, vb) = fused(act, a, w, b, data.X, lambda f: _weights(data, loss, f),
                                    inner=inner)
        else:
            if f is None:
                f = be.outputs(act, a, w, b, data.X)
            va, vw, vb = be.velocities(act, a, w, b, data.X, _weights(data, loss, f), inner=inner)
        if keep is not None:
            keep.append(f)
        va = va - la[:, None, None] * a
        if inner:
            vw = vw - lw[:, None, None] * w
            vb = vb - lw[:, None] * b
        return va, vw, vb

    return vel


def risk(particles: Particles, data, config: FlowConfig, *, backend: str | Backend = "auto",
         outputs: Optional[Tensor] = None) -> Tensor:
    """R(pi) for every system: data term plus weight decay.

    Returns:
        (B,) Tensor.
    """
    data = BatchedData.build(data, dtype=particles.dtype, device=particles.device, d=particles.d)
    loss = get_loss(config.loss)
    if outputs is None:
        be = resolve_backend(backend, act=particles.act, device=particles.device, m=particles.m,
                             n=data.n, d=particles.d, batch=particles.batch, dtype=particles.dtype)
        with _own_threads(be):
            outputs = be.outputs(particles.act, particles.a, particles.w, particles.b, data.X)
    la, lw = _decays(config, particles.batch, particles.a)
    data_term = (data.p * loss.value(outputs, data.y)).sum(-1)
    reg = 0.5 * la * (particles.a ** 2).sum((-1, -2)) / particles.m
    reg = reg + 0.5 * lw * ((particles.w ** 2).sum((-1, -2)) + (particles.b ** 2).sum(-1)) / particles.m
    return data_term + reg


# ----------------------------------------------------------------------------- the loop (meanfield.simulation)
def _next_dt(cfg: FlowConfig, t: float) -> float:
    return next_dt(cfg, t)


from .simulation import _run_key, simulate  # noqa: E402,F401  (builds on the above)
