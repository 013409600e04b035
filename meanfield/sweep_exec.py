"""Sweep executors: how grid points are computed (in process, a local process pool, a Dask cluster).

A *unit* of work is a list of points that run together: one batched system when the experiment has
a ``run_batch`` and the points share every parameter outside its ``batch_keys``, otherwise a single
point. :func:`run_unit` computes a unit. When a batch cannot run *together* (an error a single point
may raise: ``ValueError`` such as a NaN in one system, a divergence, an ``ArithmeticError``) it
is re-run point by point, with a WARNING naming the batch and the error, and every point's file says
so (``how: "fallback: <error>"``); any other exception is a bug and propagates. A point that fails
on its own (``ValueError``, ``RuntimeError`` such as a divergence, ``ArithmeticError``) is recorded
with its error, and the others still finish; anything else stops the sweep (finished points kept).

Workers find the experiment by name: they first load the same plugins as the parent
(:func:`meanfield.study.plugins.loaded_plugins`), so user experiments work everywhere; Dask
workers also get the plugin files' text, for machines that do not share the parent's files.
Executors yield finished units as they complete; the caller writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

__all__ = ["Point", "make_units", "run_unit", "execute", "DaskTimeoutError", "POINT_ERRORS"]

log = logging.getLogger("meanfield.sweep")


class DaskTimeoutError(RuntimeError):
    """A Dask sweep had no worker for longer than its timeout."""


def _batch_errors() -> tuple:
    """What makes a batch fall back to one point at a time: whatever one point may raise and still
    be a result (:data:`POINT_ERRORS`: a bad value, a divergence, a division by zero in one
    system), so a batched sweep records the same failures as an unbatched one."""
    return POINT_ERRORS


# what a single point may raise and still be a result (bad values, divergence, a singular
# matrix, out of memory); anything else (TypeError, KeyError, ...) is a bug and stops the sweep
POINT_ERRORS = (ValueError, RuntimeError, ArithmeticError)


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point and seed.

    Attributes:
        id: hash of the experiment, the full resolved parameters and the seed.
        params: every parameter of the experiment's config, flat (dotted key -> value).
        seed: the run's seed.
        config: the config as :func:`meanfield.study.spec.to_dict` (rebuilt exactly by workers).
    """

    id: str
    params: dict
    seed: int
    config: dict = dataclasses.field(default_factory=dict, compare=False)


def make_units(exp, points: Sequence[Point], *, batch: bool, batch_size: int = 64,
               split: int = 1) -> list[list[Point]]:
    """Group points into units of work.

    Args:
        exp: the :class:`~meanfield.study.Experiment`.
        points: the points to compute.
        batch: run points that share shapes as one batched system (needs ``exp.run_batch``).
        batch_size: most systems in one batch.
        split: spread each group over at least this many units (the number of workers).
    """
    if not batch or exp.run_batch is None:
        return [[p] for p in points]
    keys = set(exp.batch_keys)

    def free(k: str) -> bool:  # a batch key names a parameter or a whole nested config
        return k in keys or any(k.startswith(b + ".") for b in keys)

    groups: dict[str, list[Point]] = {}
    for p in points:
        key = repr(sorted((k, repr(v)) for k, v in p.params.items() if not free(k)))
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


def _config(exp, p: Point):
    from .study.spec import from_dict
    from .study.experiment import resolve_config
    if p.config:
        return from_dict(exp.config, p.config)
    return resolve_config(exp, p.params)


def _local_plugins(plugins: Sequence[str], sources: Optional[Mapping[str, str]]) -> list[str]:
    """Plugin specs usable here: a plugin file missing on this machine (a Dask worker without the
    parent's file system) is written from its shipped source into a temporary folder."""
    out = []
    for spec in plugins:
        if sources and spec in sources and not Path(spec).is_file():
            text = sources[spec]
            d = Path(tempfile.gettempdir()) / f"meanfield-plugins-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
            f = d / Path(spec).name
            if not f.is_file():
                d.mkdir(parents=True, exist_ok=True)
                from .record import atomic_write
                atomic_write(f, text)
            out.append(str(f))
        else:
            out.append(spec)
    return out


def run_unit(name: str, unit: Sequence[Point], ctx_kw: dict, plugins: Sequence[str] = (),
             sources: Optional[Mapping[str, str]] = None) -> list[dict]:
    """Compute a unit of points; one record (dict) per point, failures included.

    Args:
        name: the experiment's registered name.
        unit: points that run together.
        ctx_kw: :class:`~meanfield.study.RunContext` fields.
        plugins: plugin specs to load first (a worker process starts without them).
        sources: plugin file -> its text, for workers that do not see the parent's files.

    Raises:
        ValueError: the plugins or the experiment cannot be loaded (every point would fail).
        Exception: anything but the errors that mean "this batch cannot run together" raised by
            ``run_batch`` (a bug must not be hidden behind a point-by-point rerun).
    """
    from .study.experiment import RunContext, get_experiment
    from .study.plugins import load_plugins
    load_plugins(_local_plugins(plugins, sources))
    exp = get_experiment(name)
    how = "single"
    if len(unit) > 1 and exp.run_batch is not None:
        t0 = time.perf_counter()
        try:
            cfgs = [_config(exp, p) for p in unit]
            ctx = RunContext(seed=unit[0].seed, **ctx_kw)
            results = exp.run_batch(cfgs, [p.seed for p in unit], ctx)
            if len(results) != len(unit):
                raise ValueError(f"run_batch returned {len(results)} results for {len(unit)} points")
            wall = (time.perf_counter() - t0) / len(unit)
            return [_record(p, r.summary, None, wall, f"batch of {len(unit)}")
                    for p, r in zip(unit, results)]
        except _batch_errors() as e:
            err = _error(e)
            log.warning("sweep %s: a batch of %d points (%s ...) cannot run together (%s); running "
                        "them one by one", name, len(unit), ", ".join(p.id for p in unit[:3]), err)
            how = f"fallback: {err}"
    out = []
    for p in unit:
        t0 = time.perf_counter()
        try:
            res = exp.run_one(_config(exp, p), RunContext(seed=p.seed, **ctx_kw))
            out.append(_record(p, res.summary, None, time.perf_counter() - t0, how))
        except POINT_ERRORS as e:  # a failing point is a result: recorded with its error
            out.append(_record(p, None, _error(e), time.perf_counter() - t0, how))
    return out


def _pool_init(threads: int) -> None:
    import torch
    torch.set_num_threads(max(1, threads))


def execute(exp, units: list[list[Point]], ctx_kw: dict, *, workers: int = 1,
            scheduler: Optional[str] = None, client: Any = None, plugins: Sequence[str] = (),
            dask_timeout: float = 300.0) -> Iterator[list[dict]]:
    """Compute units and yield each unit's records as soon as it finishes.

    Args:
        exp: the experiment.
        units: from :func:`make_units`.
        ctx_kw: RunContext fields (device, backend, ...) for every point.
        workers: 1 runs in this process; N > 1 a local process pool of N (spawn/forkserver).
        scheduler: a Dask scheduler address (``tcp://host:port``): points go to that cluster.
        client: an existing ``distributed.Client`` (instead of ``scheduler``).
        plugins: plugin specs every worker loads before looking the experiment up.
        dask_timeout: seconds a Dask sweep waits with no worker before it stops
            (:class:`DaskTimeoutError`; the finished points are kept).
    """
    plugins = list(plugins)
    if scheduler is not None or client is not None:
        yield from _dask(exp.name, units, ctx_kw, scheduler, client, plugins, dask_timeout)
    elif workers <= 1:
        for u in units:
            yield run_unit(exp.name, u, ctx_kw, plugins)
    else:
        yield from _pool(exp.name, units, ctx_kw, workers, plugins)


def _pool(name, units, ctx_kw, workers: int, plugins) -> Iterator[list[dict]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method),
                             initializer=_pool_init, initargs=(threads,)) as ex:
        futs = {ex.submit(run_unit, name, u, ctx_kw, plugins): u for u in units}
        try:
            for f in as_completed(futs):
                try:
                    res = f.result()
                except BrokenProcessPool:  # a worker died: which point killed it is unknown
                    raise RuntimeError(
                        "a sweep worker process died (killed, or out of memory); the finished "
                        "points are kept: run the same command to resume (fewer --workers or a "
                        "smaller --batch-size use less memory)") from None
                yield res
        finally:
            for f in futs:
                f.cancel()


def _workers(client) -> int:
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001 - the scheduler is unreachable: no worker either
        return 0


def _dask(name, units, ctx_kw, scheduler, client, plugins, timeout: float) -> Iterator[list[dict]]:
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - dask is a dependency
        raise ValueError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from e
    own = client is None
    if own:
        try:
            client = distributed.Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as e:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r} ({e}); start one "
                             "(`dask scheduler`, or dask-jobqueue on Slurm/PBS) and pass its "
                             "address as tcp://host:port") from None
    sources = {p: Path(p).read_text() for p in plugins if p.endswith(".py") and Path(p).is_file()}
    futs = []
    try:
        futs = [client.submit(run_unit, name, u, ctx_kw, plugins, sources, pure=False) for u in units]
        ac = distributed.as_completed(futs)
        idle_since, checked = None, 0.0
        while not ac.is_empty():
            batch = ac.next_batch(block=False)
            if not batch:
                if time.monotonic() - checked < 1.0:
                    time.sleep(0.1)
                    continue
                checked = time.monotonic()
                if _workers(client) == 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > timeout:
                        left = sum(1 for f in futs if not f.done())
                        raise DaskTimeoutError(
                            f"no Dask worker for {timeout:g} s at {client.scheduler.address}; "
                            f"stopped with {left} unit(s) not computed (the finished points are "
                            "kept): start workers and run the same command to resume "
                            "(--dask-timeout sets the wait)")
                else:
                    idle_since = None
                time.sleep(0.2)
                continue
            for f in batch:
                try:
                    yield f.result()  # an exception in run_unit is a bug: raised here
                except distributed.KilledWorker as e:  # the worker died (memory, node lost)
                    unit = units[futs.index(f)]
                    yield [_record(p, None, f"worker died: {_error(e)}", 0.0, "none") for p in unit]
    finally:
        for f in futs:
            if not f.done():
                f.cancel()
        if own:
            client.close()
