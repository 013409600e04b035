"""Time stepping of the particle flow: the integrator registry and the step-size rule.

An integrator is ``step(state, dt, vel) -> new_state`` on the tuple ``state = (a, w, b)`` (``w``
and ``b`` may be frozen: their velocity is None). The step size at time t is

.. math::

    dt(t) = \\min\\big(dt_{\\max},\\ \\max(dt, ds\\, t),\\ t_{\\mathrm{end}} - t,\\ s - t\\big)

with ``max(dt, ds t)`` only for ``stepping='log'`` (plain ``dt`` for ``fixed``), ``dt_max`` only
when set, and ``s`` the next of ``FlowConfig.stops`` after t: the flow lands exactly on every
stop, so a run cut at a stop and continued (``simulate(result, ...)``) takes the same steps as
one uninterrupted run. t is the absolute time (a run covers ``[t0, t_end]``).
"""

from __future__ import annotations

from typing import Callable

from .registry import Registry

__all__ = ["State", "VelFn", "register_integrator", "list_integrators", "get_integrator",
           "next_dt", "passed"]

State = tuple  # (a, w, b)
VelFn = Callable[[State], State]

def _check_step(name: str, step) -> None:
    if not callable(step):
        raise ValueError(f"integrator {name!r} must be callable step(state, dt, vel) -> state")


INTEGRATORS: Registry = Registry("integrator", check=_check_step,
                                 hint="add one with meanfield.flow.register_integrator")


def register_integrator(name: str, step: Callable[[State, float, VelFn], State], *,
                        overwrite: bool = False) -> None:
    """Register ``step(state, dt, vel) -> new_state`` (state is the tuple (a, w, b))."""
    INTEGRATORS.register(name, step, overwrite=overwrite)


def list_integrators() -> list[str]:
    return INTEGRATORS.list()


def get_integrator(name: str) -> Callable[[State, float, VelFn], State]:
    return INTEGRATORS.get(name)


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


for _name, _step in (("euler", _euler), ("heun", _heun), ("rk4", _rk4)):
    INTEGRATORS.register(_name, _step, builtin=True)


def passed(t: float, target: float) -> bool:
    """Whether time t has reached ``target`` (relative tolerance 1e-12, as the main loop)."""
    return t >= target * (1 - 1e-12)


def next_dt(cfg, t: float) -> float:
    """The step from absolute time t (see the module docstring); ``cfg`` a FlowConfig."""
    dt = cfg.dt if cfg.stepping == "fixed" else max(cfg.dt, cfg.ds * t)
    if cfg.dt_max is not None:
        dt = min(dt, cfg.dt_max)
    for s in cfg.stops:
        if not passed(t, s):
            dt = min(dt, s - t)
            break
    return min(dt, cfg.t_end - t)
