"""Backend protocol and registry (names resolved lazily, so optional libraries load on demand)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Callable, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..activations import Activation
from ..registry import Registry

__all__ = ["Backend", "get_backend", "list_backends", "register_backend", "resolve_backend",
           "check_operands"]

log = logging.getLogger("meanfield")


@runtime_checkable
class Backend(Protocol):
    """The two reductions of a mean-field step (see :mod:`meanfield.backends`).

    Shapes: ``a (B, m, k)``, ``w (B, m, d)``, ``b (B, m)``, ``X (Bx, n, d)`` with ``Bx`` in
    {1, B} (1 = the same samples for every system), ``g (B, n, k)``.
    """

    name: str

    def available(self) -> bool:
        """Whether the backend can run here (libraries present)."""

    def supports(self, act: Activation, device: torch.device) -> bool:
        """Whether this activation runs on this device with this backend."""

    def outputs(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor) -> Tensor:
        """f ((B, n, k) Tensor) = (1/m) sum_i a_i sigma(w_i . x_j + b_i)."""

    def velocities(self, act: Activation, a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Tensor,
                   *, inner: bool = True) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(v_a (B, m, k), v_w (B, m, d) or None, v_b (B, m) or None); None when inner=False."""


def _check_factory(name: str, factory) -> None:
    if not callable(factory):
        raise ValueError(f"backend {name!r} needs a factory: a callable returning a Backend")


# name -> factory (a class or callable returning a Backend); built-ins are imported on first use
BACKENDS: Registry = Registry("backend", check=_check_factory,
                              hint="or 'auto'; add one with meanfield.backends.register_backend")
for _name, _spec in (("dense", "meanfield.backends.dense:DenseBackend"),
                     ("keops", "meanfield.backends.keops:KeOpsBackend"),
                     ("numba", "meanfield.backends.numba_cpu:NumbaBackend")):
    BACKENDS.register(_name, _spec, builtin=True)
_INSTANCES: dict[str, Backend] = {}


def register_backend(name: str, factory: Callable[[], Backend], *, overwrite: bool = True) -> None:
    """Register a backend factory under a name (for experiments with a new reduction engine)."""
    BACKENDS.register(name, factory, overwrite=overwrite)
    _INSTANCES.pop(name, None)


def list_backends() -> list[str]:
    """Registered backend names, plus ``auto``."""
    return BACKENDS.list() + ["auto"]


def get_backend(name: str | Backend) -> Backend:
    """The backend instance of that name (``auto`` is resolved by :func:`resolve_backend`).

    Raises:
        ValueError: for an unknown name (listing the valid ones) or a backend whose library is
            missing (saying what to install).
    """
    if not isinstance(name, str):
        return name
    if name not in _INSTANCES:
        try:
            fac = BACKENDS.get(name)
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError(f"backend {name!r} cannot be loaded ({e}); install its library "
                             "or use backend='dense'") from e
        _INSTANCES[name] = fac()
    be = _INSTANCES[name]
    if not be.available():
        raise ValueError(f"backend {name!r} is not available here (its library is missing or "
                         "failed to load); use backend='dense' or 'auto'")
    return be


def _try(name: str) -> Optional[Backend]:
    try:
        return get_backend(name)
    except ValueError:
        return None


#: the measured crossover table ``auto`` reads on CPU (written by ``meanfield bench --write-table``)
TABLE_PATH = Path(__file__).with_name("auto_table.json")
TABLE_VERSION = 1
_TABLE: dict = {}
TINY = 4096  # per-system m n below which CUDA runs dense (kernel launch overhead)


def load_table(path: Optional[str | Path] = None) -> dict:
    """The crossover table (cached per path): ``{"version", "machine", "date", "rows": [...]}``.

    Each row is one measurement: ``act, dtype, d, m, n`` and the seconds per reduction pair of
    each backend (``numba_s``, ``dense_s``); ``best`` is the faster one.

    Raises:
        ValueError: a table of another version, or without rows.
    """
    path = Path(path or os.environ.get("MEANFIELD_AUTO_TABLE") or TABLE_PATH)
    key = str(path)
    if key not in _TABLE:
        try:
            tab = json.loads(path.read_text())
        except FileNotFoundError:
            tab = {"version": TABLE_VERSION, "rows": []}
        if tab.get("version") != TABLE_VERSION or not isinstance(tab.get("rows"), list):
            raise ValueError(f"backend table {path} has version {tab.get('version')!r}, expected "
                             f"{TABLE_VERSION}; re-measure it with `meanfield bench --write-table`")
        _TABLE[key] = tab
    return _TABLE[key]


def table_choice(act: Activation, dtype: torch.dtype, m: int, n: int, d: int,
                 table: Optional[dict] = None) -> tuple[str, str]:
    """CPU choice between numba and dense from the measured table: (name, why).

    The nearest measured row of this activation and dtype decides: nearest in log d first (the
    crossover is mostly a function of d), then in log(m n). An activation or dtype the table has
    not measured runs on dense. Never depends on the batch size.
    """
    tab = load_table() if table is None else table
    dt = str(dtype).replace("torch.", "")
    rows = [r for r in tab["rows"] if r["act"] == act.name and r["dtype"] == dt]
    if not rows:
        return "dense", f"no measurement for {act.name}/{dt} in the backend table"
    mn = max(m * n, 1)

    def dist(r):
        return (4.0 * abs(math.log(max(d, 1) / r["d"])) + abs(math.log(mn / (r["m"] * r["n"]))))
    r = min(rows, key=dist)
    return r["best"], (f"table {tab.get('date', '?')}: nearest measured {act.name}/{dt} "
                       f"d={r['d']} m={r['m']} n={r['n']}: numba {r['numba_s']:.2e}s vs dense "
                       f"{r['dense_s']:.2e}s")


_CHOSEN: list[str] = []   # every backend resolved in this process, in order (see chosen_backends)


def chosen_backends(start: int = 0) -> list[str]:
    """The backends resolved since position ``start`` of this process's record (distinct, in
    order); ``len(chosen_backends())`` is the position to start from."""
    return list(dict.fromkeys(_CHOSEN[start:]))


def resolve_backend(name: str | Backend, *, act: Activation, device: torch.device, m: int, n: int,
                    d: int, batch: int = 1, dtype: Optional[torch.dtype] = None) -> Backend:
    """Pick a concrete backend; ``auto`` chooses by device, per-system size and activation.

    ``auto`` decides from the per-system problem (m, n, d, activation, dtype, device) only, never
    from the batch size ``batch`` (kept for compatibility, ignored), so grouping systems into
    batches never changes the backend. On CUDA: KeOps when it supports the activation (and
    m n >= 4096), else dense. On CPU: numba or dense as measured by ``meanfield bench
    --write-table`` for the nearest (activation, dtype, d, m n) in :data:`TABLE_PATH`; with no
    ``dtype`` the float64 measurements decide. The choice is logged.
    """
    if name != "auto":
        be = get_backend(name)
        if not be.supports(act, device):
            raise ValueError(f"backend {be.name!r} does not support activation {act.name!r} on "
                             f"{device.type}; use backend='dense' (activations registered without "
                             "keops/numba kernels run on dense only)")
        _CHOSEN.append(be.name)
        return be
    device = torch.device(device)
    if device.type == "cuda":
        be = _try("keops")
        if m * n < TINY:
            pick, why = "dense", f"CUDA, tiny problem (m n = {m * n} < {TINY})"
        elif be is not None and be.supports(act, device):
            pick, why = "keops", "CUDA device with pykeops"
        else:
            pick, why = "dense", "CUDA device, keops unavailable for this activation"
    else:
        be = _try("numba")
        if be is None or not be.supports(act, device):
            pick, why = "dense", f"CPU, numba {'unavailable' if be is None else 'has no code for ' + act.name}"
        else:
            pick, why = table_choice(act, dtype or torch.float64, m, n, d)
    log.info("backend auto -> %s (%s)", pick, why)
    _CHOSEN.append(pick)
    return get_backend(pick)


def check_operands(a: Tensor, w: Tensor, b: Tensor, X: Tensor, g: Optional[Tensor] = None) -> None:
    """Validate backend operand shapes (cheap; called by every backend)."""
    if a.dim() != 3 or w.dim() != 3 or b.dim() != 2:
        raise ValueError(f"backend operands must be batched: a (B,m,k), w (B,m,d), b (B,m); got "
                         f"a {tuple(a.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)}")
    B, m, _ = a.shape
    if w.shape[:2] != (B, m) or b.shape != (B, m):
        raise ValueError(f"particle shapes disagree: a {tuple(a.shape)}, w {tuple(w.shape)}, "
                         f"b {tuple(b.shape)}")
    if X.dim() != 3 or X.shape[0] not in (1, B) or X.shape[2] != w.shape[2]:
        raise ValueError(f"X must be (1 or B, n, d) with d = {w.shape[2]}, B = {B}; got {tuple(X.shape)}")
    if g is not None and (g.dim() != 3 or g.shape[0] != B or g.shape[1] != X.shape[1]
                          or g.shape[2] != a.shape[2]):
        raise ValueError(f"g must be (B, n, k) = ({B}, {X.shape[1]}, {a.shape[2]}); got {tuple(g.shape)}")
