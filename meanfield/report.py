"""``meanfield report``: run every registered experiment and write one page of claims and figures.

Each experiment runs into ``OUT/<name>/`` (its run directory, see
:func:`meanfield.experiments.registry.run_experiment`); a failing experiment is recorded with its
error and does not stop the others. Then

- ``OUT/report.html``: for each experiment its claim, the table
  claim | theory | measured | tolerance | agrees built from the ``<name>``, ``<name>_theory``,
  ``<name>_tol``, ``<name>_agrees`` keys of its ``summary.json``, the other (reported) numbers, and
  its figures embedded as ``<img>`` with paths relative to ``OUT``;
- ``OUT/report.md``: the same tables in Markdown.

Usage::

    meanfield report [--out DIR] [--size small|large] [--only NAME,...] [--device cpu|cuda]
                     [--set NAME.key=value ...]

``--size large`` applies each experiment's ``large`` overrides (GPU-sized); ``--set`` overrides one
parameter of one experiment (after ``--size``). Exit status 0 when every experiment ran and every
check agrees, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["ReportEntry", "run_report", "write_report", "theory_rows", "main"]

_SUFFIXES = ("_theory", "_tol", "_agrees")


@dataclass
class ReportEntry:
    """One experiment of the report.

    Attributes:
        name, description, claim: from the registry.
        overrides: the parameters set for this run.
        summary: its summary (empty when it failed).
        figures: figure file names inside ``OUT/<name>/``.
        error: ``"Type: message"`` when it failed, else None; ``trace``: the traceback.
        seconds: wall-clock time.
    """

    name: str
    description: str = ""
    claim: str = ""
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


def _parse_sets(items: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for it in items or ():
        if "=" not in it or "." not in it.split("=", 1)[0]:
            raise ValueError(f"--set expects NAME.key=value (e.g. ufm.num=4), got {it!r}")
        lhs, v = it.split("=", 1)
        name, key = lhs.split(".", 1)
        out.setdefault(name.strip(), {})[key.strip()] = v.strip()
    return out


def run_report(out: str | Path = "report", *, size: str = "small", only: Optional[Sequence[str]] = None,
               device: str = "cpu", sets: Optional[Mapping[str, Mapping[str, Any]]] = None,
               seed: int = 0, log=None) -> list[ReportEntry]:
    """Run the experiments into ``out/<name>/`` and write ``out/report.html`` and ``out/report.md``.

    Args:
        out: report folder.
        size: ``small`` (the defaults) or ``large`` (each experiment's ``large`` overrides).
        only: experiment names (default: every registered one).
        device: torch device of every run.
        sets: ``{name: {key: value}}`` overrides applied after ``size``.
        seed: base seed of every run.
        log: a callable receiving progress lines (default: nothing).

    Returns:
        one :class:`ReportEntry` per experiment, in run order.

    Raises:
        ValueError: unknown size or experiment name, a ``--set`` for an experiment not run, or a
            parameter the experiment does not have (checked before anything runs).
    """
    from .experiments.registry import get_experiment, list_experiments, resolve_config, run_experiment
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
                         f"({', '.join(names)})")
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
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, exp, ov, err, trace in plans:
        e = ReportEntry(name, getattr(exp, "description", ""), getattr(exp, "claim", ""), ov)
        if log:
            log(f"[report] {name} ...")
        t0 = time.perf_counter()
        try:
            if err is not None:
                raise err
            res = run_experiment(name, ov, out=out / name, device=device, seed=seed,
                                 progress=False, overwrite=True)
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


def _header(size: str, device: str) -> str:
    from . import __version__
    return (f"meanfield {__version__}, size {size}, device {device}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")


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


def _markdown(entries: Sequence[ReportEntry], size: str, device: str) -> str:
    L = ["# meanfield report", "", _header(size, device), "",
         "| experiment | status | checks agreeing | wall (s) |", "|---|---|---|---|"]
    for e in entries:
        a, n = e.checks
        L.append(f"| [{e.name}](#{e.name}) | {_status(e)} | {a}/{n} | {e.seconds:.1f} |")
    for e in entries:
        L += ["", f"## {e.name}", "", f"**Claim.** {e.claim or e.description}", ""]
        if e.overrides:
            L += ["Parameters set: " + ", ".join(f"`{k}={v}`" for k, v in e.overrides.items()), ""]
        if not e.ok:
            L += [f"**FAILED**: `{e.error}`", "", "```", e.trace.rstrip(), "```"]
            continue
        rows = theory_rows(e.summary)
        if rows:
            L += ["| claim | theory | measured | tolerance | agrees |", "|---|---|---|---|---|"]
            L += [f"| {k} | {_fmt(th)} | {_fmt(v)} | {_fmt(tol)} | {_fmt(ok)} |" for k, th, v, tol, ok in rows]
            L.append("")
        rep = _reported(e.summary)
        if rep:
            L += ["Reported (no theory):", "", "| quantity | value |", "|---|---|"]
            L += [f"| {k} | {_fmt(v)} |" for k, v in rep]
            L.append("")
        L += [f"![{f}]({e.name}/{f})" for f in e.figures]
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
         f"<p>{esc(_header(size, device))}</p>",
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``meanfield report`` (``meanfield report --atlas ...`` runs the atlas page)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--atlas" in argv:
        from .atlas import main as atlas_main
        return atlas_main([a for a in argv if a != "--atlas"])
    p = argparse.ArgumentParser(prog="meanfield report", description="Run every registered "
                                "experiment and write OUT/report.html and OUT/report.md.")
    p.add_argument("--out", default="report", help="report folder (default ./report)")
    p.add_argument("--size", default="small", choices=("small", "large"),
                   help="small: defaults (a few minutes on a CPU); large: GPU-sized overrides")
    p.add_argument("--only", default=None, help="comma-separated experiment names")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="override one experiment's parameter (repeatable), e.g. ufm.num=6")
    p.add_argument("--atlas", action="store_true",
                   help="write the collapse atlas instead (see `meanfield atlas --help`)")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    try:
        if args.device.startswith("cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ValueError(f"device {args.device!r} requested but CUDA is not available; use --device cpu")
        entries = run_report(args.out, size=args.size, only=only, device=args.device,
                             sets=_parse_sets(args.set), seed=args.seed,
                             log=lambda s: print(s, flush=True))
    except ValueError as e:
        print(f"meanfield report: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    good = all(e.ok and e.checks[0] == e.checks[1] for e in entries)
    return 0 if good else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
