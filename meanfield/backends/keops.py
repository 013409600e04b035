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
:mod:`meanfield.activations` exactly. The formulas come from the activation object
(:attr:`meanfield.activations.Activation.keops`); activations without them run on ``dense``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from typing import Optional

import torch
from torch import Tensor

from ..activations import Activation, get_activation
from .base import check_operands

__all__ = ["KeOpsBackend", "keops_formulas"]

log = logging.getLogger("meanfield")

def _kernel(act):
    act = get_activation(act)
    if act.keops is None:
        raise ValueError(f"activation {act.name!r} has no keops formulas (register it with "
                         "keops=(sigma, dsigma) formula strings, or use backend='dense')")
    return act.keops


def keops_formulas(act, reduction: str, k: int, d: int) -> tuple[str, list[str]]:
    """The KeOps formula and its variable declarations for one reduction.

    Args:
        act: an :class:`~meanfield.activations.Activation` with ``keops`` formulas, or its name.
        reduction: ``outputs`` (i = sample, j = particle), ``velocities`` (i = particle,
            j = sample; output ``-(g sigma, s x, s)`` of dim k + d + 1) or ``velocities_a``
            (only ``-g sigma``, dim k: frozen inner weights).
        k, d: output and input dimensions.

    Returns:
        (formula, aliases) for :class:`pykeops.torch.Genred` with ``axis=1``.
    """
    kern = _kernel(act)
    z = "((w|x)+b)"
    fn, dfn = (_subst(s, z) for s in (kern.fn, kern.deriv))
    extra = [f"{name}=Pm(1)" for name, _ in kern.params]
    if reduction == "outputs":
        return f"a*{fn}", [f"x=Vi({d})", f"a=Vj({k})", f"w=Vj({d})", "b=Vj(1)"] + extra
    al = [f"a=Vi({k})", f"w=Vi({d})", "b=Vi(1)", f"x=Vj({d})", f"g=Vj({k})"] + extra
    if reduction == "velocities_a":
        return f"-(g*{fn})", al
    if reduction == "velocities":
        # s = (a.g) sigma'(z) appears once, multiplied by (x, 1)
        return f"-Concat(g*{fn},((a|g)*{dfn})*Concat(x,IntCst(1)))", al
    raise ValueError(f"unknown reduction {reduction!r}; valid: outputs, velocities, velocities_a")


def _subst(formula: str, z: str) -> str:
    """Replace the variable ``Z`` (a whole token) by ``z``."""
    return re.sub(r"(?<![A-Za-z0-9_])Z(?![A-Za-z0-9_])", z, formula)


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
                f = self._run(get_activation("relu"), "outputs", X, a, w, b[..., None])
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
        """Activations with keops formulas, on a device type where the probe ran."""
        device = torch.device(device)
        return (getattr(act, "keops", None) is not None and device.type in ("cpu", "cuda")
                and self._probe_device(device.type))

    # ------------------------------------------------------------------ kernels
    def _routine(self, act: Activation, reduction: str, k: int, d: int):
        key = (act.keops, reduction, k, d)
        if key not in self._routines:
            with contextlib.redirect_stdout(io.StringIO()):  # pykeops prints a CUDA warning on import
                from pykeops.torch import Genred
            formula, aliases = keops_formulas(act, reduction, k, d)
            self._routines[key] = Genred(formula, aliases, reduction_op="Sum", axis=1)
        return self._routines[key]

    def _run(self, act: Activation, reduction: str, *args: Tensor) -> Tensor:
        """Call the routine; args are 3-D (batch, rows, dim) tensors in the alias order."""
        if reduction == "outputs":
            k, d = args[1].shape[-1], args[0].shape[-1]
        else:
            k, d = args[0].shape[-1], args[1].shape[-1]
        routine = self._routine(act, reduction, k, d)
        args = tuple(t.contiguous() for t in args)
        args = args + tuple(torch.full((1, 1, 1), value, dtype=args[0].dtype, device=args[0].device)
                            for _, value in act.keops.params)
        backend = "GPU" if args[0].is_cuda else "CPU"
        return routine(*args, backend=backend)

    @staticmethod
    def _check(act: Activation, *ts: Tensor) -> None:
        if getattr(act, "keops", None) is None:
            raise ValueError(f"keops runs activations with keops formulas; {act.name!r} has none: "
                             "use backend='dense' or register it with keops=(sigma, dsigma)")
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
        f = self._run(act, "outputs", X, a, w, b[..., None])
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
            return self._run(act, "velocities_a", a, w, b[..., None], X, g), None, None
        v = self._run(act, "velocities", a, w, b[..., None], X, g)
        return v[..., :k].contiguous(), v[..., k:k + d].contiguous(), v[..., k + d].contiguous()
