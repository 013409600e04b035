"""The particle flow's main loop: :func:`simulate` (re-exported by :mod:`meanfield.flow`).

Steps the state with the configured integrator and step rule (:mod:`meanfield.stepping`), adds
the Langevin noise from its own generator (torch's global RNG is never touched), records at the
recorder's times, writes checkpoints, and watches for blow-ups (:mod:`meanfield.divergence`).
A :class:`~meanfield.flow.FlowResult` can be continued: ``simulate(result, data, config)``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import asdict, replace
from typing import Optional

import torch
from torch import Tensor

from .backends import Backend, resolve_backend
from .divergence import FLOW_FIX, DivergenceError, FlowMonitor
from .flow import (BatchedData, FlowConfig, FlowResult, _decays, _make_vel, _per_system, risk)
from .losses import get_loss
from .noise import SystemNoise, system_seeds
from .particles import Particles
from .stepping import State, get_integrator, next_dt, passed
from .threads import torch_threads

__all__ = ["simulate"]


def simulate(particles: "Particles | FlowResult", data, config: FlowConfig = FlowConfig(), *,
             recorder=None, seed=0, progress: Optional[bool] = None,
             checkpoint: Optional[str | os.PathLike] = None, checkpoint_every: float = 60.0,
             ) -> FlowResult:
    """Run the particle flow from ``config.t0`` (or a previous result's time) to ``config.t_end``.

    Args:
        particles: initial state (B systems), or a :class:`FlowResult` to continue: its final
            particles, time (``config.t0`` must be 0 or equal to it), step count, noise
            generator state and history carry over, so cutting a run at one of ``config.stops``
            and continuing it gives the uninterrupted run bit for bit.
        data: Samples / Distribution / (X, y[, p]) / sequence of Samples (one per system), or
            None for no data term (weight decay and noise only).
        config: the flow.
        recorder: a :class:`meanfield.record.Recorder` (default: loss at log-spaced times).
        seed: seed of the Langevin noise: an int (system b of a batch draws from its own
            generator seeded ``seed + b``), one int per system, or None to draw one from
            ``os.urandom`` (recorded in ``FlowResult.seed``). A system's noise never depends on
            the other systems of its batch (:mod:`meanfield.noise`). torch's global RNG is never
            touched.
        progress: show a progress bar (default: only when stderr is a terminal).
        checkpoint: file to write checkpoints to; if it exists and matches this run, the run
            resumes from it and ends exactly where an uninterrupted run would.
        checkpoint_every: wall-clock seconds between checkpoints (0 = after every step).

    Returns:
        :class:`FlowResult`.

    Raises:
        DivergenceError: NaN/inf in the state, a rising objective without noise, or a parameter
            norm past its bound (``config.divergence``), with the time, step and dt.
        ValueError: bad shapes or names, incompatible loss and labels, NaN in data or particles.
    """
    from .record import Checkpointer, Recorder, progress_bar

    prev = particles if isinstance(particles, FlowResult) else None
    if prev is not None:
        particles = prev.particles
        if config.t0 not in (0.0, prev.t):
            raise ValueError(f"config.t0 = {config.t0} but the result to continue ends at t = "
                             f"{prev.t}; leave t0 at 0 to continue from the result's time")
        if not config.t_end > prev.t:
            raise ValueError(f"t_end = {config.t_end} is not after the result's time {prev.t}")
    if not isinstance(particles, Particles):
        raise TypeError(f"particles must be Particles or a FlowResult to continue, got "
                        f"{type(particles).__name__}")
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
                         n=data.n, d=particles.d, batch=B, dtype=particles.dtype)
    step_fn = get_integrator(config.integrator)
    vel = _make_vel(particles, data, config, be)
    taus = _per_system(config.tau, B, particles.a)
    noisy = bool((taus > 0).any())
    recorder = recorder if recorder is not None else Recorder()
    recorder.start(config.t_end)
    if seed is None and prev is not None and prev.seed is not None:
        seed = prev.seed
    seeds = system_seeds(seed, B)
    seed_used = seeds[0] if B == 1 else seeds
    gen = SystemNoise(seeds, particles.device)
    if prev is not None and prev.rng_state is not None:
        gen.set_state(prev.rng_state)

    state = (particles.a, particles.w, particles.b)
    t, k = (prev.t, prev.steps) if prev is not None else (float(config.t0), 0)
    ckpt = Checkpointer(checkpoint, every=checkpoint_every,
                        key=_run_key(particles, data, config, seed, t, k)) \
        if checkpoint is not None else None
    resumed_from = None
    if ckpt is not None and ckpt.exists():
        saved = ckpt.load(device=particles.device)
        state, t, k = saved["state"], saved["t"], saved["step"]
        gen.set_state(saved["rng"])
        recorder.load_state(saved["recorder"])
        seed_used = saved.get("seed", seed_used)
        seed_used = tuple(seed_used) if isinstance(seed_used, (list, tuple)) else int(seed_used)
        resumed_from = t
    monitor = _monitor(config, particles, state, taus)
    probe: list = [None, None]  # (the state a step starts from, outputs there)

    def tracked(s: State) -> State:  # velocities, keeping the outputs at the step's start state
        if s is not probe[0]:
            return vel(s)
        kept: list = []
        v = vel(s, keep=kept)
        probe[1] = kept[0]
        return v

    def current(st):
        return replace(particles, a=st[0], w=st[1], b=st[2])

    def record_now():
        p_now = current(state)
        f = be.outputs(p_now.act, *state, data.X)
        recorder.record(t=t, step=k, particles=p_now, outputs=f, data=data,
                        risk=risk(p_now, data, config, outputs=f))

    # numba kernels run their own threads: keep torch single-threaded meanwhile; so do small
    # systems, whose steps are shorter than a thread hand-off (on a loaded machine two threads
    # made a 30-particle flow 30x slower). Ctrl-C is taken between two steps (a consistent
    # state) and saves a checkpoint before it stops the run
    small = particles.batch * particles.m * data.X.shape[-2] <= SMALL_PAIRS
    with torch_threads(1 if getattr(be, "owns_threads", False) or small else None), \
            _deferred_interrupt() as interrupted:
        if prev is not None:
            recorder.skip_to(t)  # the row at the result's time is in its history already
        elif resumed_from is None and recorder.due(t):
            record_now()
        bar = progress_bar(total=config.t_end, enabled=progress, desc="flow")
        bar.update(t)
        dt = 0.0
        while not passed(t, config.t_end):
            if interrupted["hit"]:
                _stop(ckpt, dict(state=state, t=t, step=k, rng=gen.get_state(),
                                 recorder=recorder.state(), seed=seed_used))
            if k >= config.max_steps:
                raise RuntimeError(f"reached max_steps={config.max_steps} at t={t:.6g} < t_end="
                                   f"{config.t_end}; raise max_steps or use stepping='log'")
            dt = next_dt(config, t)
            check = monitor is not None and monitor.due(k)
            probe[0], probe[1] = (state if check else None), None
            new = step_fn(state, dt, tracked if check else vel)
            if noisy:
                sd = torch.sqrt(2.0 * taus * dt)
                new = tuple(x if (i > 0 and not config.train_inner) else
                            x + sd.view(-1, *([1] * (x.dim() - 1))) * gen.randn_like(x)
                            for i, x in enumerate(new))
            # one reduction and one host sync per step: a NaN/inf anywhere makes the sum non-finite
            finite = torch.isfinite(sum(x.sum() for x in new))
            if check:
                R, rms = _objective(state, probe[1], data, loss, config, particles, be)
                vals = torch.cat([finite.to(R.dtype).reshape(1), R, rms]).tolist()
                monitor.observe(vals[1:B + 1], vals[B + 1:], t=t, step=k, dt=dt)
                finite = vals[0] == 1.0
            if not bool(finite):
                raise DivergenceError(
                    f"the flow diverged (NaN/inf) at step {k + 1}, t = {t + dt:.6g} (dt = {dt:.3g}); "
                    f"{FLOW_FIX}, or add weight decay")
            state, t, k = new, t + dt, k + 1
            bar.update(dt)
            if recorder.due(t):
                record_now()
            if ckpt is not None and ckpt.due():
                ckpt.save(state=state, t=t, step=k, rng=gen.get_state(), recorder=recorder.state(),
                          seed=seed_used)
        bar.close()
        if monitor is not None:  # the final state, which no step started from
            R, rms = _objective(state, None, data, loss, config, particles, be)
            monitor.observe(R.tolist(), rms.tolist(), t=t, step=k, dt=dt)
        if not recorder.history or recorder.history[-1]["t"] != t:
            record_now()
        if ckpt is not None:
            ckpt.save(state=state, t=t, step=k, rng=gen.get_state(), recorder=recorder.state(),
                      seed=seed_used)
        history, snapshots = recorder.history, recorder.snapshots
        if prev is not None:
            history, snapshots = prev.history + history, prev.snapshots + snapshots
        return FlowResult(current(state), t, k, history, be.name, config, resumed_from,
                          snapshots, seed_used, gen.get_state())


def _monitor(config: FlowConfig, particles: Particles, state: State, taus: Tensor
             ) -> Optional[FlowMonitor]:
    if not config.divergence.enabled:
        return None
    la, lw = _decays(config, particles.batch, particles.a)
    a, w, b = state
    rms0 = torch.sqrt(((a ** 2).sum((-1, -2)) + (w ** 2).sum((-1, -2)) + (b ** 2).sum(-1))
                      / particles.m)
    return FlowMonitor(config.divergence, taus=taus.tolist(), lams=torch.minimum(la, lw).tolist(),
                       rms0=rms0.tolist(), dim=particles.k + particles.d + 1, dtype=particles.dtype)


def _objective(state: State, f: Optional[Tensor], data: BatchedData, loss, config: FlowConfig,
               particles: Particles, be: Backend) -> tuple[Tensor, Tensor]:
    """R (risk plus decay, as :func:`risk`) and the rms parameter norm of every system, (B,) each."""
    a, w, b = state
    if f is None:  # an integrator that never evaluated the start state
        f = be.outputs(particles.act, a, w, b, data.X)
    la, lw = _decays(config, particles.batch, a)
    sa = (a ** 2).sum((-1, -2))
    sw = (w ** 2).sum((-1, -2)) + (b ** 2).sum(-1)
    R = (data.p * loss.value(f, data.y)).sum(-1) + 0.5 * (la * sa + lw * sw) / particles.m
    return R, torch.sqrt((sa + sw) / particles.m)


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn SIGINT into a flag read between two steps (a second Ctrl-C stops at once).

    Only in the main thread and only while Python's default handler is installed (a notebook's
    own handler is left alone: there Ctrl-C raises where it lands and the last checkpoint stays).
    """
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def _stop(ckpt, payload: dict) -> None:
    """Save a checkpoint of the state between two steps and raise KeyboardInterrupt carrying t."""
    e = KeyboardInterrupt()
    if ckpt is not None:
        ckpt.save(**payload)
        e.t = payload["t"]  # the CLI says: interrupted at t = ...; checkpoint saved
        e.checkpoint = str(ckpt.path)
    raise e


# systems with at most this many (system, particle, sample) triples step on one torch thread
SMALL_PAIRS = 1 << 16


def _run_key(particles: Particles, data: BatchedData, config: FlowConfig, seed: Optional[int],
             t0: float = 0.0, k0: int = 0) -> str:
    """A fingerprint of what defines a run, so a checkpoint of another run is never resumed.

    The divergence thresholds do not change a run's numbers and are left out; so are ``t0``,
    ``stops`` and the start step when they have their defaults (keys of older runs still match).
    """
    import hashlib
    h = hashlib.sha256()
    cfg = asdict(config)
    cfg.pop("divergence")
    for name, default in (("t0", 0.0), ("stops", ())):
        if cfg[name] == default:
            cfg.pop(name)
    h.update(repr(sorted(cfg.items())).encode())
    h.update(str(seed).encode())
    if particles.batch > 1:
        h.update(b"noise: one generator per system")  # older batched checkpoints do not match
    if (t0, k0) != (0.0, 0):
        h.update(f"{t0!r},{k0}".encode())
    for t_ in (particles.a, particles.w, particles.b, data.X, data.y, data.p):
        h.update(t_.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
