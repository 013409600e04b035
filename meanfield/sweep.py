"""Sweeps: an experiment over a grid of parameters, batched, resumable, local or on a Dask cluster.

A sweep directory holds

- ``sweep.json``: the sweep's identity (the experiment, and every parameter that is not a grid
  axis: the defaults with the ``--set`` values applied, resolved), every grid asked for so far (a
  changed grid only adds points) and the options. Re-running on the directory with other fixed
  parameters is refused, naming the difference; the same command resumes;
- ``points/<id>.json``: one file per finished point (written atomically as it finishes), with its
  full parameter set (flat dotted keys), seed, status (``ok``/``failed``), error message, summary
  and how it was computed (``batch of N``, ``single``, ``fallback: <error>``); the id hashes the
  experiment, the full resolved parameters and the seed, so a re-run skips finished points;
- ``results.csv``: one row per point and seed, rebuilt atomically from the point files (columns:
  ``id, seed, status, error``, every parameter, every summary number; a summary name equal to a
  parameter's gets the suffix ``_result``); it does not depend on how points were grouped;
- ``phase.png``: the phase diagram (:func:`meanfield.phase.plot_sweep`), the mean over seeds of
  the rows of this identity;
- ``.lock`` while a sweep runs (:class:`meanfield.study.lock.DirLock`).

Grids use the config's dotted keys (``data.p3``, ``flow.t_end``) and are parsed by the field's
type: ``key=v1,v2,...`` (explicit values; ``key=1,2;3,4`` for tuple values),
``key=start:stop:num`` (linear) and ``key=start:stop:num:log`` (logarithmic).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .study.lock import DirLock, LockedError
from .sweep_exec import DaskTimeoutError, Point, execute, make_units
from .record import write_json
from .sweep_io import (check_identity, check_points_identity, load_results, plain, read_points,
                       read_spec, under_axis, update_spec, write_table)

__all__ = ["Axis", "SweepResult", "SweepLockedError", "DaskTimeoutError", "parse_grid", "sweep",
           "load_results", "plot_dir", "flat_params"]

log = logging.getLogger("meanfield.sweep")

SweepLockedError = LockedError  # the name older code catches


@dataclass(frozen=True)
class Axis:
    """One grid axis: a parameter (dotted key) and its values (``log``: log-spaced)."""

    key: str
    values: tuple
    log: bool = False


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
        out: the sweep directory.
        rows: results.csv read back (every point in the directory, sorted by parameters; numbers
            as floats).
        axes: the grid axes of this call.
        computed: points computed by this call.
        skipped: points of this grid already finished (resumed).
        failed: points of this grid recorded as failed.
        figure: the phase-diagram file, or None.
    """

    out: Path
    rows: list
    axes: tuple
    computed: int
    skipped: int
    failed: int
    figure: Optional[Path] = None


# ------------------------------------------------------------------------- grids
def flat_params(cfg) -> dict:
    """Every reachable key of a config and its value (``meanfield.study.spec.describe``)."""
    from .study.spec import describe
    return {k: v for k, _, v, _ in describe(cfg)}


def _canon(v):
    """Grid values rounded to 12 significant digits (so 0.3 and 0.30000000000000004 are one point)."""
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.12g}")
    if isinstance(v, tuple):
        return tuple(_canon(x) for x in v)
    return v


def _typed(exp, base, key: str, value):
    """``value`` parsed as the field at ``key`` is (by applying it to the config and reading back)."""
    from .study.spec import apply_overrides
    try:
        cfg = apply_overrides(base, {key: value})
    except ValueError as e:
        raise ValueError(f"--grid {key}: {e}") from None
    v = flat_params(cfg)[key]
    return v.name if hasattr(v, "params") and hasattr(v, "name") else v


#: the most points (values x seeds) a sweep plans without ``max_points`` raised
MAX_POINTS = 100_000


def parse_grid(exp, key: str, spec, base=None, limit: Optional[int] = None) -> Axis:
    """An axis from ``v1,v2,...``, ``start:stop:num[:log]`` or a sequence of values.

    Args:
        exp: the experiment.
        key: a dotted key of its config (``meanfield list -v NAME`` lists them).
        spec: the values.
        base: the config the values apply to (default: the experiment's defaults).
        limit: the most values a range may have (default :data:`MAX_POINTS`): checked before
            any value is built.

    Raises:
        ValueError: unknown parameter, unparsable value, bad range.
    """
    base = exp.config() if base is None else base
    flat = flat_params(base)
    if key not in flat:
        raise ValueError(f"cannot sweep {key!r}: experiment {exp.name!r} has parameters "
                         f"{', '.join(flat)} (see `meanfield list -v {exp.name}`)")
    cur = flat[key]
    log_ = False
    if isinstance(spec, str) and ":" in spec and "," not in spec and ";" not in spec:
        parts = spec.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
            raise ValueError(f"range for {key} must be start:stop:num or start:stop:num:log, got {spec!r}")
        try:
            a, b, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"range for {key} needs numbers, got {spec!r}") from None
        if num < 1:
            raise ValueError(f"range for {key}: num must be >= 1, got {num}")
        if num > (MAX_POINTS if limit is None else limit):
            raise ValueError(f"range for {key} has {num:,} values, more than max_points = "
                             f"{MAX_POINTS if limit is None else limit:,}: use fewer values, or "
                             "raise the limit with --max-points")
        log_ = len(parts) == 4 and parts[3] == "log"
        if log_ and (a <= 0 or b <= 0):
            raise ValueError(f"log range for {key} needs positive ends, got {spec!r}")
        ts = [i / (num - 1) if num > 1 else 0.0 for i in range(num)]
        vals = [math.exp(math.log(a) + t * (math.log(b) - math.log(a))) if log_ else a + t * (b - a)
                for t in ts]
        if isinstance(cur, int) and not isinstance(cur, bool):
            vals = [round(v) for v in vals]
        vals = [_typed(exp, base, key, _canon(v)) for v in vals]
    elif isinstance(spec, str):
        sep = ";" if ";" in spec else ","
        vals = [_typed(exp, base, key, t.strip()) for t in spec.split(sep) if t.strip()]
    else:
        vals = [_typed(exp, base, key, v) for v in (spec if isinstance(spec, (list, tuple)) else [spec])]
    vals = list(dict.fromkeys(_canon(v) for v in vals))
    if not vals:
        raise ValueError(f"grid for {key} has no values")
    return Axis(key, tuple(vals), log_)


def _axes(exp, grid, base, limit: Optional[int] = None) -> list[Axis]:
    if isinstance(grid, (list, tuple)):
        items = []
        for g in grid:
            if isinstance(g, Axis):
                items.append((g.key, g))
            else:
                if not isinstance(g, str) or "=" not in g:
                    raise ValueError(f"--grid expects key=values, got {g!r}")
                k, v = g.split("=", 1)
                items.append((k.strip(), v.strip()))
    else:
        items = list((grid or {}).items())
    axes = [v if isinstance(v, Axis) else parse_grid(exp, k, v, base, limit) for k, v in items]
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a parameter appears on two grid axes: {keys}")
    return axes


def point_id(name: str, params: Mapping[str, Any], seed: int) -> str:
    blob = json.dumps({"experiment": name, "params": params, "seed": int(seed)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plan(exp, axes: list[Axis], fixed: Mapping, seeds: Sequence[int]) -> list[Point]:
    from .study.experiment import resolve_config
    from .study.spec import to_dict
    points = []
    for combo in itertools.product(*(a.values for a in axes)):
        cfg = resolve_config(exp, {**fixed, **{a.key: v for a, v in zip(axes, combo)}})
        params = {k: plain(v) for k, v in flat_params(cfg).items()}
        conf = to_dict(cfg)
        for s in seeds:
            points.append(Point(point_id(exp.name, params, s), params, int(s), conf))
    return points


# ------------------------------------------------------------------------- the verb
def sweep(name: str, grid, *, seeds: int | Sequence[int] = 1, seed: int = 0,
          fixed: Optional[Mapping[str, Any]] = None, out: Optional[str | Path] = None,
          workers: int = 1, scheduler: Optional[str] = None, client: Any = None,
          batch: bool = True, batch_size: int = 64, device: str = "cpu", backend: str = "auto",
          progress: Optional[bool] = None, retry_failed: bool = False, plot: bool = True,
          metric: Optional[str] = None, threshold: Optional[float] = None,
          plugins: Optional[Sequence[str]] = None, dask_timeout: float = 300.0,
          max_points: int = MAX_POINTS) -> SweepResult:
    """Run a registered experiment over a grid of parameters and seeds (resumable).

    Args:
        name: experiment name.
        grid: ``{key: "v1,v2" | "start:stop:num[:log]" | [values]}`` or a list of ``key=...``
            strings; keys are the config's dotted keys (``data.p3``).
        seeds: number of seeds (``seed, seed+1, ...``) or an explicit list.
        fixed: parameters set for every point (like ``--set``); part of the sweep's identity.
        out: sweep directory (default ``sweeps/NAME``).
        workers: local processes (1: in this process).
        scheduler: Dask scheduler address (``tcp://host:port``); ``client``: a ``distributed.Client``.
        batch: run points that share shapes as one batched system (experiments with ``run_batch``).
        batch_size: most systems per batch.
        device, backend: for every run.
        progress: progress bar over points (None: only on a terminal).
        retry_failed: recompute points recorded as failed.
        plot: draw ``phase.png``; ``metric``/``threshold`` choose the statistic (default per experiment).
        plugins: plugin specs workers load first (default: every plugin loaded in this process).
        dask_timeout: seconds a Dask sweep waits with no worker before it stops.

        max_points: refuse a grid of more points (values x seeds) than this, before planning
            any (planning alone takes ~1.5 ms a point; a typo such as ``0:1:1000000`` would
            run for hours): split it, or raise the limit (``--max-points``).

    Returns:
        :class:`SweepResult`.

    Raises:
        ValueError: unknown experiment or parameter, bad grid, a corrupt file (named), another
            experiment's directory or other fixed parameters (the sweep's identity).
        LockedError: another process is writing into ``out``.
        DaskTimeoutError: no Dask worker for ``dask_timeout`` seconds (finished points kept).
    """
    from .study.experiment import get_experiment, resolve_config
    from .study.plugins import loaded_plugins
    from .study.experiment import check_seed
    from .study.rundir import _check_backend, check_device, check_out
    exp = get_experiment(name)
    fixed = dict(fixed or {})
    base_cfg = resolve_config(exp, fixed)
    axes = _axes(exp, grid, base_cfg, max_points)
    if not axes:
        raise ValueError("give at least one --grid key=values")
    both = [a.key for a in axes if a.key in fixed]
    if both:
        raise ValueError(f"{both} are both fixed (--set) and swept (--grid); pick one")
    seed_list = list(range(seed, seed + int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds must be >= 1")
    for s in seed_list:
        check_seed(s)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size (--batch-size) must be an integer >= 1, got {batch_size!r}")
    count = math.prod(len(a.values) for a in axes) * len(seed_list)
    if count > max_points:
        shape = " x ".join(f"{len(a.values)} {a.key}" for a in axes)
        raise ValueError(f"the grid has {count:,} points ({shape} x {len(seed_list)} seed(s)), "
                         f"more than max_points = {max_points:,}: split it into smaller sweeps "
                         "on the same --out, or raise the limit with --max-points")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not dask_timeout > 0:
        raise ValueError(f"dask_timeout must be > 0 seconds, got {dask_timeout}")
    check_device(device)
    _check_backend(backend)
    points = _plan(exp, axes, fixed, seed_list)
    base = {k: plain(v) for k, v in flat_params(base_cfg).items()}
    fixed_resolved = {k: base.get(k) for k in fixed}
    plugins = loaded_plugins() if plugins is None else list(plugins)
    if out is not None and not str(out).strip():
        raise ValueError("--out is empty; give the sweep's directory (default sweeps/NAME)")
    out = check_out(Path(out) if out is not None else Path("sweeps") / name)
    if (out / "config.json").exists() and not (out / "sweep.json").exists():
        raise ValueError(f"--out {out} is a run directory; a sweep needs its own directory "
                         "(choose another --out)")
    with DirLock(out, "sweep"):
        spec = read_spec(out)
        check_identity(out, spec, name, fixed_resolved, base, [a.key for a in axes])
        recs = read_points(out)
        if spec is None and recs:
            check_points_identity(out, recs, base, [a.key for a in axes])
        update_spec(out, spec, name, axes, fixed_resolved, base, seed_list,
                    {"device": device, "backend": backend, "batch": batch, "plugins": plugins,
                     "params": list(base)})
        todo = [p for p in points if p.id not in recs or (retry_failed and recs[p.id]["status"] != "ok")]
        todo = list({p.id: p for p in todo}.values())
        skipped = len({p.id for p in points}) - len(todo)
        units = make_units(exp, todo, batch=batch, batch_size=batch_size,
                           split=max(workers, 1) if scheduler is None and client is None else 8)
        ctx_kw = {"device": device, "backend": backend, "progress": False, "figures": False}
        bar = _bar(len(todo), progress, name)
        last = time.monotonic()
        try:
            for records in execute(exp, units, ctx_kw, workers=workers, scheduler=scheduler,
                                   client=client, plugins=plugins, dask_timeout=dask_timeout):
                for r in records:
                    write_json(out / "points" / f"{r['id']}.json", r)
                    recs[r["id"]] = r
                bar.update(len(records))
                if time.monotonic() - last > 2.0:
                    write_table(out, recs)
                    last = time.monotonic()
        finally:
            bar.close()
            rows = write_table(out, recs)
    ids = {p.id for p in points}
    failed = sum(1 for i in ids if recs.get(i, {}).get("status") == "failed")
    fig = None
    if plot and rows:
        fig = _draw(out, rows, name, metric=metric, threshold=threshold)
    return SweepResult(out, rows, tuple(axes), len(todo), skipped, failed, fig)


def _bar(total: int, enabled: Optional[bool], name: str):
    from tqdm.auto import tqdm
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=f"sweep {name}", unit="point", disable=not enabled)


# ------------------------------------------------------------------------- figures
def _norm(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, list):
        v = ",".join(map(str, v))
    try:
        return f"{float(v):.12g}"
    except (TypeError, ValueError):
        return str(v)


def _this_identity(rows: list[dict], spec: Mapping) -> list[dict]:
    """The rows whose non-axis parameters are the sweep's fixed ones (seeds are all that vary)."""
    base = spec.get("base") or {}
    axes = {a.get("key") for a in spec.get("axes", []) if isinstance(a, dict)}
    keys = [k for k in base if not under_axis(k, axes) and rows and k in rows[0]]
    keep = [r for r in rows if all(_norm(r.get(k)) == _norm(base[k]) for k in keys)]
    if keep and len(keep) < len(rows):
        log.warning("phase diagram: %d row(s) of other fixed parameters left out", len(rows) - len(keep))
    return keep or rows


def _draw(out: Path, rows, name: str, *, metric=None, threshold=None, x=None, y=None,
          file: str = "phase.png", strict: bool = False) -> Optional[Path]:
    from .phase import plot_sweep
    spec = read_spec(out) or {}
    try:
        fig = plot_sweep(_this_identity(rows, spec), experiment=spec.get("experiment", name),
                         axes=spec.get("axes", []), metric=metric, threshold=threshold, x=x, y=y,
                         params=list(spec.get("base") or {}) or spec.get("params", ()))
    except ValueError as e:
        if strict:
            raise
        log.warning("no phase diagram drawn: %s", e)
        return None
    import matplotlib.pyplot as plt
    path = out / file
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _inside(out: Path, file: str) -> str:
    p = Path(file)
    if not file or p.is_absolute() or ".." in p.parts or p.name != file:
        raise ValueError(f"--file {file!r} must be a plain file name inside {out} (no directories, "
                         "no '..', not absolute)")
    if p.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise ValueError(f"--file {file!r}: use a figure name ending in .png, .pdf, .svg or .jpg")
    return file


def plot_dir(path: str | Path, *, metric: Optional[str] = None, threshold: Optional[float] = None,
             x: Optional[str] = None, y: Optional[str] = None, file: str = "phase.png") -> list[Path]:
    """Redraw a directory's figures from its files.

    A run directory (``config.json`` with ``"experiment"``) gets its experiment's figures
    (:func:`meanfield.study.rundir.plot_run`); a sweep directory its phase diagram ``DIR/file``.

    Raises:
        FileNotFoundError: neither a run nor a sweep directory.
        ValueError: a bad ``file`` name (it must stay inside the directory), a corrupt file, an
            unknown metric or axis.
    """
    out = Path(path)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} is not a directory: give a run or sweep directory")
    cfg = out / "config.json"
    if cfg.exists() and not (out / "sweep.json").exists():
        from .study.rundir import plot_run
        from .sweep_io import read_json
        rec = read_json(cfg, "config of a run directory")
        if isinstance(rec, dict) and "experiment" in rec:
            from .study.experiment import EXPERIMENTS
            if rec["experiment"] not in EXPERIMENTS.list():
                raise ValueError(f"{out} is a run of {rec['experiment']!r}, which is not registered: "
                                 "if it comes from user code, pass the same --plugin FILE_OR_MODULE")
            return [out / n for n in plot_run(out)]
        raise ValueError(f"{cfg} is not a run record (no 'experiment')")
    _inside(out, file)
    spec = read_spec(out)
    rows = load_results(out)
    name = spec.get("experiment", "") if spec else ""
    p = _draw(out, rows, name, metric=metric, threshold=threshold, x=x, y=y, file=file, strict=True)
    return [p] if p is not None else []
