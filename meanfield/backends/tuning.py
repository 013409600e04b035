"""Measure the numba/dense crossover and write the table ``auto`` reads (``meanfield bench --write-table``).

For every activation with numba code, dtype, input dimension d and problem size (m, n), one
reduction pair (outputs + velocities, k = 1) is timed on each backend (best of a few, after a
warm-up that compiles the kernels) and the faster is recorded. The table is versioned JSON with the
machine and date it was measured on; :func:`meanfield.backends.base.table_choice` picks the
nearest measured row, so ``auto`` follows measurements, not hand-written rules.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..activations import ACTIVATIONS
from .base import TABLE_PATH, TABLE_VERSION, _TABLE, get_backend

__all__ = ["measure_table", "write_table", "TABLE_DS", "TABLE_SIZES"]

#: input dimensions measured (the crossover is mostly a function of d; 784 is MNIST's, so that a
#: wide input never takes the choice measured at 64)
TABLE_DS = (1, 2, 4, 8, 16, 32, 64, 128, 784)
#: per-system (m, n) sizes measured: tiny, an atlas point's, medium, large
TABLE_SIZES = ((64, 64), (300, 200), (2_000, 500), (10_000, 1_000))


def _time(be, act, ops, repeats: int, budget_s: float) -> float:
    """Best time of one step's reductions, as the flow calls them (one pass where the backend has
    ``outputs_velocities``)."""
    from ..simulation import SMALL_PAIRS
    from ..threads import torch_threads
    a, w, b, X, g = ops
    fused = getattr(be, "outputs_velocities", None)
    # torch's threads as the flow sets them: one for a small system or beside numba's own threads
    with torch_threads(1 if getattr(be, "owns_threads", False)
                       or a.shape[0] * a.shape[1] * X.shape[1] <= SMALL_PAIRS else None):
        return _best(_once(be, act, a, w, b, X, g, fused), repeats, budget_s)


def _once(be, act, a, w, b, X, g, fused):
    """One step's reductions as a closure."""

    def once():
        if fused is not None:
            fused(act, a, w, b, X, lambda f: g)
        else:
            be.outputs(act, a, w, b, X)
            be.velocities(act, a, w, b, X, g)
    return once


def _best(once, repeats: int, budget_s: float) -> float:
    once()
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def measure_table(acts: Optional[Sequence[str]] = None, dtypes: Sequence[str] = ("float32", "float64"),
                  ds: Sequence[int] = TABLE_DS, sizes: Sequence[tuple] = TABLE_SIZES,
                  repeats: int = 3, budget_s: float = 2.0, echo=print) -> dict:
    """Time numba and dense on every (activation, dtype, d, size); returns the table dict."""
    from ..bench import machine
    echo = echo or (lambda *_: None)
    nb, de = get_backend("numba"), get_backend("dense")
    names = acts or [n for n, a in ACTIVATIONS.items() if a.builtin and a.numba is not None]
    rows = []
    for name in names:
        act = ACTIVATIONS.get(name)
        for dt in dtypes:
            dtype = getattr(torch, dt)
            for d in ds:
                for m, n in sizes:
                    g = torch.Generator().manual_seed(0)
                    r = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
                    ops = (r(1, m, 1), r(1, m, d), r(1, m), r(1, n, d) / d ** 0.5, r(1, n, 1))
                    tn = _time(nb, act, ops, repeats, budget_s)
                    td = _time(de, act, ops, repeats, budget_s)
                    best = "numba" if tn < td else "dense"
                    rows.append(dict(act=name, dtype=dt, d=d, m=m, n=n, numba_s=tn, dense_s=td,
                                     best=best))
                    echo(f"{name:>10} {dt} d={d:>3} m={m:>6} n={n:>5}: numba {tn:.2e}s dense "
                         f"{td:.2e}s -> {best}")
    return {"version": TABLE_VERSION, "date": date.today().isoformat(), "machine": machine(),
            "command": "meanfield bench --write-table", "rows": rows}


def write_table(path: Optional[str] = None, **kw) -> Path:
    """Measure (:func:`measure_table`) and write the table JSON (default: the one ``auto`` reads)."""
    tab = measure_table(**kw)
    out = Path(path or TABLE_PATH)
    out.write_text(json.dumps(tab, indent=1) + "\n")
    _TABLE.pop(str(out), None)
    return out
