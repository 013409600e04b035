"""Experiment registry: name -> config dataclass + run function; run directories.

An experiment module defines ``EXPERIMENT = Experiment(name, description, Config, run)`` where
``Config`` is a frozen dataclass of parameters with defaults and ``run(config, ctx)`` returns an
:class:`ExperimentResult`. :func:`run_experiment` resolves ``--set`` overrides, runs it, and writes
the run directory of design.md: ``config.json``, ``history.csv``, ``summary.json``, figures and, for
mean-field runs, ``particles.pt``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import platform
import time
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from ..record import write_history, write_json

__all__ = ["Experiment", "ExperimentResult", "RunContext", "register_experiment", "get_experiment",
           "list_experiments", "resolve_config", "run_experiment", "agreement"]

# name -> module defining EXPERIMENT (imported on demand: no work at import time)
_MODULES: dict[str, str] = {
    "three_atoms": "meanfield.experiments.three_atoms",
    "three_atoms_relu": "meanfield.experiments.three_atoms_relu",
    "maxmargin": "meanfield.experiments.maxmargin",
    "simplex_optimality": "meanfield.experiments.simplex_optimality",
    "weight_decay": "meanfield.experiments.weight_decay",
    "ufm": "meanfield.experiments.ufm",
    "fixed_etf": "meanfield.experiments.fixed_etf",
    "width_limit": "meanfield.experiments.width_limit",
    "enclosure": "meanfield.experiments.enclosure",
    "deep_collapse": "meanfield.experiments.deep_collapse",
    "ufm_collapse": "meanfield.experiments.ufm_collapse",
}
_REGISTRY: dict[str, "Experiment"] = {}


@dataclass(frozen=True)
class RunContext:
    """Where and how an experiment runs.

    Attributes:
        out: run directory (None: write nothing, draw no figures).
        device: torch device string.
        backend: mean-field backend name (``auto``, ``dense``, ``keops``, ``numba``).
        seed: base random seed.
        progress: progress bars (None: only on a terminal).
        figures: draw figures into ``out``.
        checkpoint_every: wall-clock seconds between checkpoints of long runs.
    """

    out: Optional[Path] = None
    device: str = "cpu"
    backend: str = "auto"
    seed: int = 0
    progress: Optional[bool] = None
    figures: bool = True
    checkpoint_every: float = 60.0

    def savefig(self, fig, name: str) -> Optional[Path]:
        """Save a matplotlib figure as ``out/name`` (PNG) and close it; no-op without ``out``."""
        import matplotlib.pyplot as plt
        path = None
        if self.out is not None and self.figures:
            path = Path(self.out) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path

    def checkpoint(self, name: str = "checkpoint.pt") -> Optional[Path]:
        """Checkpoint file for long runs inside the run directory (None without ``out``)."""
        return None if self.out is None else Path(self.out) / name


@dataclass(frozen=True)
class ExperimentResult:
    """What an experiment returns.

    Attributes:
        summary: flat ``name -> number/bool``; numbers with a theory come as ``<name>``,
            ``<name>_theory``, ``<name>_tol``, ``<name>_agrees``.
        history: rows (dicts) for ``history.csv``.
        particles: final particles of a mean-field run (saved as ``particles.pt``), or None.
        figures: names of the figure files written.
        extra: anything else for the API user (not written).
    """

    summary: Mapping[str, Any]
    history: list = field(default_factory=list)
    particles: Any = None
    figures: tuple = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes:
        name, description, config, run, claim: as above.
        run_batch: optional batched entry point ``run_batch(configs, seeds, ctx) -> results``
            running several configurations (and seeds) as one batched system; used by sweeps.
        batch_keys: the parameters that may differ within one ``run_batch`` call (the others
            must be equal); the seed may always differ.
        large: parameter overrides for ``--size large`` (GPU-sized runs of the report).
    """

    name: str
    description: str
    config: type
    run: Callable[[Any, RunContext], ExperimentResult]
    claim: str = ""
    run_batch: Optional[Callable[[list, list, RunContext], list]] = None
    batch_keys: tuple = ()
    large: Mapping[str, Any] = field(default_factory=dict)


def register_experiment(exp: Experiment) -> Experiment:
    """Add an experiment to the registry (a user's own, for ``run_experiment`` and sweeps)."""
    if not dataclasses.is_dataclass(exp.config):
        raise ValueError(f"experiment {exp.name!r}: config must be a dataclass type")
    _REGISTRY[exp.name] = exp
    return exp


def list_experiments() -> list[str]:
    return sorted(set(_MODULES) | set(_REGISTRY))


def get_experiment(name: str) -> Experiment:
    """The experiment of that name.

    Raises:
        ValueError: unknown name (listing the valid ones).
    """
    if name not in _REGISTRY:
        if name not in _MODULES:
            raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(list_experiments())} "
                             "(see `meanfield list`)")
        mod = importlib.import_module(_MODULES[name])
        _REGISTRY[name] = mod.EXPERIMENT
    return _REGISTRY[name]


# ------------------------------------------------------------------------- configs
def _parse_value(text: str, tp, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        last = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse_value(text, a, key)
            except ValueError as e:
                last = e
        raise last or ValueError(f"cannot parse {key}={text!r}")
    if origin in (tuple, list):
        inner = args[0] if args else str
        vals = [_parse_value(t.strip(), inner, key) for t in text.split(",") if t.strip()]
        return tuple(vals)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} expects true/false, got {text!r}")
    if tp is int:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{key} expects an integer, got {text!r}") from None
        if v != int(v):
            raise ValueError(f"{key} expects an integer, got {text!r}")
        return int(v)
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key} expects a number, got {text!r}") from None
    return text


def _coerce(value, tp, key: str):
    if isinstance(value, str) and tp is not str:
        return _parse_value(value, tp, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def resolve_config(exp: Experiment, overrides: Optional[Mapping[str, Any]] = None):
    """The experiment's config with overrides (strings are parsed by the field's type).

    Raises:
        ValueError: an unknown key (listing the parameters) or a value of the wrong type.
    """
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(exp.config)
    names = [f.name for f in fields(exp.config)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for experiment "
                         f"{exp.name!r}; its parameters: {', '.join(names)}")
    kw = {k: _coerce(v, hints[k], k) for k, v in overrides.items()}
    return exp.config(**kw)


def describe_parameters(exp: Experiment) -> list[tuple[str, str, Any]]:
    """(name, type, default) for every parameter."""
    hints = typing.get_type_hints(exp.config)
    out = []
    for f in fields(exp.config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        tp = hints[f.name]
        out.append((f.name, getattr(tp, "__name__", str(tp).replace("typing.", "")), default))
    return out


def parse_dtype(name: str) -> torch.dtype:
    """An experiment's ``dtype`` parameter (``float32`` or ``float64``) as a torch dtype.

    Raises:
        ValueError: any other name.
    """
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {name!r}")
    return getattr(torch, name)


def agreement(summary: dict, name: str, measured: float, theory: float, tol: float, *,
              relative: bool = False) -> bool:
    """Write ``name``, ``name_theory``, ``name_tol``, ``name_agrees`` into a summary.

    With ``relative=True`` the tolerance is relative to ``|theory|``.
    """
    err = abs(measured - theory)
    ok = bool(err <= tol * (abs(theory) if relative else 1.0))
    summary[name] = float(measured)
    summary[f"{name}_theory"] = float(theory)
    summary[f"{name}_tol"] = float(tol)
    summary[f"{name}_agrees"] = ok
    return ok


# ------------------------------------------------------------------------- running
def default_out(name: str, root: Path | str = "runs") -> Path:
    """``runs/NAME``, or ``runs/NAME-2``... when that one holds a finished run."""
    root = Path(root)
    cand = root / name
    i = 2
    while (cand / "summary.json").exists():
        cand = root / f"{name}-{i}"
        i += 1
    return cand


def run_experiment(name: str, overrides: Optional[Mapping[str, Any]] = None, *,
                   out: Optional[str | Path] = None, device: str = "cpu", backend: str = "auto",
                   seed: int = 0, progress: Optional[bool] = None, overwrite: bool = False,
                   write: bool = True, checkpoint_every: float = 60.0) -> ExperimentResult:
    """Run a registered experiment and write its run directory.

    Args:
        name: experiment name (see :func:`list_experiments`).
        overrides: parameter -> value (strings are parsed by type).
        out: run directory (default ``runs/NAME``, or the next free ``runs/NAME-k``).
        device, backend, seed, progress: see :class:`RunContext`.
        overwrite: replace a finished run in ``out`` (otherwise refused).
        write: False runs without writing anything (API use).
        checkpoint_every: wall-clock seconds between checkpoints (a killed run re-run with the
            same command resumes from the last one).

    Returns:
        :class:`ExperimentResult`.

    Raises:
        FileExistsError: ``out`` holds a finished run and ``overwrite`` is False.
    """
    exp = get_experiment(name)
    cfg = resolve_config(exp, overrides)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    out_path = None
    if write:
        out_path = Path(out) if out is not None else default_out(name)
        if (out_path / "summary.json").exists() and not overwrite:
            raise FileExistsError(f"{out_path} already holds a finished run (summary.json); choose "
                                  "another --out or pass --overwrite")
        out_path.mkdir(parents=True, exist_ok=True)
        write_json(out_path / "config.json", {
            "experiment": name, "parameters": dataclasses.asdict(cfg), "device": device,
            "backend": backend, "seed": seed, "meanfield_version": _version(),
            "torch_version": torch.__version__, "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    ctx = RunContext(out=out_path, device=device, backend=backend, seed=seed, progress=progress,
                     figures=write, checkpoint_every=checkpoint_every)
    t0 = time.perf_counter()
    res = exp.run(cfg, ctx)
    if out_path is not None:
        summary = dict(res.summary)
        summary.setdefault("wall_seconds", round(time.perf_counter() - t0, 3))
        write_history(out_path / "history.csv", res.history)
        if res.particles is not None:
            torch.save(res.particles.state_dict(), out_path / "particles.pt")
        write_json(out_path / "summary.json", summary)  # written last: marks the run finished
        ck = out_path / "checkpoint.pt"
        if ck.exists():
            ck.unlink()
    return res


def _version() -> str:
    from .. import __version__
    return __version__


def load_summary(run_dir: str | Path) -> dict:
    """Read a run directory's summary.json."""
    return json.loads((Path(run_dir) / "summary.json").read_text())
