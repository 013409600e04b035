"""Blow-up detection for the particle flow and for finite-net training.

Without Langevin noise the particle flow is a gradient flow of the objective (risk plus weight
decay, :func:`meanfield.flow.risk`), so the objective cannot rise along the exact flow. A time
step that is too large breaks this first, long before NaN/inf appear (a ReLU network hit by a
step of dt = 1e3 jumps to a norm of 1e17 in one step and then sits there with every neuron
dead and a finite, constant risk). :class:`FlowMonitor` therefore watches, every
``DivergenceCheck.every`` steps, per system:

- the objective R (noise-free systems only): with ``tol = max(rtol |R_prev|, c eps R_max)``
  (``eps`` the machine epsilon of the dtype, ``R_max`` the largest objective seen so far: the
  floor of rounding noise, which matters in float32 once R is tiny, e.g. an exponential loss at
  large log-time), it raises when R rises by more than ``tol`` at ``window`` consecutive checks,
  or at once when R rises by more than ``jump |R_prev| + tol`` in one check, or is NaN/inf;
- the parameter norm ``rms = sqrt(mean_i |a_i|^2 + |w_i|^2 + b_i^2)``: it raises when
  ``rms > max(max_norm, noise_factor * rms_0)``; with noise (tau > 0) and weight decay the
  bound is ``noise_factor * max(sqrt(tau / lam) sqrt(k + d + 1), rms_0)`` instead, where
  ``sqrt(tau / lam)`` per coordinate is the stationary scale of mean-field Langevin with decay
  ``lam = min(lam_a, lam_w)`` (with tau > 0 the objective may rise, so only the norm is watched).

For training (:func:`meanfield.deep.train.train`), :class:`EpochMonitor` watches the epoch-mean
objective (mean mini-batch data term plus the weight-decay penalty at the end of the epoch): it
raises when it is NaN/inf, or when it rose at ``window`` consecutive epochs and by more than
``rtol`` (relative) over those epochs in total; SGD noise makes single rises common, hence the
lenient training defaults ``DivergenceCheck(window=5, rtol=0.5)``. It also raises at once when
the objective jumps by orders of magnitude: above ``TRAIN_JUMP * max(best, TRAIN_FLOOR * R_0)``
(``best`` the smallest epoch objective so far and the initial objective ``R_0`` included, so
``1e3`` times the best, but never below ``10 R_0``). A too large learning rate with Adam sends the
objective up 1e4-1e13 fold in an epoch and then lets it sit there, finite and slowly falling, so
neither NaN nor a run of rises shows it; the floor keeps the spikes that Adam makes and recovers
from once a loss is near zero from counting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

__all__ = ["DivergenceError", "DivergenceCheck", "FlowMonitor", "EpochMonitor"]

FLOW_FIX = "use a smaller step: reduce flow.dt / dt_max, or use stepping='log' with a smaller ds"
TRAIN_FIX = "lower the learning rate (train.lr) or add weight decay"
TRAIN_JUMP = 1e3  # training: raise once the epoch objective exceeds this times its best so far,
TRAIN_FLOOR = 1e-2  # with the best floored at this times the initial objective (EpochMonitor)


class DivergenceError(RuntimeError, FloatingPointError):
    """A run blew up (NaN/inf, a rising objective, or an exploding norm); the message says when
    (time, step, dt or epoch) and what to change. Also a FloatingPointError, which is what
    training raised for a NaN loss before."""


@dataclass(frozen=True)
class DivergenceCheck:
    """Thresholds of the blow-up checks (see the module docstring for the exact rules).

    Attributes:
        enabled: False switches every check off except the NaN/inf test of the state.
        every: check every this many steps (flow); training checks every epoch.
        rtol: relative rise of the objective that counts as a rise.
        window: raise after this many consecutive rises (flow: checks; training: epochs).
        jump: flow only: raise at once when one check rises by more than ``jump |R|``
            (``inf`` disables).
        eps_factor: c in the rounding floor ``c eps R_max`` of a rise (flow only).
        max_norm: flow: absolute bound on the root-mean-square parameter norm.
        noise_factor: flow: bound as a multiple of the initial (or, with noise, the stationary)
            root-mean-square norm.
    """

    enabled: bool = True
    every: int = 1
    rtol: float = 1e-3
    window: int = 5
    jump: float = 1.0
    eps_factor: float = 1e3
    max_norm: float = 1e8
    noise_factor: float = 1e3

    def __post_init__(self):
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"DivergenceCheck.every must be a positive integer, got {self.every!r}")
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"DivergenceCheck.window must be a positive integer, got {self.window!r}")
        for name in ("rtol", "jump", "eps_factor", "max_norm", "noise_factor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and not math.isnan(v)):
                raise ValueError(f"DivergenceCheck.{name} must be a number >= 0 (inf to disable), "
                                 f"got {v!r}")


class FlowMonitor:
    """Per-system objective and norm watch of one flow run (see the module docstring).

    Args:
        check: the thresholds.
        taus: Langevin temperature of every system.
        lams: the weaker weight decay ``min(lam_a, lam_w)`` of every system.
        rms0: initial root-mean-square parameter norm of every system.
        dim: coordinates per neuron, k + d + 1.
        dtype: the flow's dtype (for the rounding floor).
    """

    def __init__(self, check: DivergenceCheck, *, taus: Sequence[float], lams: Sequence[float],
                 rms0: Sequence[float], dim: int, dtype: torch.dtype):
        self.check = check
        self.noisy = [t > 0 for t in taus]
        self.eps = torch.finfo(dtype).eps
        self.bound = []
        for tau, lam, r0 in zip(taus, lams, rms0):
            if tau > 0 and lam > 0:
                self.bound.append(check.noise_factor * max(math.sqrt(tau / lam * dim), r0))
            else:
                self.bound.append(max(check.max_norm, check.noise_factor * r0))
        B = len(self.noisy)
        self.prev: list[Optional[float]] = [None] * B
        self.rmax = [0.0] * B
        self.rises = [0] * B
        self.start = [0.0] * B

    def due(self, step: int) -> bool:
        return self.check.enabled and step % self.check.every == 0

    def observe(self, R: Sequence[float], rms: Sequence[float], *, t: float, step: int,
                dt: float) -> None:
        """Take the objective R and the rms norm of every system at (t, step).

        Raises:
            DivergenceError: naming t, the step, dt, the system and the fix.
        """
        c = self.check
        for s, (r, n) in enumerate(zip(R, rms)):
            why = None
            if not math.isfinite(n) or n > self.bound[s]:
                why = (f"the parameter norm (root mean square over neurons) is {n:.3g}, past its "
                       f"bound {self.bound[s]:.3g} (DivergenceCheck.max_norm / noise_factor)")
            elif not self.noisy[s]:
                if not math.isfinite(r):
                    why = f"the objective is {r}"
                elif self.prev[s] is not None:
                    p = self.prev[s]
                    tol = max(c.rtol * abs(p), c.eps_factor * self.eps * self.rmax[s])
                    if r - p > c.jump * abs(p) + tol:
                        why = (f"the objective jumped from {p:.6g} to {r:.6g} in one check; a "
                               "gradient flow never rises")
                    elif r - p > tol:
                        self.start[s] = p if self.rises[s] == 0 else self.start[s]
                        self.rises[s] += 1
                        if self.rises[s] >= c.window:
                            why = (f"the objective rose at {self.rises[s]} consecutive checks, from "
                                   f"{self.start[s]:.6g} to {r:.6g}; a gradient flow never rises")
                    else:
                        self.rises[s] = 0
                if math.isfinite(r):
                    self.prev[s] = r
                    self.rmax[s] = max(self.rmax[s], abs(r))
            if why is not None:
                sys_ = f" in system {s}" if len(self.prev) > 1 else ""
                raise DivergenceError(
                    f"the flow diverged at step {step}, t = {t:.6g} (dt = {dt:.3g}){sys_}: {why}; "
                    f"{FLOW_FIX} (thresholds: FlowConfig.divergence)")


class EpochMonitor:
    """Epoch-mean objective watch of a training run (see the module docstring).

    Args:
        check: the thresholds (``check.enabled`` False keeps only the NaN/inf test).
        start: the objective before the first step (None: the first epoch's value is the start).
        jump: the factor over the best objective so far that raises at once (``inf`` disables).
        floor: the best objective is taken as at least ``floor * start`` in the jump rule.
    """

    def __init__(self, check: DivergenceCheck, *, start: Optional[float] = None,
                 jump: float = TRAIN_JUMP, floor: float = TRAIN_FLOOR):
        self.check = check
        self.values: list[float] = []
        self.jump = float(jump)
        self.floor = float(floor)
        self.start = float(start) if start is not None and math.isfinite(start) else None
        self.best: Optional[float] = self.start

    def observe(self, value: float, *, epoch: int, step: int) -> None:
        """Take the epoch-mean objective of ``epoch``.

        Raises:
            DivergenceError: naming the epoch, the step, the values and the fix.
        """
        why = None
        if not math.isfinite(value):
            why = f"the epoch-mean objective is {value}"
        elif self.check.enabled:
            if self.best is None and self.values:  # a resume from a checkpoint without its best
                self.best = min(self.values)
            if self.start is None:
                self.start = value
            ref = max(self.best if self.best is not None else value, self.floor * abs(self.start))
            if ref > 0 and value > self.jump * ref:  # (a registered loss may be negative)
                start = f", {self.start:.6g} at the start" if self.start != self.best else ""
                why = (f"the epoch-mean objective jumped to {value:.6g}, more than {self.jump:.3g} "
                       f"times its best so far ({self.best:.6g}{start})")
            self.best = value if self.best is None else min(self.best, value)
            self.values.append(value)
            w = self.check.window
            last = self.values[-(w + 1):]
            if why is None and len(last) == w + 1 and all(b > a for a, b in zip(last, last[1:])) \
                    and last[-1] - last[0] > self.check.rtol * abs(last[0]):
                why = (f"the epoch-mean objective rose at {w} consecutive epochs, from "
                       f"{last[0]:.6g} to {last[-1]:.6g}")
            del self.values[:-(w + 1)]
        if why is not None:
            raise DivergenceError(f"training diverged at epoch {epoch} (step {step}): {why}; "
                                  f"{TRAIN_FIX} (thresholds: TrainConfig.divergence)")
