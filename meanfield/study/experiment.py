"""What an experiment is: a config (a composition of engine configs), a run, and its science.

An experiment module defines ``EXPERIMENT = Experiment(...)`` and registers it (built-ins are
listed lazily in :data:`EXPERIMENTS`; user code calls :func:`register_experiment`, from a plugin
file or package). The study layer does everything generic once: resolving ``--set`` overrides,
run directories, checkpoints and resume, figures redrawn from files, sweeps, the atlas, the report.

An experiment *owns its science* (:class:`Science`): the claim and its source, the statistic of its
regime and the threshold called "collapsed", the theory function(s) whose zero set is the predicted
boundary, and axis labels with units. Phase diagrams and the atlas read these; nothing is copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from ..registry import Registry
from .spec import apply_overrides, check_config

__all__ = ["Experiment", "ExperimentResult", "RunContext", "Science", "Theory", "EXPERIMENTS",
           "register_experiment", "unregister_experiment", "get_experiment", "list_experiments",
           "resolve_config", "agreement", "parse_dtype", "check_seed", "flow_for"]


@dataclass(frozen=True)
class Theory:
    """A predicted boundary: the zero set of ``fn(params)`` (params: flat name -> number).

    Attributes:
        fn: a function of the parameters, of one sign on each side of the boundary.
        keys: the parameters it depends on (drawn only when an axis is one of them).
        label: legend text, e.g. ``theory: p₃ = 2p₁``.
        collapsed: which sign of ``fn`` the theory calls collapsed (``"negative"``,
            ``"positive"``, or ``"zero"`` when collapse happens only on the boundary).
    """

    fn: Callable[[Mapping[str, float]], float]
    keys: tuple
    label: str
    collapsed: str = "negative"

    def predicts_collapse(self, params: Mapping[str, float], tol: float = 0.0) -> bool:
        v = self.fn(params)
        if self.collapsed == "zero":
            return abs(v) <= tol
        return v < 0 if self.collapsed == "negative" else v > 0


@dataclass(frozen=True)
class Science:
    """The science an experiment owns.

    Attributes:
        claim: the claim in one sentence.
        source: where it is stated (a paper, and the section of ``docs/science.md``).
        regime: ``unbounded``, ``direction`` or ``bounded`` (docs/science.md §1).
        statistic: the summary key of the regime's statistic (``|name|`` for its absolute value).
        threshold: the value of the statistic called "collapsed".
        collapsed_below: collapsed when the statistic is below the threshold.
        theory: the predicted boundary, or None when no theory is claimed.
        labels: parameter or summary key -> axis label with units.
    """

    claim: str = ""
    source: str = ""
    regime: str = ""
    statistic: Optional[str] = None
    threshold: Optional[float] = None
    collapsed_below: bool = True
    theory: Optional[Theory] = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str:
        return self.labels.get(key, key)


@dataclass(frozen=True)
class RunContext:
    """Where and how an experiment runs.

    Attributes:
        out: run directory (None: write nothing).
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
            path = (Path(self.out) / name).resolve()
            if Path(self.out).resolve() not in path.parents:
                raise ValueError(f"figure name {name!r} would be written outside {self.out}")
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
        history: rows (dicts) for ``history.csv``; every row has a ``system`` column when the
            run batched several systems.
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
        name: registry name.
        description: one line for ``meanfield list``.
        config: frozen dataclass type of its parameters (engine configs + its own fields).
        run: ``run(config, ctx) -> ExperimentResult``; None when ``run_batch`` is given (a single
            run is then the batched path with one configuration).
        science: its claim, statistic, threshold, theory and labels.
        run_batch: ``run_batch(configs, seeds, ctx) -> [ExperimentResult]`` running several
            configurations as one batched system; used by sweeps.
        batch_keys: the parameters that may differ within one ``run_batch`` call.
        plot: ``plot(run) -> [figure names]`` drawing the figures from a run directory's files
            (:class:`meanfield.study.rundir.RunFiles`), so restyling never needs a rerun.
        large: overrides for ``--size large`` (GPU-sized).
        small: overrides for ``--size small`` (quick looks and tests).
        claim: shorthand for ``science.claim`` (kept for older code).
    """

    name: str
    description: str
    config: type
    run: Optional[Callable[[Any, RunContext], ExperimentResult]] = None
    science: Science = field(default_factory=Science)
    run_batch: Optional[Callable[[list, list, RunContext], list]] = None
    batch_keys: tuple = ()
    plot: Optional[Callable[[Any], list]] = None
    large: Mapping[str, Any] = field(default_factory=dict)
    small: Mapping[str, Any] = field(default_factory=dict)
    claim: str = ""

    def __post_init__(self):
        check_config(self.config)
        if self.run is None and self.run_batch is None:
            raise ValueError(f"experiment {self.name!r} needs run or run_batch")
        if self.claim and not self.science.claim:
            object.__setattr__(self, "science", Science(**{**self.science.__dict__, "claim": self.claim}))
        if not self.claim:
            object.__setattr__(self, "claim", self.science.claim)

    def run_one(self, cfg, ctx: RunContext) -> ExperimentResult:
        """One configuration: ``run`` or, without it, ``run_batch`` with one configuration."""
        if self.run is not None:
            return self.run(cfg, ctx)
        return self.run_batch([cfg], [ctx.seed], ctx)[0]


def _check_experiment(name: str, exp) -> None:
    if not isinstance(exp, Experiment):
        raise ValueError(f"experiment {name!r} must be a meanfield.study.Experiment, got {type(exp).__name__}")
    if exp.name != name:
        raise ValueError(f"experiment registered as {name!r} is named {exp.name!r}")


_BUILTINS = ("three_atoms", "three_atoms_relu", "maxmargin", "simplex_optimality", "weight_decay",
             "ufm", "fixed_etf", "width_limit", "enclosure", "deep_collapse", "ufm_collapse",
             "collapse",
             # the follow-up claims (docs/science.md §5)
             "multilabel", "loss_family", "layerwise", "normalized", "ls_init",
             # the atlas of 2021-2025 (§6) and pretrained heads (§7)
             "imbalance_ufm", "imbalance_lpm", "imbalance_mixture", "many_classes", "deep_ufm",
             "meanfield_nc1", "pretrained_head")


def _load_builtins() -> None:
    import importlib.util
    for n in _BUILTINS:
        mod = f"meanfield.experiments.{n}"
        if importlib.util.find_spec(mod) is not None:
            EXPERIMENTS.register(n, f"{mod}:EXPERIMENT", builtin=True)


EXPERIMENTS: Registry = Registry(
    "experiment", loader=_load_builtins, check=_check_experiment,
    hint="see `meanfield list`; add your own with meanfield.register_experiment in a --plugin file")


def register_experiment(exp: Experiment, *, overwrite: bool = False) -> Experiment:
    """Add an experiment (a user's own) for run, sweep, plot, report and the atlas."""
    if not isinstance(exp, Experiment):
        raise ValueError(f"register_experiment takes an Experiment, got {type(exp).__name__}")
    return EXPERIMENTS.register(exp.name, exp, overwrite=overwrite)


def unregister_experiment(name: str) -> None:
    EXPERIMENTS.unregister(name)


def get_experiment(name: str) -> Experiment:
    """The experiment of that name. Raises ValueError listing the valid ones."""
    return EXPERIMENTS.get(name)


def list_experiments() -> list[str]:
    return EXPERIMENTS.list()


def resolve_config(exp: Experiment, overrides: Optional[Mapping[str, Any]] = None):
    """The experiment's config with (dotted) overrides applied; see :mod:`meanfield.study.spec`."""
    try:
        return apply_overrides(exp.config(), overrides)
    except ValueError as e:
        raise ValueError(f"experiment {exp.name!r}: {e}") from None


def flow_for(flow, ctx: RunContext):
    """The experiment's ``FlowConfig`` with ``--backend`` applied (``auto`` keeps the config's)."""
    from dataclasses import replace
    return flow if ctx.backend in (None, "auto") else replace(flow, backend=ctx.backend)


def parse_dtype(name: str) -> torch.dtype:
    """A ``dtype`` parameter (``float32`` or ``float64``) as a torch dtype. Raises ValueError."""
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {name!r}")
    return getattr(torch, name)


def check_seed(seed) -> int:
    """A seed usable by torch (0 <= seed < 2**63). Raises ValueError naming the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def agreement(summary: dict, name: str, measured: float, theory: float, tol: float, *,
              relative: bool = False) -> bool:
    """Write ``name``, ``name_theory``, ``name_tol``, ``name_agrees`` into a summary.

    With ``relative=True`` the tolerance is relative to ``|theory|``. A non-finite measurement
    never agrees.
    """
    err = abs(measured - theory)
    ok = bool(math.isfinite(err) and err <= tol * (abs(theory) if relative else 1.0))
    summary[name] = float(measured)
    summary[f"{name}_theory"] = float(theory)
    summary[f"{name}_tol"] = float(tol)
    summary[f"{name}_agrees"] = ok
    return ok
