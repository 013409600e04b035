"""KeOps backend: the two reductions as fused pykeops kernels, O(m + n) memory, CPU and CUDA.

Each reduction is one symbolic formula per (activation, reduction), written for a pair
(particle i, sample j) and reduced by KeOps without ever forming an m x n matrix:

.. math::

    f_{bj} = \\frac1m \\sum_i a_{bi}\\, \\sigma(z_{bij}),\\qquad z_{bij} = w_{bi}\\cdot x_{bj} + b_{bi}

    -\\big(v^a, v^w, v^b\\big)_{bi} = \\sum_j \\Big(g_{bj}\\,\\sigma(z_{bij}),\\;
        s_{bij}\\, x_{bj},\\; s_{bij}\\Big),\\qquad s_{bij} = (a_{bi}\\cdot g_{bj})\\,\\sigma'(z_{bij})

(the three velocity blocks are one ``Concat`` of dimension k + d + 1, one pass over the samples).
The dimensions k and d are parameters of the formula text; KeOps compiles each (formula, dtype,
k, d) once into ``KEOPS_CACHE_FOLDER`` (a few seconds each) and reuses it for every m, n and
batch size B. The batch dimension is a KeOps batch dimension (leading axis), and ``X (1, n, d)``
broadcasts over the B systems without a copy.

Kinks: KeOps's own ``ReLU`` derivative is ``Step`` with ``Step(0) = 1``, torch's is 0. This module
never differentiates symbolically: sigma' is written out as ``1 - Step(-z)`` (0 at z = 0) for relu
and ``IfElse(-z, slope, 1)`` (the slope at z = 0) for leaky relu, matching
:mod:`meanfield.activations` exactly. Only the built-in activations run here (by name);
user-registered ones run on ``dense``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Optional

import torch
from torch import Tensor

from ..activations import LEAKY_SLOPE, Activation
from .base import check_operands

__all__ = ["KeOpsBackend", "keops_formulas"]

log = logging.getLogger("meanfield")

# sigma(Z) and sigma'(Z) as KeOps formula text, Z the pre-activation. ``c`` is the leaky slope,
# passed as a parameter (KeOps's RatCst is rounded to float32, which would break float64 runs).
_SIG = "Inv(IntCst(1)+Exp(-(Z)))"                 # sigmoid(Z), stable: exp overflow gives 0
_SIG2 = "Inv(IntCst(1)+Exp(IntCst(-2)*(Z)))"      # sigmoid(2Z)
_U = "ClampInt(Z,0,1)"
_ACTS: dict[str, tuple[str, str]] = {
    "relu": ("ReLU(Z)", "(IntCst(1)-Step(-(Z)))"),
    "leaky_relu": ("IfElse(Z,Z,c*(Z))", "IfElse(-(Z),c,IntCst(1))"),
    "smoothstep": (f"(Square({_U})*(IntCst(3)-IntCst(2)*{_U}))",
                   f"(IntCst(6)*{_U}*(IntCst(1)-{_U}))"),
    # tanh z = 2 sigmoid(2z) - 1, tanh' z = 4 s (1 - s) with s = sigmoid(2z): no inf/inf anywhere
    "tanh": (f"(IntCst(2)*{_SIG2}-IntCst(1))", f"(IntCst(4)*{_SIG2}*(IntCst(1)-{_SIG2}))"),
    "sigmoid": (_SIG, f"({_SIG}*(IntCst(1)-{_SIG}))"),
    # softplus z = relu(z) + log(1 + exp(-|z|)): no overflow
    "softplus": ("(ReLU(Z)+Log(IntCst(1)+Exp(-Abs(Z))))", _SIG),
}
_PARAMS = {"leaky_relu": LEAKY_SLOPE}


def keops_formulas(act: str, reduction: str, k: int, d: int) -> tuple[str, list[str]]:
    """The KeOps formula and its variable declarations for one reduction.

    Args:
        act: a built-in activation name.
        reduction: ``outputs`` (i = sample, j = particle), ``velocities`` (i = particle,
            j = sample; output ``-(g sigma, s x, s)`` of dim k + d + 1) or ``velocities_a``
            (only ``-g sigma``, dim k: frozen inner weights).
        k, d: output and input dimensions.

    Returns:
        (formula, aliases) for :class:`pykeops.torch.Genred` with ``axis=1``.
    """
    if act not in _ACTS:
        raise ValueError(f"keops has no formula for activation {act!r}; built-ins: "
                         f"{', '.join(sorted(_ACTS))} (use backend='dense')")
    z = "((w|x)+b)"
    fn, dfn = (s.replace("Z", z) for s in _ACTS[act])
    extra = ["c=Pm(1)"] if act in _PARAMS else []
    if reduction == "outputs":
        return f"a*{fn}", [f"x=Vi({d})", f"a=Vj({k})", f"w=Vj({d})", "b=Vj(1)"] + extra
    al = [f"a=Vi({k})", f"w=Vi({d})", "b=Vi(1)", f"x=Vj({d})", f"g=Vj({k})"] + extra
    if reduction == "velocities_a":
        return f"-(g*{fn})", al
    if reduction == "velocities":
        # s = (a.g) sigma'(z) appears once, multiplied by (x, 1)
        return f"-Concat(g*{fn},((a|g)*{dfn})*Concat(x,IntCst(1)))", al
    raise ValueError(f"unknown reduction {reduction!r}; valid: outputs, velocities, velocities_a")


class KeOpsBackend:
    """Fused pykeops reductions (CPU with a C++ compiler, CUDA with the CUDA toolkit).

    Memory is O(B (m + n)) whatever m n is. ``available()`` and ``supports()`` compile and run a
    tiny probe once per device type (cached), so a broken pykeops install never crashes a run: it
    reads as unavailable and ``auto`` falls back to ``dense``.
    """

    name = "keops"

    def __init__(self):
        self._probe: dict[str, bool] = {}
        self._routines: dict[tuple, object] = {}

    # ------------------------------------------------------------------ availability
    def _probe_device(self, device_type: str) -> bool:
        if device_type not in self._probe:
            ok = False
            try:
                if device_type == "cuda" and not torch.cuda.is_available():
                    raise RuntimeError("no CUDA device")
                dev = torch.device(device_type)
                a = torch.ones(1, 2, 1, device=dev)
                w = torch.ones(1, 2, 2, device=dev)
                b = torch.zeros(1, 2, device=dev)
                X = torch.ones(1, 3, 2, device=dev)
                f = self._run("relu", "outputs", X, a, w, b[..., None])
                ok = bool(torch.allclose(f.cpu(), torch.full((1, 3, 1), 4.0)))
                if not ok:
                    log.warning("keops probe on %s returned a wrong value; keops disabled there",
                                device_type)
            except Exception as e:  # noqa: BLE001 - any failure means "not available here"
                log.warning("keops unavailable on %s: %s: %s", device_type, type(e).__name__, e)
            self._probe[device_type] = ok
        return self._probe[device_type]

    def available(self) -> bool:
        """True when pykeops imports and compiles a probe (CUDA if present, else CPU); cached."""
        if torch.cuda.is_available() and self._probe_device("cuda"):
            return True
        return self._probe_device("cpu")

    def supports(self, act: Activation, device: torch.device) -> bool:
        """Built-in activations (by name) on a device type where the probe ran."""
        device = torch.device(device)
        return (bool(getattr(act, "builtin", False)) and act.name in _ACTS
                and device.type in ("cpu", "cuda") and self._probe_device(device.type))

    # ------------------------------------------------------------------ kernels
    def _routine(self, act: str, reduction: str, k: int, d: int):
        key = (act, reduction, k, d)
        if key not in self._routines:
            with contextlib.redirect_stdout(io.StringIO()):  # pykeops prints a CUDA warning on import
                from pykeops.torch import Genred
            formula, aliases = keops_formulas(act, reduction, k, d)
            self._routines[key] = Genred(formula, aliases, reduction_op="Sum", axis=1)
        return self._routines[key]

    def _run(self, act: str, reduction: str, *args: Tensor) -> Tensor:
        """Call the routine; args are 3-D (batch, rows, dim) tensors in the alias order."""
        if reduction == "outputs":
            k, d = args[1].shape[-1], args[0].shape[-1]
        else:
            k, d = args[0].shape[-1], args[1].shape[-1]
        routine = self._routine(act, reduction, k, d)
        args = tuple(t.contiguous() for t in args)
        if act in _PARAMS:
            args = args + (torch.full((1, 1, 1), _PARAMS[act], dtype=args[0].dtype,
                                      device=args[0].device),)
        backend = "GPU" if args[0].is_cuda else "CPU"
        return routine(*args, backend=backend)

    @staticmethod
    def _check(act: Activation, *ts: Tensor) -> None:
        if act.name not in _ACTS or not getattr(act, "builtin", False):
            raise ValueError(f"keops runs only the built-in activations ({', '.join(sorted(_ACTS))});"
                             f" {act.name!r} is user-defined: use backend='dense'")
        dt = {t.dtype for t in ts}
        if len(dt) != 1 or next(iter(dt)) not in (torch.float32, torch.float64):
            raise ValueError(f"keops needs one dtype, float32 or float64, for every operand; got "
                             f"{sorted(map(str, dt))}")
        if len({t.device for t in ts}) != 1:
            raise ValueError("keops operands must be on one device; move them with .to(device)")

    def outputs(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor) -> Tensor:
        """f ((B, n, k) Tensor) = (1/m) sum_i a_i sigma(w_i . x_j + b_i)."""
        check_operands(a, w, b, X)
        self._check(act, a, w, b, X)
        B, m, k = a.shape
        n = X.shape[1]
        if n == 0:
            return a.new_zeros(B, 0, k)
        f = self._run(act.name, "outputs", X, a, w, b[..., None])
        if f.shape[0] != B:  # B = 1 operands with Bx = 1: KeOps keeps the batch axis anyway
            f = f.expand(B, n, k)
        return f / m

    def velocities(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Tensor,
                   *, inner: bool = True) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(v_a (B, m, k), v_w (B, m, d) or None, v_b (B, m) or None), see :mod:`meanfield.backends`."""
        check_operands(a, w, b, X, g)
        self._check(act, a, w, b, X, g)
        B, m, k = a.shape
        n, d = X.shape[1], X.shape[2]
        if n == 0:
            return (a.new_zeros(B, m, k), a.new_zeros(B, m, d) if inner else None,
                    a.new_zeros(B, m) if inner else None)
        if not inner:
            return self._run(act.name, "velocities_a", a, w, b[..., None], X, g), None, None
        v = self._run(act.name, "velocities", a, w, b[..., None], X, g)
        return v[..., :k].contiguous(), v[..., k:k + d].contiguous(), v[..., k + d].contiguous()
