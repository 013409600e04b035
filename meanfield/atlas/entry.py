"""Atlas entries: one question drawn as one figure of phase-diagram panels, in one registry.

A :class:`Panel` is a sweep of a registered experiment over two parameters. Everything about the
science comes from the experiment (:class:`meanfield.study.Science`): the statistic of its regime,
the threshold called "collapsed", which side is collapsed, the theory line and the axis labels
with units. A panel only says what to sweep; it may pick another summary column (``metric``), a
threshold of its own, or draw another experiment's theory as a reference line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from ..registry import Registry
from ..study.experiment import Theory

__all__ = ["Panel", "AtlasEntry", "ATLAS", "SIZES", "register_atlas", "list_atlas", "get_atlas",
           "check_size", "sizes"]

SIZES = ("small", "default", "large")


def sizes(small, default, large) -> dict:
    """``{"small": ..., "default": ..., "large": ...}``."""
    return {"small": small, "default": default, "large": large}


def check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")


@dataclass(frozen=True)
class Panel:
    """One sweep drawn as one heat map.

    Attributes:
        key: sub-directory of the entry (panels with the same key share a sweep).
        experiment: registered experiment name.
        title: panel title.
        x, y: swept parameters (dotted config keys) on the axes.
        grid: size -> {parameter: "v1,v2" | "start:stop:num[:log]"}.
        fixed: size -> parameters set for every point.
        metric: summary column drawn (``|name|`` for its absolute value); default the
            experiment's statistic.
        threshold: the value called "collapsed"; default the experiment's.
        collapsed_below: default the experiment's.
        theory: ``"own"`` (the experiment's theory line), ``"reference:NAME"`` (experiment NAME's
            theory, drawn as a reference only: no claim on this panel), a :class:`Theory`, or
            None (no line).
        logx, logy: log axes.
        vmax: top of the colour scale (larger values saturate; None: the largest value).
    """

    key: str
    experiment: str
    title: str
    x: str
    y: str
    grid: Mapping[str, Mapping[str, str]]
    fixed: Mapping[str, Mapping] = field(default_factory=dict)
    metric: Optional[str] = None
    threshold: Optional[float] = None
    collapsed_below: Optional[bool] = None
    theory: Union[str, Theory, None] = "own"
    logx: bool = False
    logy: bool = False
    vmax: Optional[float] = None

    # ---------------------------------------------------------------- resolved from the science
    @property
    def science(self):
        from ..study.experiment import get_experiment
        return get_experiment(self.experiment).science

    @property
    def statistic(self) -> str:
        m = self.metric or self.science.statistic
        if not m:
            raise ValueError(f"panel {self.key!r}: experiment {self.experiment!r} states no statistic; "
                             "give the panel a metric")
        return m

    @property
    def cutoff(self) -> float:
        t = self.threshold if self.threshold is not None else self.science.threshold
        if t is None:
            raise ValueError(f"panel {self.key!r}: no threshold (neither the panel nor experiment "
                             f"{self.experiment!r} states one)")
        return float(t)

    @property
    def below(self) -> bool:
        return self.science.collapsed_below if self.collapsed_below is None else self.collapsed_below

    @property
    def line(self) -> Optional[Theory]:
        """The theory (or reference) line drawn, or None."""
        if self.theory is None or isinstance(self.theory, Theory):
            return self.theory
        if self.theory == "own":
            return self.science.theory
        if isinstance(self.theory, str) and self.theory.startswith("reference:"):
            from ..study.experiment import get_experiment
            th = get_experiment(self.theory.split(":", 1)[1]).science.theory
            if th is None:
                return None
            return Theory(th.fn, th.keys, th.label + " (reference only)", th.collapsed)
        raise ValueError(f"panel {self.key!r}: theory must be 'own', 'reference:NAME', a Theory or None")

    @property
    def is_claim(self) -> bool:
        """True when the line is a theory claimed for this panel (not a reference)."""
        return self.line is not None and not (isinstance(self.theory, str)
                                              and self.theory.startswith("reference:"))

    def predict(self, params: Mapping[str, float]) -> Optional[bool]:
        """Whether the line's theory calls the point collapsed (None: no claim or not computable)."""
        th = self.line
        if th is None or not self.is_claim:
            return None
        try:
            return th.predicts_collapse(params, tol=self.cutoff)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None

    def label(self, key: str) -> str:
        return self.science.label(key)

    @property
    def stat_label(self) -> str:
        m = self.statistic
        lab = self.science.label(m)
        if lab == m and m.startswith("|"):
            lab = f"|{self.science.label(m[1:-1])}|"
        return lab


@dataclass(frozen=True)
class AtlasEntry:
    """A named atlas question: one figure, one reading paragraph.

    Attributes:
        name, title: identifier and figure title.
        statistic: the regime, the statistic and the threshold, in words.
        theory_text: what the dashed line is (a theorem, or a reference only).
        panels: the heat maps.
        seeds: size -> seeds per grid point.
    """

    name: str
    title: str
    statistic: str
    theory_text: str
    panels: tuple
    seeds: Mapping[str, int]


def _check_entry(name: str, e) -> None:
    if not isinstance(e, AtlasEntry):
        raise ValueError(f"atlas entry {name!r} must be an AtlasEntry, got {type(e).__name__}")
    if e.name != name:
        raise ValueError(f"atlas entry registered as {name!r} is named {e.name!r}")
    if not e.panels:
        raise ValueError(f"atlas entry {name!r} has no panels")
    for s in SIZES:
        if s not in e.seeds:
            raise ValueError(f"atlas entry {name!r}: seeds for size {s!r} missing")


def _load_builtins() -> None:
    from . import entries
    for e in entries.BUILTIN:
        ATLAS.register(e.name, e, builtin=True)


ATLAS: Registry = Registry("atlas entry", loader=_load_builtins, check=_check_entry,
                           hint="see `meanfield atlas --list`; add one with meanfield.atlas.register_atlas")


def register_atlas(entry: AtlasEntry, *, overwrite: bool = False) -> AtlasEntry:
    """Add an atlas entry (one declaration: name, panels, seeds)."""
    if not isinstance(entry, AtlasEntry):
        raise ValueError(f"register_atlas takes an AtlasEntry, got {type(entry).__name__}")
    return ATLAS.register(entry.name, entry, overwrite=overwrite)


def list_atlas() -> list[str]:
    """Entry names in the atlas's order (built-ins first, as declared)."""
    from . import entries
    names = ATLAS.list()
    order = [e.name for e in entries.BUILTIN]
    return [n for n in order if n in names] + [n for n in names if n not in order]


def get_atlas(name: str) -> AtlasEntry:
    """The atlas entry of that name (ValueError listing the valid ones)."""
    return ATLAS.get(name)
