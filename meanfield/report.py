"""The claims page: run the registered experiments and write one page of claims and figures.

Each experiment runs into ``OUT/<name>/`` (its run directory, see
:func:`meanfield.study.rundir.run_experiment`); a failing experiment is recorded with its error and
does not stop the others. Then

- ``OUT/report.html``: for each experiment its claim and source (``docs/science.md``), the table
  claim | theory | measured | tolerance | agrees built from the ``<name>``, ``<name>_theory``,
  ``<name>_tol``, ``<name>_agrees`` keys of its ``summary.json``, the other (reported) numbers, and
  its figures embedded as ``<img>`` with paths relative to ``OUT``;
- ``OUT/report.md``: the same tables in Markdown.

User values (``--set`` values, error messages) are escaped: ``html.escape`` in HTML, code spans
with a fence longer than any backtick run (and ``|`` escaped in tables) in Markdown.
The command line is ``meanfield report [--out DIR] [--size small|large] [--only NAME,...]
[--set NAME.key=value ...] [--overwrite]`` (:mod:`meanfield.cli`); ``--set
three_atoms.flow.t_end=1e4`` sets one experiment's (dotted) parameter after ``--size``.

A report never destroys another run: ``OUT/<name>/`` holding a run of the same configuration (a
previous report's) is recomputed in place; a run of another configuration, or a directory that is
not a run, refuses the whole report before anything runs, unless ``--overwrite`` (which replaces
runs of another configuration, and still never touches a directory that is not a run).
"""

from __future__ import annotations

import html
import math
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["ReportEntry", "run_report", "write_report", "theory_rows", "parse_report_sets",
           "md_code", "SCIENCE_DOC"]

SCIENCE_DOC = "docs/science.md"

_SUFFIXES = ("_theory", "_tol", "_agrees")


@dataclass
class ReportEntry:
    """One experiment of the report.

    Attributes:
        name, description, claim: from the registry; source: where the claim is stated.
        overrides: the parameters set for this run.
        summary: its summary (empty when it failed).
        figures: figure file names inside ``OUT/<name>/``.
        error: ``"Type: message"`` when it failed, else None; ``trace``: the traceback.
        seconds: wall-clock time.
    """

    name: str
    description: str = ""
    claim: str = ""
    source: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    figures: tuple = ()
    error: Optional[str] = None
    trace: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def checks(self) -> tuple[int, int]:
        """(agreeing, total) theory checks."""
        rows = theory_rows(self.summary)
        return sum(bool(r[4]) for r in rows), len(rows)


def theory_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any, Any, Any, bool]]:
    """``(name, theory, measured, tol, agrees)`` for every ``name`` with a ``name_theory`` key."""
    rows = []
    for k in summary:
        if k.endswith(_SUFFIXES) or f"{k}_theory" not in summary:
            continue
        rows.append((k, summary[f"{k}_theory"], summary[k], summary.get(f"{k}_tol"),
                     bool(summary.get(f"{k}_agrees", False))))
    return rows


def _reported(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The other scalars (no theory attached)."""
    with_theory = {r[0] for r in theory_rows(summary)}
    out = []
    for k, v in summary.items():
        if k in with_theory or any(k.endswith(s) and k[: -len(s)] in with_theory for s in _SUFFIXES):
            continue
        if isinstance(v, (int, float, bool, str)):
            out.append((k, v))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    return "" if v is None else str(v)


def parse_report_sets(items: Optional[Sequence[str]]) -> dict[str, dict[str, str]]:
    """``NAME.key=value`` strings as ``{NAME: {key: value}}``; the key may be dotted
    (``three_atoms.flow.t_end=1e4``: experiment ``three_atoms``, key ``flow.t_end``).

    Raises:
        ValueError: a string without ``NAME.key=value``.
    """
    out: dict[str, dict[str, str]] = {}
    for it in items or ():
        lhs = it.split("=", 1)[0]
        if "=" not in it or "." not in lhs or not all(p.strip() for p in lhs.split(".")):
            raise ValueError(f"--set for a report expects NAME.key=value (e.g. ufm.lam_num=4, "
                             f"three_atoms.flow.t_end=1e4), got {it!r}")
        lhs, v = it.split("=", 1)
        name, key = lhs.split(".", 1)
        out.setdefault(name.strip(), {})[key.strip()] = v.strip()
    return out


_parse_sets = parse_report_sets  # older name


def run_report(out: str | Path = "report", *, size: str = "small", only: Optional[Sequence[str]] = None,
               device: str = "cpu", backend: str = "auto", sets: Optional[Mapping[str, Mapping[str, Any]]] = None,
               seed: int = 0, log=None, overwrite: bool = False) -> list[ReportEntry]:
    """Run the experiments into ``out/<name>/`` and write ``out/report.html`` and ``out/report.md``.

    Args:
        out: report folder.
        size: ``small`` (the defaults) or ``large`` (each experiment's ``large`` overrides).
        only: experiment names (default: every registered one).
        device: torch device of every run; backend: mean-field backend.
        sets: ``{name: {key: value}}`` overrides applied after ``size``.
        seed: base seed of every run.
        log: a callable receiving progress lines (default: nothing).
        overwrite: replace runs in ``out/<name>/`` of another configuration (default: refuse
            them; runs of the same configuration are recomputed either way).

    Returns:
        one :class:`ReportEntry` per experiment, in run order.

    Raises:
        ValueError: unknown size or experiment name, a ``--set`` for an experiment not run, or a
            parameter the experiment does not have, an empty ``out`` (checked before anything runs).
        FileExistsError: ``out/<name>/`` holds a run of another configuration (without
            ``overwrite``) or files that are not a run (checked before anything runs).
    """
    from .study.experiment import get_experiment, list_experiments, resolve_config
    from .study.rundir import (_check_backend, check_device, check_out, inspect_out, refusal,
                               run_experiment, run_record)
    check_out(out)
    check_device(device)
    _check_backend(backend)
    if size not in ("small", "large"):
        raise ValueError(f"unknown size {size!r}; valid: small, large")
    names = list(only) if only else list_experiments()
    valid = list_experiments()
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"unknown experiment(s) {', '.join(bad)}; valid: {', '.join(valid)}")
    sets = {k: dict(v) for k, v in (sets or {}).items()}
    stray = [n for n in sets if n not in names]
    if stray:
        raise ValueError(f"--set names experiment(s) {', '.join(stray)} that are not in this report "
                         f"({', '.join(names)}); a report's --set is NAME.key=value, e.g. "
                         f"{names[0]}.flow.t_end=1e4")
    plans = []
    for name in names:
        try:  # a module that does not import is a failed experiment, not a failed report
            exp = get_experiment(name)
        except Exception as exc:  # noqa: BLE001
            plans.append((name, None, {}, exc, traceback.format_exc(limit=8)))
            continue
        ov = dict(getattr(exp, "large", {}) or {}) if size == "large" else {}
        ov.update(sets.get(name, {}))
        if name in sets:
            resolve_config(exp, ov)  # fail fast on a typo in --set
        plans.append((name, exp, ov, None, ""))
    out = Path(out)
    # what each OUT/<name> holds: a run of this configuration is recomputed in place (a previous
    # report's), anything else refuses the whole report before anything runs (unless --overwrite)
    refused = []
    for name, exp, ov, err, _ in plans:
        if err is not None:
            continue
        try:
            rec = run_record(name, resolve_config(exp, ov), seed=seed, device=device, backend=backend)
        except Exception:  # noqa: BLE001 - recorded as this experiment's failure when it runs
            continue
        kind, detail, _old = inspect_out(out / name, rec)
        why = refusal(out / name, kind, detail, overwrite=overwrite or (
            kind in ("finished", "unfinished") and not detail))
        if why is not None:
            refused.append(str(why))
    if refused:
        raise FileExistsError(f"report --out {out} refused, nothing was run: {' | '.join(refused)}")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, exp, ov, err, trace in plans:
        science = getattr(exp, "science", None)
        e = ReportEntry(name, getattr(exp, "description", ""), getattr(exp, "claim", ""),
                        _source(getattr(science, "source", "")), ov)
        if log:
            log(f"[report] {name} ...")
        t0 = time.perf_counter()
        try:
            if err is not None:
                raise err
            # overwrite: the directory holds nothing or this configuration's run (checked above)
            res = run_experiment(name, ov, out=out / name, device=device, backend=backend,
                                 seed=seed, progress=False, overwrite=True)
            e.summary = dict(res.summary)
            e.figures = tuple(str(f) for f in res.figures)
        except Exception as exc:  # noqa: BLE001 - one failure must not stop the report
            e.error = f"{type(exc).__name__}: {exc}"
            e.trace = trace or traceback.format_exc(limit=8)
        e.seconds = time.perf_counter() - t0
        if log:
            a, n = e.checks
            log(f"[report] {name}: " + (f"FAILED ({e.error})" if e.error else
                                        f"{a}/{n} checks agree") + f", {e.seconds:.1f} s")
        entries.append(e)
        write_report(entries, out, size=size, device=device)  # a partial page survives a crash
    return entries


def _source(text: str) -> str:
    """The claim's source as the report cites it: never an issue number; always docs/science.md."""
    text = re.sub(r"\s*\(?\bissues? #?\d+\)?", "", text or "").strip(" ,;")
    if SCIENCE_DOC not in text:
        text = f"{text} ({SCIENCE_DOC})" if text else SCIENCE_DOC
    return text


def _header(size: str, device: str) -> str:
    from . import __version__
    return (f"meanfield {__version__}, size {size}, device {device}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")


def _intro() -> str:
    return (f"Each claim, its theory and the tolerance it is checked to are stated in "
            f"{SCIENCE_DOC} (in this repository).")


def write_report(entries: Sequence[ReportEntry], out: str | Path, *, size: str = "small",
                 device: str = "cpu") -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h, m = out / "report.html", out / "report.md"
    h.write_text(_html(entries, size, device), encoding="utf-8")
    m.write_text(_markdown(entries, size, device), encoding="utf-8")
    return h, m


def _status(e: ReportEntry) -> str:
    if not e.ok:
        return "FAILED"
    a, n = e.checks
    if n == 0:
        return "reported (no theory check)"
    return "all agree" if a == n else f"{n - a} of {n} DISAGREE"


def md_code(text: Any, *, table: bool = False) -> str:
    """``text`` as one Markdown code span that nothing in it can close (CommonMark).

    The fence is one backtick longer than the longest backtick run inside; a space pads content
    that starts or ends with a backtick; newlines become spaces; in a table cell ``|`` is escaped.
    """
    t = " ".join(str(text).splitlines())
    runs = [len(m) for m in re.findall(r"`+", t)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if t.startswith("`") or t.endswith("`") or (t.startswith(" ") and t.endswith(" ")
                                                           and t.strip()) else ""
    out = f"{fence}{pad}{t}{pad}{fence}"
    return out.replace("|", "\\|") if table else out


def _md_text(text: Any) -> str:
    """Plain text in Markdown with the characters that start markup escaped."""
    return re.sub(r"([\\`*\[\]<>|])", r"\\\1", " ".join(str(text).splitlines()))


def _md_fence(text: str) -> list[str]:
    runs = [len(m) for m in re.findall(r"`{3,}", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [fence, text.rstrip(), fence]


def _markdown(entries: Sequence[ReportEntry], size: str, device: str) -> str:
    L = ["# meanfield report", "", _header(size, device), "", _intro(), "",
         "| experiment | status | checks agreeing | wall (s) |", "|---|---|---|---|"]
    for e in entries:
        a, n = e.checks
        L.append(f"| [{_md_text(e.name)}](#{e.name}) | {_status(e)} | {a}/{n} | {e.seconds:.1f} |")
    for e in entries:
        L += ["", f"## {_md_text(e.name)}", "", f"**Claim.** {_md_text(e.claim or e.description)}", ""]
        if e.source:
            L += [f"Source: {_md_text(e.source)}", ""]
        if e.overrides:
            L += ["Parameters set: " + ", ".join(md_code(f"{k}={v}") for k, v in e.overrides.items()), ""]
        if not e.ok:
            L += [f"**FAILED**: {md_code(e.error)}", ""] + _md_fence(e.trace)
            continue
        rows = theory_rows(e.summary)
        if rows:
            L += ["| claim | theory | measured | tolerance | agrees |", "|---|---|---|---|---|"]
            L += [f"| {_md_text(k)} | {_fmt(th)} | {_fmt(v)} | {_fmt(tol)} | {_fmt(ok)} |"
                  for k, th, v, tol, ok in rows]
            L.append("")
        rep = _reported(e.summary)
        if rep:
            L += ["Reported (no theory):", "", "| quantity | value |", "|---|---|"]
            L += [f"| {_md_text(k)} | {_md_text(_fmt(v))} |" for k, v in rep]
            L.append("")
        L += [f"![{_md_text(f)}]({e.name}/{f})" for f in e.figures]
    return "\n".join(L) + "\n"


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}
th{background:#eee}td.num{font-family:monospace;text-align:right}tr.bad td{background:#fdd}
.ok{color:#070;font-weight:bold}.bad{color:#b00;font-weight:bold}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}details{margin:.4em 0}"""


def _html(entries: Sequence[ReportEntry], size: str, device: str) -> str:
    esc = html.escape
    P = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>meanfield report</title>",
         f"<style>{_CSS}</style></head><body>", "<h1>meanfield report</h1>",
         f"<p>{esc(_header(size, device))}</p>", f"<p>{esc(_intro())}</p>",
         "<table><tr><th>experiment</th><th>status</th><th>checks agreeing</th><th>wall (s)</th></tr>"]
    for e in entries:
        a, n = e.checks
        cls = "bad" if (not e.ok or a < n) else "ok"
        P.append(f"<tr><td><a href='#{esc(e.name)}'>{esc(e.name)}</a></td><td class='{cls}'>"
                 f"{esc(_status(e))}</td><td class='num'>{a}/{n}</td><td class='num'>{e.seconds:.1f}</td></tr>")
    P.append("</table>")
    for e in entries:
        P += [f"<h2 id='{esc(e.name)}'>{esc(e.name)}</h2>",
              f"<p><b>Claim.</b> {esc(e.claim or e.description)}</p>",
              f"<p><small>{esc(e.description)}</small></p>"]
        if e.source:
            P.append(f"<p>Source: {esc(e.source)}</p>")
        if e.overrides:
            P.append("<p>Parameters set: " + ", ".join(f"<code>{esc(str(k))}={esc(str(v))}</code>"
                                                        for k, v in e.overrides.items()) + "</p>")
        if not e.ok:
            P += [f"<p class='bad'>FAILED: {esc(e.error)}</p>", f"<pre>{esc(e.trace)}</pre>"]
            continue
        rows = theory_rows(e.summary)
        if rows:
            P.append("<table><tr><th>claim</th><th>theory</th><th>measured</th><th>tolerance</th>"
                     "<th>agrees</th></tr>")
            for k, th, v, tol, ok in rows:
                P.append(f"<tr class='{'' if ok else 'bad'}'><td>{esc(k)}</td><td class='num'>{esc(_fmt(th))}"
                         f"</td><td class='num'>{esc(_fmt(v))}</td><td class='num'>{esc(_fmt(tol))}</td>"
                         f"<td class='{'ok' if ok else 'bad'}'>{_fmt(ok)}</td></tr>")
            P.append("</table>")
        rep = _reported(e.summary)
        if rep:
            P.append(f"<details{' open' if not rows else ''}><summary>Reported numbers (no theory "
                     f"attached): {len(rep)}</summary><table><tr><th>quantity</th><th>value</th></tr>")
            P += [f"<tr><td>{esc(k)}</td><td class='num'>{esc(_fmt(v))}</td></tr>" for k, v in rep]
            P.append("</table></details>")
        P += [f"<p><img src='{esc(e.name)}/{esc(f)}' alt='{esc(f)}'></p>" for f in e.figures]
    P.append("</body></html>")
    return "\n".join(P) + "\n"
