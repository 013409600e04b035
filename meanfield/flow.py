"""Wasserstein gradient flow of the particle measure: velocity field, integrators, log-time, Langevin.

Risk with per-layer weight decay (science.md §2):

.. math::

    R(\\pi) = \\sum_j p_j\\, \\ell(f_\\pi(x_j), y_j)
              + \\frac{\\lambda_a}{2}\\int |a|^2 d\\pi + \\frac{\\lambda_w}{2}\\int (|w|^2 + b^2) d\\pi

Particles follow ``d theta_i/dt = -grad V[pi](theta_i) = -m grad_{theta_i} R`` (plus
``sqrt(2 tau) dB`` for mean-field Langevin). The velocity is computed with two explicit reductions
(see :mod:`meanfield.backends`); autograd is only the test oracle.

Time stepping: ``fixed`` uses ``dt``; ``log`` uses ``dt_k = min(dt_max, max(dt, ds * t_k))`` (a
constant step ``ds`` in log-time once ``t > dt / ds``, capped at ``dt_max``), the regime of exponential-type losses without weight decay
where parameters grow like log t.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

import torch
from torch import Tensor

from .backends import Backend, resolve_backend
from .data.base import Samples, as_samples
from .losses import get_loss
from .particles import Particles

__all__ = ["FlowConfig", "FlowResult", "DivergenceError", "BatchedData", "simulate", "velocity",
           "risk", "list_integrators", "get_integrator", "register_integrator"]


class DivergenceError(RuntimeError):
    """A run produced NaN/inf; the message says when and what to change."""


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
        t_end: final time.
        stepping: ``fixed`` or ``log``.
        ds: log-time step for ``stepping='log'``.
        dt_max: the largest step of ``stepping='log'`` (None: unbounded). With weight decay the
            flow has a finite stiffness, so ``ds * t`` must stop growing somewhere.
        train_inner: False freezes (w, b) (only a moves).
        backend: backend registry name or ``auto``.
        max_steps: safety cap on the number of steps.
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

    def __post_init__(self):
        get_loss(self.loss)
        get_integrator(self.integrator)
        if self.stepping not in ("fixed", "log"):
            raise ValueError(f"unknown stepping {self.stepping!r}; valid: fixed, log")
        for name in ("dt", "t_end", "ds", "dt_max"):
            v = getattr(self, name)
            if v is None and name == "dt_max":
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        for name in ("lam", "lam_a", "lam_w", "tau"):
            v = getattr(self, name)
            vals = v if isinstance(v, (tuple, list)) else (v,)
            for x in vals:
                if x is not None and not (math.isfinite(x) and x >= 0):
                    raise ValueError(f"{name} must be finite and >= 0, got {v!r}")


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
    """

    particles: Particles
    t: float
    steps: int
    history: list = field(default_factory=list)
    backend: str = ""
    config: Optional[FlowConfig] = None
    resumed_from: Optional[float] = None
    snapshots: list = field(default_factory=list)


# ----------------------------------------------------------------------------- integrators
State = tuple  # (a, w, b)
VelFn = Callable[[State], State]

_INTEGRATORS: dict[str, Callable[[State, float, VelFn], State]] = {}


def register_integrator(name: str, step: Callable[[State, float, VelFn], State]) -> None:
    """Register ``step(state, dt, vel) -> new_state`` (state is the tuple (a, w, b))."""
    _INTEGRATORS[name] = step


def list_integrators() -> list[str]:
    return sorted(_INTEGRATORS)


def get_integrator(name: str) -> Callable[[State, float, VelFn], State]:
    try:
        return _INTEGRATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown integrator {name!r}; valid: {', '.join(list_integrators())}") from None


def _axpy(s: State, dt: float, v: State) -> State:
    return tuple(x if u is None else x + dt * u for x, u in zip(s, v))


def _euler(s, dt, vel):
    return _axpy(s, dt, vel(s))


def _heun(s, dt, vel):
    k1 = vel(s)
    k2 = vel(_axpy(s, dt, k1))
    return tuple(x if u1 is None else x + 0.5 * dt * (u1 + u2) for x, u1, u2 in zip(s, k1, k2))


def _rk4(s, dt, vel):
    k1 = vel(s)
    k2 = vel(_axpy(s, dt / 2, k1))
    k3 = vel(_axpy(s, dt / 2, k2))
    k4 = vel(_axpy(s, dt, k3))
    return tuple(x if u1 is None else x + dt / 6 * (u1 + 2 * u2 + 2 * u3 + u4)
                 for x, u1, u2, u3, u4 in zip(s, k1, k2, k3, k4))


register_integrator("euler", _euler)
register_integrator("heun", _heun)
register_integrator("rk4", _rk4)


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
                                    m=particles.m, n=data.n, d=particles.d, batch=particles.batch)
    vel = _make_vel(particles, data, config, be)
    return vel((particles.a, particles.w, particles.b))


def _make_vel(particles: Particles, data: BatchedData, config: FlowConfig, be: Backend) -> VelFn:
    act = particles.act
    loss = get_loss(config.loss)
    la, lw = _decays(config, particles.batch, particles.a)
    inner = config.train_inner

    def vel(s: State) -> State:
        a, w, b = s
        f = be.outputs(act, a, w, b, data.X)
        g = _weights(data, loss, f)
        va, vw, vb = be.velocities(act, a, w, b, data.X, g, inner=inner)
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
                             n=data.n, d=particles.d, batch=particles.batch)
        outputs = be.outputs(particles.act, particles.a, particles.w, particles.b, data.X)
    la, lw = _decays(config, particles.batch, particles.a)
    data_term = (data.p * loss.value(outputs, data.y)).sum(-1)
    reg = 0.5 * la * (particles.a ** 2).sum((-1, -2)) / particles.m
    reg = reg + 0.5 * lw * ((particles.w ** 2).sum((-1, -2)) + (particles.b ** 2).sum(-1)) / particles.m
    return data_term + reg


# ----------------------------------------------------------------------------- the loop
def _next_dt(cfg: FlowConfig, t: float) -> float:
    dt = cfg.dt if cfg.stepping == "fixed" else max(cfg.dt, cfg.ds * t)
    if cfg.dt_max is not None:
        dt = min(dt, cfg.dt_max)
    return min(dt, cfg.t_end - t)


def simulate(particles: Particles, data, config: FlowConfig = FlowConfig(), *,
             recorder=None, seed: int = 0, progress: Optional[bool] = None,
             checkpoint: Optional[str | os.PathLike] = None, checkpoint_every: float = 60.0,
             ) -> FlowResult:
    """Run the particle flow from t = 0 to ``config.t_end``.

    Args:
        particles: initial state (B systems).
        data: Samples / Distribution / (X, y[, p]) / sequence of Samples (one per system), or
            None for no data term (weight decay and noise only).
        config: the flow.
        recorder: a :class:`meanfield.record.Recorder` (default: loss at log-spaced times).
        seed: seed of the Langevin noise.
        progress: show a progress bar (default: only when stderr is a terminal).
        checkpoint: file to write checkpoints to; if it exists and matches this run, the run
            resumes from it and ends exactly where an uninterrupted run would.
        checkpoint_every: wall-clock seconds between checkpoints (0 = after every step).

    Returns:
        :class:`FlowResult`.

    Raises:
        DivergenceError: NaN/inf in the state, with the time and step where it appeared.
        ValueError: bad shapes or names, incompatible loss and labels, NaN in data or particles.
    """
    from .record import Checkpointer, Recorder, progress_bar

    for name, t_ in (("a", particles.a), ("w", particles.w), ("b", particles.b)):
        if not torch.isfinite(t_).all():
            raise ValueError(f"initial particles have NaN/inf in {name}; pass finite values")
    data = BatchedData.build(data, dtype=particles.dtype, device=particles.device, d=particles.d)
    B = particles.batch
    for what, t_ in (("X", data.X), ("y", data.y), ("p", data.p)):
        if t_.shape[0] not in (1, B):
            raise ValueError(f"data {what} has {t_.shape[0]} systems but particles have {B}")
    if data.X.shape[-1] != particles.d:
        raise ValueError(f"data have d = {data.X.shape[-1]} but particles have d = {particles.d}")
    loss = get_loss(config.loss)
    if data.n:
        loss.check(particles.k, data.num_classes)
    be = resolve_backend(config.backend, act=particles.act, device=particles.device, m=particles.m,
                         n=data.n, d=particles.d, batch=B)
    step_fn = get_integrator(config.integrator)
    vel = _make_vel(particles, data, config, be)
    taus = _per_system(config.tau, B, particles.a)
    noisy = bool((taus > 0).any())
    recorder = recorder if recorder is not None else Recorder()
    recorder.start(config.t_end)
    gen = torch.Generator(device=particles.device)
    gen.manual_seed(int(seed))

    state = (particles.a, particles.w, particles.b)
    t, k = 0.0, 0
    ckpt = Checkpointer(checkpoint, every=checkpoint_every, key=_run_key(particles, data, config, seed)) \
        if checkpoint is not None else None
    resumed_from = None
    if ckpt is not None and ckpt.exists():
        saved = ckpt.load(device=particles.device)
        state, t, k = saved["state"], saved["t"], saved["step"]
        gen.set_state(saved["rng"])
        recorder.load_state(saved["recorder"])
        resumed_from = t

    def current(st):
        return replace(particles, a=st[0], w=st[1], b=st[2])

    def record_now():
        p_now = current(state)
        f = be.outputs(p_now.act, *state, data.X)
        recorder.record(t=t, step=k, particles=p_now, outputs=f, data=data,
                        risk=risk(p_now, data, config, outputs=f))

    # numba kernels run their own threads: keep torch single-threaded meanwhile
    with _torch_threads(1 if getattr(be, "owns_threads", False) else None):
        if resumed_from is None and recorder.due(t):
            record_now()
        bar = progress_bar(total=config.t_end, enabled=progress, desc="flow")
        bar.update(t)
        while t < config.t_end * (1 - 1e-12):
            if k >= config.max_steps:
                raise RuntimeError(f"reached max_steps={config.max_steps} at t={t:.6g} < t_end="
                                   f"{config.t_end}; raise max_steps or use stepping='log'")
            dt = _next_dt(config, t)
            new = step_fn(state, dt, vel)
            if noisy:
                sd = torch.sqrt(2.0 * taus * dt)
                new = tuple(x if (i > 0 and not config.train_inner) else
                            x + sd.view(-1, *([1] * (x.dim() - 1))) *
                            torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
                            for i, x in enumerate(new))
            # one reduction and one host sync per step: a NaN/inf anywhere makes the sum non-finite
            if not bool(torch.isfinite(sum(x.sum() for x in new))):
                raise DivergenceError(
                    f"the flow diverged (NaN/inf) at step {k + 1}, t = {t + dt:.6g} (dt = {dt:.3g}); "
                    f"use a smaller step (dt{'/ds' if config.stepping == 'log' else ''}) or weight decay")
            state, t, k = new, t + dt, k + 1
            bar.update(dt)
            if recorder.due(t):
                record_now()
            if ckpt is not None and ckpt.due():
                ckpt.save(state=state, t=t, step=k, rng=gen.get_state(), recorder=recorder.state())
        bar.close()
        if not recorder.history or recorder.history[-1]["t"] != t:
            record_now()
        if ckpt is not None:
            ckpt.save(state=state, t=t, step=k, rng=gen.get_state(), recorder=recorder.state())
        return FlowResult(current(state), t, k, recorder.history, be.name, config, resumed_from,
                          recorder.snapshots)


@contextlib.contextmanager
def _torch_threads(n: Optional[int]):
    """Temporarily set torch's intra-op threads (None: leave them)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _run_key(particles: Particles, data: BatchedData, config: FlowConfig, seed: int) -> str:
    """A fingerprint of what defines a run, so a checkpoint of another run is never resumed."""
    import hashlib
    h = hashlib.sha256()
    h.update(repr(sorted(asdict(config).items())).encode())
    h.update(str(seed).encode())
    for t_ in (particles.a, particles.w, particles.b, data.X, data.y, data.p):
        h.update(t_.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
