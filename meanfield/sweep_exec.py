"""Sweep executors: how grid points are computed (in process, a local process pool, a Dask cluster).

A *unit* of work is a list of points that run together: one batched system when the experiment has
a ``run_batch`` and the points share every parameter outside its ``batch_keys``, otherwise a single
point. :func:`run_unit` computes a unit and never raises: a unit that fails as a batch is re-run
point by point so that one bad point (NaN, divergence, bad value) is recorded with its error and
the others still finish. Executors yield finished units as they complete; the caller writes them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from typing import Any, Iterator, Optional, Sequence

__all__ = ["Point", "make_units", "run_unit", "execute"]


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point and seed.

    Attributes:
        id: hash of the experiment, the full resolved parameters and the seed.
        params: every parameter of the experiment's config (name -> value).
        seed: the run's seed.
    """

    id: str
    params: dict
    seed: int


def _exp_ref(exp):
    """What a worker needs to find the experiment: its name if importable by name, else the object."""
    from .experiments import registry
    return exp.name if exp.name in registry._MODULES else exp


def _get_exp(ref):
    if isinstance(ref, str):
        from .experiments.registry import get_experiment
        return get_experiment(ref)
    return ref


def make_units(exp, points: Sequence[Point], *, batch: bool, batch_size: int = 64,
               split: int = 1) -> list[list[Point]]:
    """Group points into units of work.

    Args:
        exp: the :class:`~meanfield.experiments.registry.Experiment`.
        points: the points to compute.
        batch: run points that share shapes as one batched system (needs ``exp.run_batch``).
        batch_size: most systems in one batch.
        split: spread each group over at least this many units (the number of workers).
    """
    if not batch or exp.run_batch is None:
        return [[p] for p in points]
    groups: dict[str, list[Point]] = {}
    for p in points:
        key = repr(sorted((k, repr(v)) for k, v in p.params.items() if k not in exp.batch_keys))
        groups.setdefault(key, []).append(p)
    units = []
    for g in groups.values():
        size = max(1, min(batch_size, math.ceil(len(g) / max(1, split))))
        units.extend(g[i:i + size] for i in range(0, len(g), size))
    return units


def _error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}"
    return " ".join(msg.split())  # one line (CSV-friendly)


def _record(p: Point, summary: Optional[dict], error: Optional[str], wall: float, how: str) -> dict:
    return {"id": p.id, "params": p.params, "seed": p.seed,
            "status": "ok" if error is None else "failed", "error": error or "",
            "summary": dict(summary or {}), "wall_seconds": round(wall, 4), "how": how}


def run_unit(exp_ref, unit: Sequence[Point], ctx_kw: dict) -> list[dict]:
    """Compute a unit of points; one record (dict) per point, failures included. Never raises."""
    from .experiments.registry import RunContext, resolve_config
    try:
        exp = _get_exp(exp_ref)
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        return [_record(p, None, _error(e), 0.0, "none") for p in unit]
    if len(unit) > 1 and exp.run_batch is not None:
        t0 = time.perf_counter()
        try:
            cfgs = [resolve_config(exp, p.params) for p in unit]
            ctx = RunContext(seed=unit[0].seed, **ctx_kw)
            results = exp.run_batch(cfgs, [p.seed for p in unit], ctx)
            wall = (time.perf_counter() - t0) / len(unit)
            return [_record(p, r.summary, None, wall, f"batch of {len(unit)}")
                    for p, r in zip(unit, results)]
        except Exception:  # noqa: BLE001 - fall back to one by one to isolate the bad point(s)
            pass
    out = []
    for p in unit:
        t0 = time.perf_counter()
        try:
            cfg = resolve_config(exp, p.params)
            res = exp.run(cfg, RunContext(seed=p.seed, **ctx_kw))
            out.append(_record(p, res.summary, None, time.perf_counter() - t0, "single"))
        except Exception as e:  # noqa: BLE001 - a failing point is recorded with its error
            out.append(_record(p, None, _error(e), time.perf_counter() - t0, "single"))
    return out


def _pool_init(threads: int) -> None:
    import torch
    torch.set_num_threads(max(1, threads))


def execute(exp, units: list[list[Point]], ctx_kw: dict, *, workers: int = 1,
            scheduler: Optional[str] = None, client: Any = None) -> Iterator[list[dict]]:
    """Compute units and yield each unit's records as soon as it finishes.

    Args:
        exp: the experiment.
        units: from :func:`make_units`.
        ctx_kw: RunContext fields (device, backend, ...) for every point.
        workers: 1 runs in this process; N > 1 a local process pool of N (spawn/forkserver).
        scheduler: a Dask scheduler address (``tcp://host:port``): points go to that cluster.
        client: an existing ``distributed.Client`` (instead of ``scheduler``).
    """
    ref = _exp_ref(exp)
    if scheduler is not None or client is not None:
        yield from _dask(ref, units, ctx_kw, scheduler, client)
    elif workers <= 1:
        for u in units:
            yield run_unit(ref, u, ctx_kw)
    else:
        yield from _pool(ref, units, ctx_kw, workers)


def _pool(ref, units, ctx_kw, workers: int) -> Iterator[list[dict]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method),
                             initializer=_pool_init, initargs=(threads,)) as ex:
        futs = {ex.submit(run_unit, ref, u, ctx_kw): u for u in units}
        for f in as_completed(futs):
            yield _result_or_crash(f, futs[f])


def _result_or_crash(fut, unit) -> list[dict]:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - a crashed worker: record, keep going
        err = _error(e) or traceback.format_exc(limit=1)
        return [_record(p, None, f"worker failed: {err}", 0.0, "none") for p in unit]


def _dask(ref, units, ctx_kw, scheduler, client) -> Iterator[list[dict]]:
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - dask is a dependency
        raise ValueError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from e
    own = client is None
    if own:
        try:
            client = distributed.Client(scheduler, timeout=30)
        except OSError as e:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r} ({e}); start one "
                             "(`dask scheduler`, or dask-jobqueue on Slurm/PBS) and pass its "
                             "address as tcp://host:port") from e
    try:
        futs = {}
        for u in units:
            f = client.submit(run_unit, ref, u, ctx_kw, pure=False)
            futs[f.key] = (f, u)
        for f in distributed.as_completed([f for f, _ in futs.values()]):
            yield _result_or_crash(f, futs[f.key][1])
    finally:
        if own:
            client.close()
