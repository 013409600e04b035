"""Run directories: the one code path that runs an experiment and writes (or reads) its files.

``DIR/`` holds ``config.json`` (every resolved parameter and the provenance), ``history.csv`` (one
row per recorded time; a ``system`` column where the engine batches), ``summary.json`` (flat
``name: number``; written last, it marks the run finished), figures (``*.png``, drawn from these
files by the experiment's ``plot``), ``particles.pt`` for mean-field runs and, while a run is
unfinished, ``checkpoint.pt``.

``config.json`` is the *run record*: an object with ``experiment`` and ``parameters``; once the
run has finished it also lists ``files`` (every file the run wrote, relative to ``DIR``) and
``figures`` (the figure names, in order).

Guarantees: validation happens before anything is written; a directory is owned by one process at
a time (:class:`~meanfield.study.lock.DirLock`); a run only writes into a new or empty directory or
one holding a run record (a directory with other files is refused: ``--out ""`` too); a finished
run is never overwritten without ``overwrite``; ``overwrite`` deletes only the files of the run
recorded there (the listed ``files``, the fixed names this layer writes and ``checkpoint*.pt``;
never anything else) and the old ``summary.json`` and checkpoints *first*, so a killed overwrite
never looks finished; an unfinished directory of another configuration is refused, the same
configuration resumes from its checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..backends.base import _CHOSEN, chosen_backends
from ..record import atomic_torch_save, read_history, write_history, write_json
from .experiment import (Experiment, ExperimentResult, RunContext, check_seed, get_experiment,
                         resolve_config)
from .lock import DirLock
from .spec import from_dict, to_dict

__all__ = ["run_experiment", "RunFiles", "plot_run", "default_out", "check_out", "check_device",
           "run_record", "inspect_out", "refusal", "is_run_record", "PROVENANCE_FIELDS"]

# fields that differ between two otherwise identical runs (wall clock and provenance)
PROVENANCE_FIELDS = ("started", "wall_seconds", "meanfield_version", "torch_version", "python",
                     "host", "backend_used")
log = logging.getLogger(__name__)
_IDENTITY = ("experiment", "parameters", "seed", "device", "backend")
# files this layer writes under fixed names (besides the ones a finished run lists in its record)
_RUN_FILES = ("summary.json", "history.csv", "particles.pt", "trajectories.pt", "model.pt")


def default_out(name: str, root: Path | str = "runs") -> Path:
    """``runs/NAME``, or ``runs/NAME-2``... when that one holds a finished run."""
    root = Path(root)
    cand = root / name
    i = 2
    while (cand / "summary.json").exists():
        cand = root / f"{name}-{i}"
        i += 1
    return cand


def check_out(out: Path | str) -> Path:
    """Refuse an empty ``--out`` (it would mean the current directory) and one that is an existing
    file (or under one). Raises ValueError."""
    if not str(out).strip():
        raise ValueError("--out is empty; give a directory (e.g. --out runs/NAME), or leave --out "
                         "out for the default")
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {out}: {p} is a file, not a directory; choose another --out")
    return out


def check_device(device: str) -> str:
    """A usable torch device string. Raises ValueError naming the fix."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use cpu or cuda")
    return device


def _check_backend(backend: str) -> str:
    from ..backends import list_backends
    if backend not in list_backends():
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(list_backends())}")
    return backend


def _version() -> str:
    from .. import __version__
    return __version__


@dataclass
class RunFiles:
    """A run directory's contents (read from disk, or handed over before writing).

    Attributes:
        path: the directory.
        experiment: the :class:`Experiment`.
        config: the typed config.
        summary: flat summary.
        history: history rows.
        record: the whole config.json record (seed, device, provenance).
        particles: final particles or None (``particles.pt`` loaded on demand, tensors only).
    """

    path: Path
    experiment: Experiment
    config: Any
    summary: Mapping[str, Any]
    history: list
    record: Mapping[str, Any] = field(default_factory=dict)
    _particles: Any = None

    @property
    def particles(self):
        if self._particles is None and (self.path / "particles.pt").exists():
            from ..particles import Particles
            try:
                sd = torch.load(self.path / "particles.pt", map_location="cpu", weights_only=True)
                self._particles = Particles.from_state_dict(sd)
            except Exception as e:  # noqa: BLE001 - name the file, never run its code
                raise ValueError(f"{self.path / 'particles.pt'} is not a valid particles file "
                                 f"({type(e).__name__}: {e})") from None
        return self._particles

    @property
    def ctx(self) -> RunContext:
        return RunContext(out=self.path, device="cpu", seed=int(self.record.get("seed", 0)))

    def savefig(self, fig, name: str):
        return self.ctx.savefig(fig, name)

    @classmethod
    def load(cls, path: str | Path) -> "RunFiles":
        """Read a finished run directory.

        Raises:
            FileNotFoundError: not a run directory, or not finished.
            ValueError: a corrupt file (named).
        """
        path = Path(path)
        rec = _read_json(path / "config.json", "config.json of a run directory")
        if not isinstance(rec, dict) or "experiment" not in rec or "parameters" not in rec:
            raise ValueError(f"{path / 'config.json'} is not a run record (no experiment/parameters)")
        exp = get_experiment(rec["experiment"])
        try:
            cfg = from_dict(exp.config, rec["parameters"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path / 'config.json'}: parameters do not match experiment "
                             f"{exp.name!r} ({e})") from None
        summary = _read_json(path / "summary.json", "summary.json (is the run finished?)")
        if not isinstance(summary, dict):
            raise ValueError(f"{path / 'summary.json'} must hold an object of name: number")
        hist = read_history(path / "history.csv") if (path / "history.csv").exists() else []
        return cls(path, exp, cfg, summary, hist, rec)


def _read_json(path: Path, what: str):
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: expected the {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is corrupt ({e}); re-run with --overwrite") from None


def plot_run(path: str | Path) -> list[str]:
    """Redraw a finished run's figures from its files; returns the figure names."""
    run = RunFiles.load(path)
    if run.experiment.plot is None:
        return []
    try:
        names = list(run.experiment.plot(run) or [])
    except (KeyError, TypeError, ValueError, IndexError) as e:  # files that parse but do not fit
        if isinstance(e, ValueError) and str(Path(path)) in str(e):
            raise  # already names the file
        files = ", ".join(p.name for p in sorted(Path(path).iterdir())
                          if p.suffix in (".json", ".csv", ".pt"))
        raise ValueError(f"{path}: cannot draw the figures from its files ({files}): "
                         f"{type(e).__name__}: {e}; is one corrupt? re-run with --overwrite") from None
    try:
        _record_files(Path(path), names)  # a figure drawn now is the run's too (--overwrite removes it)
    except OSError as e:  # a read-only run directory: the figures are drawn, the record stays
        log.warning("figures of %s not recorded in its config.json (%s)", path, e)
    return names


def _identity(rec: Mapping) -> dict:
    return {k: rec.get(k) for k in _IDENTITY}


def _differences(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} there, {vb!r} now)")
    return out


def is_run_record(rec: Any) -> bool:
    """Whether a parsed ``config.json`` is a run record written by this module."""
    return (isinstance(rec, dict) and isinstance(rec.get("experiment"), str)
            and isinstance(rec.get("parameters"), dict))


def run_record(name: str, cfg: Any, *, seed: int = 0, device: str = "cpu",
               backend: str = "auto") -> dict:
    """The identity part of the run record of ``name`` with config ``cfg`` (what decides whether a
    directory holds *this* run)."""
    return {"experiment": name, "parameters": to_dict(cfg), "seed": seed, "device": device,
            "backend": backend}


def _visible(out: Path) -> list[str]:
    """Entries of ``out`` that are not hidden (``.lock`` and temporary files are hidden)."""
    if not out.is_dir():
        return []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                  if not p.name.startswith("."))


def _listing(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def inspect_out(out: Path, record: Mapping) -> tuple[str, Any, Optional[dict]]:
    """What ``out`` holds, seen from a run with identity ``record`` (see :func:`run_record`).

    Returns:
        ``(kind, detail, old_record)``: kind ``new`` (missing, or only hidden files), ``sweep``,
        ``foreign`` (files but no run record; detail: a sentence saying what is there),
        ``finished`` or ``unfinished`` (a run record; detail: the differences from ``record``,
        empty for the same configuration; old_record: the record read).
    """
    out = Path(out)
    if (out / "sweep.json").exists() or (out / "points").is_dir():
        return "sweep", "", None
    names = _visible(out)
    if not names:
        return "new", "", None
    cfg = out / "config.json"
    if not cfg.is_file():
        return "foreign", f"it holds {_listing(names)} and no run record (config.json)", None
    try:
        old = json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        return "foreign", (f"its config.json is not a run record (unreadable: "
                           f"{' '.join(str(e).split())}); it holds {_listing(names)}"), None
    if not is_run_record(old):
        return "foreign", (f"its config.json is not a meanfield run record (no experiment/"
                           f"parameters); it holds {_listing(names)}"), None
    diff = _differences(_identity(old), _identity(record))
    kind = "finished" if (out / "summary.json").exists() else "unfinished"
    return kind, diff, old


def refusal(out: Path, kind: str, detail: Any, *, overwrite: bool) -> Optional[Exception]:
    """The error that refuses running ``record`` into ``out`` (see :func:`inspect_out`), or None."""
    if kind == "sweep":
        return ValueError(f"--out {out} is a sweep directory; a run needs its own directory "
                          "(choose another --out)")
    if kind == "foreign":
        return FileExistsError(f"--out {out} is not a meanfield run directory: {detail}; a run "
                               "needs a new or empty directory: choose another --out (--overwrite "
                               "only replaces a run that meanfield wrote)")
    if overwrite:
        return None
    if kind == "finished":
        if detail:
            return FileExistsError(
                f"{out} already holds a finished run of another configuration (differs in "
                f"{'; '.join(detail[:4])}); choose another --out or pass --overwrite to replace it")
        return FileExistsError(f"{out} already holds a finished run (summary.json); choose "
                               "another --out or pass --overwrite")
    if kind == "unfinished" and detail:
        return FileExistsError(
            f"{out} holds an unfinished run of another configuration (differs in "
            f"{'; '.join(detail[:4])}); pass --overwrite to discard it or choose another --out")
    return None


def _inside(out: Path, name: Any) -> Optional[Path]:
    """``out/name`` for a recorded relative file name that stays inside ``out``, else None."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        return None
    parts = Path(name).parts
    if ".." in parts or any(p.startswith(".") for p in parts):
        return None
    path = out / name
    if len(parts) > 1:  # a folder on the way may not lead elsewhere (a link)
        try:
            path.parent.resolve().relative_to(out.resolve())
        except (OSError, ValueError):
            return None
    return path


def _clear(out: Path, rec: Mapping) -> None:
    """Remove the files of the run recorded in ``rec`` (``out/config.json``), summary first (a
    killed clear never looks finished): its listed ``files``, the fixed names this layer writes
    and checkpoints; nothing else (a file the run did not write stays)."""
    (out / "summary.json").unlink(missing_ok=True)
    for p in out.glob("checkpoint*.pt"):
        p.unlink(missing_ok=True)
    listed = rec.get("files") if isinstance(rec.get("files"), list) else []
    paths = [out / n for n in _RUN_FILES] + [p for p in map(lambda n: _inside(out, n), listed) if p]
    for p in paths:
        if p.name != "config.json" and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
            for d in p.parents:  # a figure in a sub-folder: remove the folders it leaves empty
                if d == out or out not in d.parents:
                    break
                try:
                    d.rmdir()
                except OSError:
                    break
    (out / "config.json").unlink(missing_ok=True)


def _snapshot(out: Path) -> dict[str, tuple]:
    """Every visible file under ``out`` (relative name -> inode, mtime, size)."""
    snap = {}
    if out.is_dir():
        for p in out.rglob("*"):
            rel = p.relative_to(out)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            st = p.stat()
            snap[rel.as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return snap


def _written(out: Path, before: Mapping[str, tuple]) -> list[str]:
    """Files under ``out`` created or replaced since the snapshot ``before`` (checkpoints aside:
    they are transient, and ``checkpoint*.pt`` is cleared by name)."""
    return sorted(n for n, st in _snapshot(out).items()
                  if before.get(n) != st and not fnmatch.fnmatch(n, "checkpoint*.pt"))


def _figure_names(out: Path, figures) -> list[str]:
    """Figure names (strings or paths) as names relative to ``out``, those that exist."""
    names = []
    for f in figures or ():
        p = Path(str(f))
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(out.resolve())
            except ValueError:
                continue
        if _inside(out, p.as_posix()) is not None and (out / p).is_file() and p.as_posix() not in names:
            names.append(p.as_posix())
    return names


def _record_files(out: Path, figures, written=()) -> None:
    """Add ``written`` files and ``figures`` to the run record's ``files`` (and ``figures``)."""
    cfg = out / "config.json"
    try:
        rec = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return
    if not is_run_record(rec):
        return
    figs = _figure_names(out, figures)
    old = [n for n in rec.get("files", []) if isinstance(n, str)] \
        if isinstance(rec.get("files"), list) else []
    files = sorted(set(old) | set(written) | set(figs) | {"config.json"})
    new = {**rec, "files": files, "figures": figs}
    if new != rec:
        write_json(cfg, new)


def run_experiment(name: str, overrides: Optional[Mapping[str, Any]] = None, *,
                   out: Optional[str | Path] = None, device: str = "cpu", backend: str = "auto",
                   seed: int = 0, progress: Optional[bool] = None, overwrite: bool = False,
                   write: bool = True, checkpoint_every: float = 60.0) -> ExperimentResult:
    """Run a registered experiment and write its run directory.

    Args:
        name: experiment name (see :func:`~meanfield.study.experiment.list_experiments`).
        overrides: dotted key -> value (strings are parsed by type; see :mod:`meanfield.study.spec`).
        out: run directory (default ``runs/NAME``, or the next free ``runs/NAME-k``).
        device, backend, seed, progress: see :class:`RunContext`.
        overwrite: replace a finished run, or an unfinished one of another configuration (only
            the files that run recorded are deleted; a directory without a run record is refused).
        write: False runs without writing anything (API use).
        checkpoint_every: wall-clock seconds between checkpoints (a killed run re-run with the
            same command resumes from the last one).

    Returns:
        :class:`ExperimentResult` (``extra["out"]`` is the run directory when written).

    Raises:
        ValueError: bad parameters, device, backend, seed or ``out`` (empty, a file, a sweep
            directory); nothing is written.
        FileExistsError: ``out`` holds files but no run record (even with ``overwrite``), or a
            finished run, or an unfinished run of another configuration, and ``overwrite`` is False.
        LockedError: another process is writing into ``out``.
    """
    exp = get_experiment(name)
    cfg = resolve_config(exp, overrides)
    check_seed(seed)
    check_device(device)
    _check_backend(backend)
    if not (isinstance(checkpoint_every, (int, float)) and checkpoint_every >= 0):  # NaN fails too
        raise ValueError(f"checkpoint_every (--checkpoint-every) must be a number of seconds >= 0, "
                         f"got {checkpoint_every!r}")
    if not write:
        return exp.run_one(cfg, RunContext(device=device, backend=backend, seed=seed,
                                           progress=progress, figures=False,
                                           checkpoint_every=checkpoint_every))
    if out is None:
        out = Path("runs") / name if overwrite else default_out(name)
    out_path = check_out(out)
    record = run_record(name, cfg, seed=seed, device=device, backend=backend)
    created = not out_path.exists()
    try:
        with DirLock(out_path, "run"):
            cfg_file = out_path / "config.json"
            kind, detail, old = inspect_out(out_path, record)  # again, now that we own it
            err = refusal(out_path, kind, detail, overwrite=overwrite)
            if err is not None:
                raise err
            if overwrite and old is not None:
                _clear(out_path, old)
            before = _snapshot(out_path)
            write_json(cfg_file, {**record, "meanfield_version": _version(),
                                  "torch_version": torch.__version__,
                                  "python": platform.python_version(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
            ctx = RunContext(out=out_path, device=device, backend=backend, seed=seed,
                             progress=progress, figures=True, checkpoint_every=checkpoint_every)
            t0 = time.perf_counter()
            mark = len(_CHOSEN)
            try:
                res = exp.run_one(cfg, ctx)
            except BaseException:
                # nothing to resume from (a value refused inside the experiment, a failure before the
                # first checkpoint): leave no half directory that would block the corrected command
                if not any(out_path.glob("checkpoint*.pt")):
                    # this run's only: what it wrote (a figure, a data file: no orphan without a
                    # record, which would make the directory look foreign)
                    for f in ("trajectories.pt", "model.pt", *_written(out_path, before)):
                        if f != "config.json":
                            (out_path / f).unlink(missing_ok=True)
                    (out_path / "config.json").unlink(missing_ok=True)
                raise
            summary = dict(res.summary)
            summary.setdefault("wall_seconds", round(time.perf_counter() - t0, 3))
            used = chosen_backends(mark)
            if used:  # provenance: what `auto` (or --backend) resolved to
                write_json(cfg_file, {**json.loads(cfg_file.read_text()), "backend_used": used})
            write_history(out_path / "history.csv", res.history)
            if res.particles is not None:
                atomic_torch_save(res.particles.state_dict(), out_path / "particles.pt")
            # the files written so far, recorded before the run looks finished (--overwrite
            # deletes these and nothing else)
            _record_files(out_path, res.figures, _written(out_path, before) + ["summary.json"])
            write_json(out_path / "summary.json", summary)  # marks the run finished
            for p in out_path.glob("checkpoint*.pt"):
                p.unlink(missing_ok=True)
            figures = tuple(res.figures)
            if exp.plot is not None:  # from the files: a failing figure never costs the finished run
                run = RunFiles(out_path, exp, cfg, summary, list(res.history), record, res.particles)
                try:
                    figures = tuple(exp.plot(run) or ())
                except Exception as e:  # noqa: BLE001 - the run is finished and kept; say how to redraw
                    log.warning("figures of %s not drawn (%s: %s); the run is complete: fix the "
                                "figure code and redraw with `meanfield plot %s`", out_path,
                                type(e).__name__, e, out_path)
            _record_files(out_path, figures, _written(out_path, before))
    finally:
        if created and out_path.is_dir() and not any(out_path.iterdir()):
            out_path.rmdir()  # a run refused inside the experiment leaves no directory
    return ExperimentResult(summary, res.history, res.particles, figures,
                            {**res.extra, "out": out_path})
