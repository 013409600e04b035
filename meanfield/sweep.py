"""Sweeps: an experiment over a grid of parameters, batched, resumable, local or on a Dask cluster.

A sweep directory holds

- ``sweep.json``: the experiment, every grid asked for so far (a changed grid adds points), options;
- ``points/<id>.json``: one file per finished point (written atomically as it finishes), with its
  full parameter set, seed, status (``ok``/``failed``), error message and summary; the id hashes
  the experiment, the full resolved parameters and the seed, so a re-run skips finished points;
- ``results.csv``: one row per point and seed, rebuilt atomically from the point files (columns:
  ``id, seed, status, error``, every parameter, every summary number; a summary name equal to a
  parameter's gets the suffix ``_result``);
- ``phase.png``: the phase diagram (:func:`meanfield.phase.plot_phase`);
- ``.lock`` while a sweep runs (pid and host): a second sweep on the directory is refused; the lock
  of a dead process is taken over.

Grids: ``key=v1,v2,...`` (explicit values, parsed by the parameter's type),
``key=start:stop:num`` (linear) and ``key=start:stop:num:log`` (logarithmic).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import socket
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .record import read_history, write_history, write_json
from .sweep_exec import Point, execute, make_units

__all__ = ["Axis", "SweepResult", "SweepLockedError", "parse_grid", "sweep", "load_results",
           "main", "plot_main"]

FIRST = ("id", "seed", "status", "error")


class SweepLockedError(RuntimeError):
    """Another sweep is writing into the same directory."""


@dataclass(frozen=True)
class Axis:
    """One grid axis: a parameter and its values (``log``: the values are log-spaced)."""

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
def _canon(v):
    """Grid values rounded to 12 significant digits (so 0.3 and 0.30000000000000004 are one point)."""
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.12g}")
    return v


def parse_grid(exp, key: str, spec) -> Axis:
    """An axis from ``v1,v2,...``, ``start:stop:num[:log]`` or a sequence of values.

    Raises:
        ValueError: unknown parameter, unparsable value, bad range.
    """
    from .experiments.registry import _coerce, _parse_value
    hints = typing.get_type_hints(exp.config)
    if key not in hints:
        raise ValueError(f"cannot sweep {key!r}: experiment {exp.name!r} has parameters "
                         f"{', '.join(hints)}")
    tp = hints[key]
    log = False
    if isinstance(spec, str) and ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
            raise ValueError(f"range for {key} must be start:stop:num or start:stop:num:log, got {spec!r}")
        try:
            a, b, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"range for {key} needs numbers, got {spec!r}") from None
        if num < 1:
            raise ValueError(f"range for {key}: num must be >= 1, got {num}")
        log = len(parts) == 4 and parts[3] == "log"
        if log and (a <= 0 or b <= 0):
            raise ValueError(f"log range for {key} needs positive ends, got {spec!r}")
        ts = [i / (num - 1) if num > 1 else 0.0 for i in range(num)]
        vals = [math.exp(math.log(a) + t * (math.log(b) - math.log(a))) if log else a + t * (b - a)
                for t in ts]
        vals = [_coerce(round(v) if tp is int else v, tp, key) for v in vals]
    elif isinstance(spec, str):
        vals = [_parse_value(t.strip(), tp, key) for t in spec.split(",") if t.strip()]
    else:
        vals = [_coerce(v, tp, key) for v in (spec if isinstance(spec, (list, tuple)) else [spec])]
    vals = list(dict.fromkeys(_canon(v) for v in vals))
    if not vals:
        raise ValueError(f"grid for {key} has no values")
    return Axis(key, tuple(vals), log)


def _axes(exp, grid) -> list[Axis]:
    if isinstance(grid, (list, tuple)):
        items = []
        for g in grid:
            if isinstance(g, Axis):
                items.append((g.key, g))
            else:
                if "=" not in g:
                    raise ValueError(f"--grid expects key=values, got {g!r}")
                k, v = g.split("=", 1)
                items.append((k.strip(), v.strip()))
    else:
        items = list((grid or {}).items())
    axes = [v if isinstance(v, Axis) else parse_grid(exp, k, v) for k, v in items]
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a parameter appears on two grid axes: {keys}")
    return axes


def point_id(name: str, params: Mapping[str, Any], seed: int) -> str:
    blob = json.dumps({"experiment": name, "params": params, "seed": int(seed)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plan(exp, axes: list[Axis], fixed: Mapping, seeds: Sequence[int]) -> list[Point]:
    from .experiments.registry import resolve_config
    points = []
    for combo in itertools.product(*(a.values for a in axes)):
        over = dict(fixed)
        over.update({a.key: v for a, v in zip(axes, combo)})
        cfg = resolve_config(exp, over)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
        for s in seeds:
            points.append(Point(point_id(exp.name, params, s), params, int(s)))
    return points


# ------------------------------------------------------------------------- the directory
class _Lock:
    """``DIR/.lock`` holding pid and host; refused while a live process holds it."""

    def __init__(self, out: Path):
        self.path = out / ".lock"
        self.held = False

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    other = {}
                if other and not self._dead(other):
                    raise SweepLockedError(
                        f"another sweep (pid {other.get('pid')} on {other.get('host')}) is writing "
                        f"into {self.path.parent}; wait for it to finish or choose another --out "
                        f"(if that process is gone, delete {self.path})") from None
                try:  # stale (dead pid) or half-written: take it over
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise SweepLockedError(f"could not take the lock {self.path}; delete it if no sweep runs")

    @staticmethod
    def _dead(other: dict) -> bool:
        if other.get("host") != socket.gethostname():
            return False  # cannot tell: refuse rather than corrupt
        try:
            os.kill(int(other["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False

    def __exit__(self, *exc):
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False


def _read_points(out: Path) -> dict[str, dict]:
    recs = {}
    for f in sorted((out / "points").glob("*.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # never half-written (atomic), but be safe with foreign files
        recs[r["id"]] = r
    return recs


def _sort_key(rec: dict, order: list[str]):
    def k(v):
        if isinstance(v, bool):
            return (1, str(v))
        if isinstance(v, (int, float)) and math.isfinite(v):
            return (0, float(v))
        return (1, json.dumps(v, default=str))
    return tuple(k(rec["params"].get(p)) for p in order) + ((0, rec["seed"]),)


def _rows(recs: Mapping[str, dict]) -> list[dict]:
    if not recs:
        return []
    order = list(next(iter(recs.values()))["params"])
    rows = []
    for r in sorted(recs.values(), key=lambda r: _sort_key(r, order)):
        row = {"id": r["id"], "seed": r["seed"], "status": r["status"], "error": r["error"]}
        for k, v in r["params"].items():
            row[k] = ",".join(map(str, v)) if isinstance(v, list) else v
        for k, v in r["summary"].items():
            row[k + "_result" if k in r["params"] or k in FIRST else k] = v
        rows.append(row)
    return rows


def _write_table(out: Path, recs) -> list[dict]:
    rows = _rows(recs)
    if rows:
        write_history(out / "results.csv", rows)
        return read_history(out / "results.csv")  # exactly what the table holds
    return rows


def load_results(out: str | Path) -> list[dict]:
    """A sweep directory's results.csv as rows (numbers as floats)."""
    path = Path(out) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {out} a sweep directory (`meanfield sweep ... --out`)?")
    return read_history(path)


def _update_spec(out: Path, name: str, axes, fixed, seeds, opts) -> dict:
    path = out / "sweep.json"
    spec = json.loads(path.read_text()) if path.exists() else {"experiment": name, "grids": [], "axes": []}
    spec["params"] = list(opts.pop("params", spec.get("params", [])))
    if spec.get("experiment") != name:
        raise ValueError(f"{out} holds a sweep of {spec.get('experiment')!r}, not {name!r}; "
                         "choose another --out")
    spec["grids"].append({"axes": [{"key": a.key, "values": list(a.values), "log": a.log} for a in axes],
                          "fixed": dict(fixed), "seeds": list(seeds), **opts,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    known = {a["key"]: a for a in spec["axes"]}
    for a in axes:
        known[a.key] = {"key": a.key, "log": a.log}
    spec["axes"] = [known[k] for k in dict.fromkeys([a["key"] for a in spec["axes"]] + [a.key for a in axes])]
    write_json(path, spec)
    return spec


# ------------------------------------------------------------------------- the verb
def sweep(name: str, grid, *, seeds: int | Sequence[int] = 1, seed: int = 0,
          fixed: Optional[Mapping[str, Any]] = None, out: Optional[str | Path] = None,
          workers: int = 1, scheduler: Optional[str] = None, client: Any = None,
          batch: bool = True, batch_size: int = 64, device: str = "cpu", backend: str = "auto",
          progress: Optional[bool] = None, retry_failed: bool = False, plot: bool = True,
          metric: Optional[str] = None, threshold: Optional[float] = None) -> SweepResult:
    """Run a registered experiment over a grid of parameters and seeds (resumable).

    Args:
        name: experiment name.
        grid: ``{key: "v1,v2" | "start:stop:num[:log]" | [values]}`` or a list of ``key=...`` strings.
        seeds: number of seeds (``seed, seed+1, ...``) or an explicit list.
        fixed: parameters set for every point (like ``--set``).
        out: sweep directory (default ``sweeps/NAME``).
        workers: local processes (1: in this process).
        scheduler: Dask scheduler address (``tcp://host:port``); ``client``: a ``distributed.Client``.
        batch: run points that share shapes as one batched system (experiments with ``run_batch``).
        batch_size: most systems per batch.
        device, backend: for every run.
        progress: progress bar over points (None: only on a terminal).
        retry_failed: recompute points recorded as failed.
        plot: draw ``phase.png``; ``metric``/``threshold`` choose the statistic (default per experiment).

    Returns:
        :class:`SweepResult`.

    Raises:
        ValueError: unknown experiment or parameter, bad grid, another experiment's directory.
        SweepLockedError: another sweep is writing into ``out``.
    """
    from .experiments.registry import get_experiment
    exp = get_experiment(name)
    axes = _axes(exp, grid)
    fixed = dict(fixed or {})
    both = [a.key for a in axes if a.key in fixed]
    if both:
        raise ValueError(f"{both} are both fixed (--set) and swept (--grid); pick one")
    seed_list = list(range(seed, seed + int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds must be >= 1")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    points = _plan(exp, axes, fixed, seed_list)
    out = Path(out) if out is not None else Path("sweeps") / name
    out.mkdir(parents=True, exist_ok=True)
    with _Lock(out):
        _update_spec(out, name, axes, fixed, seed_list,
                     {"device": device, "backend": backend, "batch": batch,
                      "params": [f.name for f in dataclasses.fields(exp.config)]})
        recs = _read_points(out)
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
                                   client=client):
                for r in records:
                    write_json(out / "points" / f"{r['id']}.json", r)
                    recs[r["id"]] = r
                bar.update(len(records))
                if time.monotonic() - last > 2.0:
                    _write_table(out, recs)
                    last = time.monotonic()
        finally:
            bar.close()
            rows = _write_table(out, recs)
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


def _draw(out: Path, rows, name: str, *, metric=None, threshold=None, x=None, y=None,
          file: str = "phase.png", strict: bool = False) -> Optional[Path]:
    import warnings
    from .phase import plot_sweep
    spec = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else {}
    axes = spec.get("axes", [])
    try:
        fig = plot_sweep(rows, experiment=spec.get("experiment", name), axes=axes, metric=metric,
                         threshold=threshold, x=x, y=y, params=spec.get("params", ()))
    except ValueError as e:
        if strict:
            raise
        warnings.warn(f"no phase diagram drawn: {e}")
        return None
    import matplotlib.pyplot as plt
    path = out / file
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``meanfield sweep NAME --grid key=... [...]``."""
    p = argparse.ArgumentParser(prog="meanfield sweep", description="Run an experiment over a grid "
                                "of parameters (resumable: re-running skips finished points) and "
                                "draw its phase diagram.")
    p.add_argument("name", help="experiment name (see `meanfield list`)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                   help="a grid axis: key=v1,v2,... or key=start:stop:num[:log] (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter fixed for every point (repeatable)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", default=None, help="sweep directory (default sweeps/NAME)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address tcp://host:port (points run on that cluster)")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="run points that share shapes as one batched system (default on)")
    p.add_argument("--batch-size", type=int, default=64, help="most systems per batch (default 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto")
    p.add_argument("--retry-failed", action="store_true", help="recompute points recorded as failed")
    p.add_argument("--metric", default=None, help="summary number of the phase diagram (|name| for its absolute value)")
    p.add_argument("--threshold", type=float, default=None, help="the value called 'collapsed'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        from .cli import _parse_sets
        if not args.grid:
            raise ValueError("give at least one --grid key=values")
        res = sweep(args.name, args.grid, seeds=args.seeds, seed=args.seed, fixed=_parse_sets(args.set),
                    out=args.out, workers=args.workers, scheduler=args.scheduler, batch=args.batch,
                    batch_size=args.batch_size, device=args.device, backend=args.backend,
                    progress=False if args.quiet else None, retry_failed=args.retry_failed,
                    metric=args.metric, threshold=args.threshold)
    except (ValueError, FileNotFoundError, SweepLockedError) as e:
        print(f"meanfield sweep: error: {e}", file=sys.stderr)
        return 2
    print(f"sweep {args.name}: {res.computed} point(s) computed, {res.skipped} already done, "
          f"{res.failed} failed -> {res.out / 'results.csv'}")
    if res.failed:
        print("failed points are listed with their error in the 'error' column")
    if res.figure:
        print(f"phase diagram: {res.figure}")
    return 0


def plot_main(argv: Optional[Sequence[str]] = None) -> int:
    """``meanfield plot DIR [--metric M] [--x K --y K] [--threshold X]``: redraw from results.csv."""
    p = argparse.ArgumentParser(prog="meanfield plot", description="Redraw a sweep's phase diagram "
                                "from its results.csv.")
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--metric", default=None, help="summary number (|name| for its absolute value)")
    p.add_argument("--x", default=None, help="parameter on the horizontal axis")
    p.add_argument("--y", default=None, help="parameter on the vertical axis")
    p.add_argument("--threshold", type=float, default=None, help="the value called 'collapsed'")
    p.add_argument("--file", default="phase.png", help="output file name inside DIR (default phase.png)")
    args = p.parse_args(argv)
    try:
        out = Path(args.dir)
        rows = load_results(out)
        spec = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else {}
        name = spec.get("experiment", "")
        path = _draw(out, rows, name, metric=args.metric, threshold=args.threshold, x=args.x,
                     y=args.y, file=args.file, strict=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"meanfield plot: error: {e}", file=sys.stderr)
        return 2
    if path is None:
        return 1
    print(f"phase diagram: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
