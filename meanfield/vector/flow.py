"""Gradient flow of the three-layer network: the measure in Wasserstein, the head in Euclidean.

The objective (MSE with the paper's L2 regularisation of both parts; docs/science.md §6.4) is

.. math::

    F(\\rho, W) = \\sum_j p_j\\, \\tfrac12 \\|W h_\\rho(x_j) - e_{y_j}\\|^2
        + \\frac{\\lambda}{2} \\int |\\theta|^2 d\\rho + \\frac{\\lambda_W}{2} \\|W\\|_F^2 ,

with one-hot targets e_y in R^K and |theta|^2 = |a|^2 + |w|^2 + b^2. With residuals
r_j = W h_j - e_{y_j} the first variation of F in rho is V(theta) = sum_j p_j (W^T r_j) . a
sigma(w . x_j + b) + (lambda/2)|theta|^2, so the particles move with the scalar engine's velocity
field for the per-sample weights ``g_j = p_j W^T r_j`` in R^p (one call of a backend's
``velocities``), and the head follows

.. math::

    \\dot\\theta_i = -\\nabla_\\theta V(\\theta_i) = -m \\nabla_{\\theta_i} F, \\qquad
    \\dot W = -\\eta_W \\nabla_W F = -\\eta_W \\Big(\\sum_j p_j r_j h_j^T + \\lambda_W W\\Big)

on the same clock (``rate_W`` = eta_W). Gradient norms, as in the paper's statements: the
Wasserstein one ``||grad V||_{L2(rho)} = sqrt(mean_i |grad V(theta_i)|^2)`` and ``||grad_W F||_F``.
Integrators and the step rule are the scalar engine's (:mod:`meanfield.stepping`) on the state
tuple ``(a, w, b, W)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..backends import Backend
from ..divergence import FLOW_FIX, DivergenceError
from ..flow import BatchedData
from ..losses import one_hot_targets
from ..threads import torch_threads
from ..stepping import get_integrator, next_dt, passed
from .network import HeadedNetwork

__all__ = ["VectorFlowConfig", "VectorFlowResult", "prepare", "forward", "objective", "velocity",
           "grad_norms", "simulate_vector"]


@dataclass(frozen=True)
class VectorFlowConfig:
    """The flow of (rho, W).

    Attributes:
        lam: weight decay of the measure, (lam/2) E_rho(|a|^2 + |w|^2 + b^2).
        lam_W: weight decay of the head, (lam_W/2) ||W||_F^2.
        rate_W: the head's rate eta_W (dW/dt = -eta_W grad_W F) on the particles' clock.
        train_inner: False freezes (w, b) (a and W still move).
        integrator: integrator registry name (euler, heun, rk4).
        dt: time step (the smallest one with ``stepping='log'``).
        t_end: final time.
        stepping: ``fixed`` or ``log`` (dt_k = min(dt_max, max(dt, ds t_k))).
        ds: log-time step.
        dt_max: the largest step of ``log`` stepping (None: unbounded).
        backend: backend registry name or ``auto``.
        max_steps: safety cap on the number of steps.
        stops: must stay empty (the scalar step rule reads it; the vector flow lands on its
            record times instead).
    """

    lam: float = 1e-3
    lam_W: float = 1e-3
    rate_W: float = 1.0
    train_inner: bool = True
    integrator: str = "heun"
    dt: float = 0.05
    t_end: float = 100.0
    stepping: str = "fixed"
    ds: float = 0.02
    dt_max: Optional[float] = None
    backend: str = "auto"
    max_steps: int = 10_000_000
    stops: tuple = ()

    def __post_init__(self):
        get_integrator(self.integrator)
        if self.stepping not in ("fixed", "log"):
            raise ValueError(f"unknown stepping {self.stepping!r}; valid: fixed, log")
        for name in ("lam", "lam_W"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("rate_W", "dt", "t_end", "ds", "dt_max"):
            v = getattr(self, name)
            if v is None and name == "dt_max":
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        ms = self.max_steps
        if isinstance(ms, bool) or not isinstance(ms, numbers.Integral) or ms < 1:
            raise ValueError(f"max_steps must be a positive integer, got {ms!r}")
        if self.stops:
            raise ValueError("stops are not supported by the vector flow; leave stops=()")


@dataclass(frozen=True)
class VectorFlowResult:
    """The outcome of :func:`simulate_vector`: final network, time, steps, recorded rows
    (one per system and record time, with a ``system`` column) and the backend's name."""

    network: HeadedNetwork
    t: float
    steps: int
    history: list
    backend: str


@dataclass(frozen=True)
class Prepared:
    """Data for B systems with one-hot targets: ``X (1|B, n, d)``, ``Y (1|B, n, K)``,
    ``y (1|B, n)``, ``p (1|B, n)`` normalised to sum 1, ``C`` classes."""

    X: Tensor
    Y: Tensor
    y: Tensor
    p: Tensor
    C: int


def prepare(net: HeadedNetwork, data) -> Prepared:
    """Validate data against the network (Samples, Distribution, (X, y[, p]) or a sequence of
    Samples, one per system) and build one-hot targets.

    Raises:
        ValueError: no samples, d or the number of classes not matching the network, NaN.
    """
    if isinstance(data, Prepared):
        return data
    bd = BatchedData.build(data, dtype=net.dtype, device=net.device, d=net.d)
    if bd.n == 0:
        raise ValueError("the vector flow needs samples (got none); pass Samples or a Distribution")
    if bd.X.shape[-1] != net.d:
        raise ValueError(f"data have d = {bd.X.shape[-1]} but the network has d = {net.d}")
    if bd.num_classes != net.K:
        raise ValueError(f"data have {bd.num_classes} classes but the head has K = {net.K} rows; "
                         f"build the network with K = {bd.num_classes}")
    for name, t in (("X", bd.X), ("y", bd.y), ("p", bd.p)):
        if t.shape[0] not in (1, net.batch):
            raise ValueError(f"data {name} has {t.shape[0]} systems but the network has {net.batch}")
    if not torch.isfinite(bd.X).all():
        raise ValueError("data X has NaN/inf entries; pass finite inputs")
    if bd.num_classes < 2:
        raise ValueError("NC1 and the one-hot MSE need at least 2 classes; got 1")
    p = bd.p / bd.p.sum(-1, keepdim=True)
    return Prepared(bd.X, one_hot_targets(bd.y, net.K, net.dtype), bd.y, p, bd.num_classes)


def forward(net: HeadedNetwork, data: Prepared, be: Backend) -> tuple[Tensor, Tensor, Tensor]:
    """(h (B, n, p), f (B, n, K), r = f - targets (B, n, K))."""
    P = net.particles
    h = be.outputs(P.act, P.a, P.w, P.b, data.X)
    f = torch.matmul(h, net.W.transpose(1, 2))
    return h, f, f - data.Y


def objective(net: HeadedNetwork, data, cfg: VectorFlowConfig, *, backend: str | Backend = "auto"
              ) -> dict:
    """The parts of F for every system: ``loss`` (the MSE data term), ``reg_rho``, ``reg_W`` and
    ``total``, each (B,)."""
    data = prepare(net, data)
    be = net.backend_for(backend, data.X.shape[1])
    _, _, r = forward(net, data, be)
    return _parts(net, data, cfg, r)


def _parts(net: HeadedNetwork, data: Prepared, cfg: VectorFlowConfig, r: Tensor) -> dict:
    P = net.particles
    loss = 0.5 * (data.p * (r ** 2).sum(-1)).sum(-1)
    sq = (P.a ** 2).sum((-1, -2)) + (P.w ** 2).sum((-1, -2)) + (P.b ** 2).sum(-1)
    reg_rho = 0.5 * cfg.lam * sq / P.m
    reg_W = 0.5 * cfg.lam_W * (net.W ** 2).sum((-1, -2))
    return {"loss": loss, "reg_rho": reg_rho, "reg_W": reg_W, "total": loss + reg_rho + reg_W}


def _make_vel(net: HeadedNetwork, data: Prepared, cfg: VectorFlowConfig, be: Backend,
              out: Optional[dict] = None) -> Callable:
    act, inner = net.particles.act, cfg.train_inner

    def vel(s: tuple) -> tuple:
        a, w, b, W = s
        h = be.outputs(act, a, w, b, data.X)
        r = torch.matmul(h, W.transpose(1, 2)) - data.Y                      # (B, n, K)
        g = data.p[..., None] * torch.matmul(r, W)                          # p_j W^T r_j, (B, n, p)
        va, vw, vb = be.velocities(act, a, w, b, data.X, g, inner=inner)
        va = va - cfg.lam * a
        if inner:
            vw, vb = vw - cfg.lam * w, vb - cfg.lam * b
        gW = torch.matmul((data.p[..., None] * r).transpose(1, 2), h) + cfg.lam_W * W   # (B, K, p)
        if out is not None:
            out.update(h=h, r=r, gW=gW)
        return va, vw, vb, -cfg.rate_W * gW

    return vel


def velocity(net: HeadedNetwork, data, cfg: VectorFlowConfig, *, backend: str | Backend = "auto"
             ) -> tuple:
    """The flow's vector field at (rho, W): ``(v_a (B,m,p), v_w (B,m,d) or None, v_b (B,m) or None,
    v_W (B,K,p))`` with v_theta = -m grad_theta_i F and v_W = -rate_W grad_W F."""
    data = prepare(net, data)
    be = net.backend_for(backend, data.X.shape[1])
    return _make_vel(net, data, cfg, be)(net.state())


def grad_norms(net: HeadedNetwork, data, cfg: VectorFlowConfig, *, backend: str | Backend = "auto"
               ) -> dict:
    """Gradient norms of F for every system, (B,) each: ``grad_rho`` = ||grad V||_{L2(rho)}
    (Wasserstein), ``grad_a`` its a-part, ``grad_W`` = ||grad_W F||_F, ``grad`` = sqrt of the sum
    of the squares of grad_rho and grad_W."""
    data = prepare(net, data)
    be = net.backend_for(backend, data.X.shape[1])
    v = _make_vel(net, data, cfg, be)(net.state())
    return _norms(net, cfg, v)


def _norms(net: HeadedNetwork, cfg: VectorFlowConfig, v: tuple) -> dict:
    va, vw, vb, vW = v
    m = net.m
    sa = (va ** 2).sum((-1, -2)) / m
    s = sa + ((vw ** 2).sum((-1, -2)) + (vb ** 2).sum(-1)) / m if vw is not None else sa
    gW = (vW ** 2).sum((-1, -2)).sqrt() / cfg.rate_W
    return {"grad_rho": s.sqrt(), "grad_a": sa.sqrt(), "grad_W": gW, "grad": (s + gW ** 2).sqrt()}


def record_times(t0: float, t_end: float, num: int) -> list[float]:
    """``num`` log-spaced record times in (t0, t_end] (t_end included), plus t0 itself."""
    lo = max(t0, t_end * 1e-3) if t0 > 0 else t_end * 1e-3
    ts = torch.logspace(math.log10(lo), math.log10(t_end), max(int(num), 2), dtype=torch.float64)
    return [t0] + [float(x) for x in ts if float(x) > t0]


def simulate_vector(net: HeadedNetwork, data, cfg: VectorFlowConfig = VectorFlowConfig(), *,
                    record: Optional[Callable[[HeadedNetwork, Prepared, Backend, dict], dict]] = None,
                    times: Optional[Sequence[float]] = None, num_records: int = 30) -> VectorFlowResult:
    """Run the flow of (rho, W) from t = 0 to ``cfg.t_end``, recording at ``times``.

    Args:
        net: B networks.
        data: Samples / Distribution / tuple, or a sequence of Samples (one per system).
        cfg: the flow.
        record: ``record(net, data, backend, base) -> dict of (B,) tensors or floats`` adds
            columns to every row (``base`` holds the objective parts and gradient norms, (B,) each).
        times: record times (default ``num_records`` log-spaced times up to t_end, and t = 0).

    Returns:
        :class:`VectorFlowResult`; rows carry ``t``, ``step``, ``system``, ``loss``, ``reg_rho``,
        ``reg_W``, ``total``, ``grad_rho``, ``grad_a``, ``grad_W``, ``grad`` and the recorded columns.

    Raises:
        DivergenceError: NaN/inf in the state, or a rising objective (the flow is a gradient flow
            of F: a rise beyond rounding means the step is too large).
        ValueError: bad data or shapes (see :func:`prepare`).
    """
    data = prepare(net, data)
    be = net.backend_for(cfg.backend, data.X.shape[1])
    step_fn = get_integrator(cfg.integrator)
    vel = _make_vel(net, data, cfg, be)
    times = sorted(float(x) for x in (times if times is not None
                                      else record_times(0.0, cfg.t_end, num_records)))
    history: list = []
    eps = torch.finfo(net.dtype).eps
    # numba kernels run their own threads: keep torch single-threaded meanwhile (as simulate does)
    with torch_threads(1 if getattr(be, "owns_threads", False) else None):
        return _loop(net, data, cfg, be, step_fn, vel, record, times, history, eps)


def _loop(net, data, cfg, be, step_fn, vel, record, times, history, eps) -> VectorFlowResult:
    state, t, k, nxt = net.state(), 0.0, 0, 0
    prev_total: Optional[list] = None

    def write(st, t_now, k_now) -> list:
        cur = net.with_state(st)
        parts_out: dict = {}
        v = _make_vel(cur, data, cfg, be, parts_out)(st)
        base = {**_parts(cur, data, cfg, parts_out["r"]), **_norms(cur, cfg, v)}
        extra = record(cur, data, be, base) if record is not None else {}
        cols = {**base, **extra}
        vals = {c: (x.tolist() if isinstance(x, Tensor) else [x] * cur.batch) for c, x in cols.items()}
        for i in range(cur.batch):
            history.append({"t": t_now, "step": k_now, "system": i,
                            **{c: float(vals[c][i]) for c in vals}})
        return vals["total"]

    while nxt < len(times) and times[nxt] <= 0.0:
        prev_total = write(state, t, k)
        nxt += 1
    while not passed(t, cfg.t_end):
        if k >= cfg.max_steps:
            raise RuntimeError(f"reached max_steps={cfg.max_steps} at t={t:.6g} < t_end={cfg.t_end}; "
                               "raise max_steps or use stepping='log'")
        dt = next_dt(cfg, t)
        if nxt < len(times) and times[nxt] > t:
            dt = min(dt, times[nxt] - t)       # land on every record time
        new = step_fn(state, dt, vel)
        if not bool(torch.isfinite(sum(x.sum() for x in new if x is not None))):
            raise DivergenceError(f"the vector flow diverged (NaN/inf) at step {k + 1}, t = {t + dt:.6g} "
                                  f"(dt = {dt:.3g}); {FLOW_FIX}")
        state, t, k = new, t + dt, k + 1
        if nxt < len(times) and passed(t, times[nxt]):
            while nxt < len(times) and passed(t, times[nxt]):
                nxt += 1
            total = write(state, t, k)
            if prev_total is not None:
                for i, (a_, b_) in enumerate(zip(prev_total, total)):
                    if not math.isfinite(b_) or b_ > a_ + 1e-6 * abs(a_) + 1e3 * eps * max(abs(a_), 1.0):
                        raise DivergenceError(
                            f"the objective of system {i} rose from {a_:.6g} to {b_:.6g} by t = {t:.6g} "
                            f"(dt = {dt:.3g}); {FLOW_FIX}")
            prev_total = total
    if not history or history[-1]["t"] != t:
        write(state, t, k)
    return VectorFlowResult(net.with_state(state), t, k, history, be.name)
