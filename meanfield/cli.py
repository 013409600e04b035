"""The ``meanfield`` command: one argparse tree with shared options for every subcommand.

``meanfield [-v] [--plugin P] SUBCOMMAND [options]`` with SUBCOMMAND one of run, list, info, sweep,
plot, report, atlas, bench. The shared options (``-v``, ``--device``, ``--backend``,
``--set KEY=VALUE``, ``--out``, ``--plugin PATH_OR_MODULE``) may stand before or after the
subcommand. Plugins are loaded before anything else. Errors are one line on stderr
(``meanfield: error: ...``): exit 2 for bad input, 1 for a failed run, 130 when interrupted.
Library modules (sweep, report) expose functions only; ``atlas`` and ``bench`` keep their own
``main(argv)`` and get the arguments parsed here (atlas) or passed through unchanged (bench).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from typing import Optional, Sequence

__all__ = ["main", "parse_sets", "build_parser"]

_VALUED = ("--device", "--backend", "--set", "--out", "--plugin")
_LISTS = ("set", "plugin")


class _UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _common(prefix: str) -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("shared options (before or after the subcommand)")
    S = argparse.SUPPRESS
    g.add_argument("-v", "--verbose", dest=prefix + "verbose", action="store_true", default=S,
                   help="log what the engine and the study layer decide")
    g.add_argument("--device", dest=prefix + "device", default=S, metavar="DEV",
                   help="torch device: cpu (default) or cuda[:N]")
    g.add_argument("--backend", dest=prefix + "backend", default=S, metavar="NAME",
                   help="mean-field backend: auto (default), dense, keops, numba")
    g.add_argument("--set", dest=prefix + "set", action="append", default=S, metavar="KEY=VALUE",
                   help="override a parameter with a dotted key (flow.dt=0.01, data=moons, "
                        "data.noise=0.1; tuples comma-separated); repeatable")
    g.add_argument("--out", dest=prefix + "out", default=S, metavar="PATH",
                   help="output directory")
    g.add_argument("--plugin", dest=prefix + "plugin", action="append", default=S,
                   metavar="PATH_OR_MODULE",
                   help="load user code (a .py file or a module) that registers experiments, "
                        "distributions, ...; repeatable")
    return p


_HELP = {
    "run": "run an experiment and write its run directory",
    "list": "list experiments (with -v or NAME: every parameter, its type, default and meaning)",
    "info": "versions, devices and backends",
    "sweep": "run an experiment over a grid of parameters (resumable) and draw its phase diagram",
    "plot": "redraw figures from files: a run directory's, or a sweep's phase diagram",
    "report": "run the experiments at a small size and write the claims page",
    "atlas": "run/resume the collapse atlas (phase diagrams) and write its page",
    "bench": "time one flow step per backend against a naive autograd baseline",
}


def build_parser() -> argparse.ArgumentParser:
    """The whole argument tree (atlas and bench are listed; their options are their own)."""
    p = _Parser(prog="meanfield", parents=[_common("top_")],
                description="Mean-field and finite-width simulations of neural collapse.")
    sub = p.add_subparsers(dest="cmd", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    c = [_common("")]

    r = sub.add_parser("run", parents=c, help=_HELP["run"], description=_HELP["run"])
    r.add_argument("name", help="experiment name (see `meanfield list`)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--size", choices=("default", "small", "large"), default="default",
                   help="the experiment's small (quick) or large (GPU) overrides, before --set")
    r.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="wall-clock seconds between checkpoints of long runs (default 60)")

    ls = sub.add_parser("list", parents=c, help=_HELP["list"], description=_HELP["list"])
    ls.add_argument("name", nargs="?", default=None, help="show this experiment's parameters")

    sub.add_parser("info", parents=c, help=_HELP["info"], description=_HELP["info"])

    s = sub.add_parser("sweep", parents=c, help=_HELP["sweep"], description=_HELP["sweep"] +
                       ". Re-running the same command resumes; --set values are part of the "
                       "sweep's identity.")
    s.add_argument("name", help="experiment name (see `meanfield list`)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                   help="a grid axis on a dotted key: key=v1,v2,... or key=start:stop:num[:log] "
                        "(repeatable)")
    s.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default 1)")
    s.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in process)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address tcp://host:port (points run on that cluster)")
    s.add_argument("--dask-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="stop a Dask sweep that has had no worker for this long (default 300)")
    s.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="run points that share shapes as one batched system (default on)")
    s.add_argument("--batch-size", type=int, default=64, help="most systems per batch (default 64)")
    s.add_argument("--retry-failed", action="store_true", help="recompute points recorded as failed")
    s.add_argument("--metric", default=None, help="summary number of the phase diagram (|name| for its absolute value)")
    s.add_argument("--threshold", type=float, default=None, help="the value called 'collapsed'")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    pl = sub.add_parser("plot", parents=c, help=_HELP["plot"], description=_HELP["plot"])
    pl.add_argument("dir", help="a run directory or a sweep directory")
    pl.add_argument("--metric", default=None, help="summary number (|name| for its absolute value)")
    pl.add_argument("--x", default=None, help="parameter on the horizontal axis")
    pl.add_argument("--y", default=None, help="parameter on the vertical axis")
    pl.add_argument("--threshold", type=float, default=None, help="the value called 'collapsed'")
    pl.add_argument("--file", default="phase.png", help="figure file name inside DIR (default phase.png)")

    rp = sub.add_parser("report", parents=c, help=_HELP["report"], description=_HELP["report"] +
                        ". --set NAME.KEY=VALUE sets one experiment's parameter "
                        "(three_atoms.flow.t_end=1e4). Exit 0 when every check agrees.")
    rp.add_argument("--size", default="small", choices=("small", "large"),
                    help="small: defaults (minutes on a CPU); large: GPU-sized overrides")
    rp.add_argument("--only", default=None, help="comma-separated experiment names")
    rp.add_argument("--seed", type=int, default=0)

    at = sub.add_parser("atlas", parents=c, help=_HELP["atlas"], description=_HELP["atlas"] +
                        " (resumable: re-running the same command finishes what is missing).")
    at.add_argument("--size", default="default", choices=("small", "default", "large"),
                    help="small: a quick look; default: each entry under 15 minutes on 2 CPU "
                         "cores; large: GPU-sized")
    at.add_argument("--only", default=None, help="comma-separated atlas entries (see --list)")
    at.add_argument("--workers", type=int, default=1, help="local processes per sweep")
    at.add_argument("--no-width-limit", action="store_true", help="skip the width_limit run")
    at.add_argument("--list", action="store_true", help="list the atlas entries and exit")
    at.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("bench", help=_HELP["bench"], add_help=False)
    return p


# ------------------------------------------------------------------ helpers
def parse_sets(items: Optional[Sequence[str]]) -> dict:
    """``KEY=VALUE`` strings as a dict (values parsed later by the config's types)."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        if not k.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {it!r}")
        out[k.strip()] = v.strip()
    return out


def _opt(args, name: str, default=None):
    """A shared option given after the subcommand, else before it, else the default."""
    if name in _LISTS:
        return list(getattr(args, "top_" + name, None) or []) + list(getattr(args, name, None) or [])
    v = getattr(args, name, None)
    if v is None:
        v = getattr(args, "top_" + name, None)
    return default if v is None else v


def _setup(args) -> None:
    logging.basicConfig(level=logging.INFO if _opt(args, "verbose") else logging.WARNING,
                        format="%(name)s: %(message)s", force=True)
    from .study.plugins import load_entry_points, load_plugins
    load_plugins(_opt(args, "plugin"))
    load_entry_points()


def _no(args, cmd: str, *names: str) -> None:
    for n in names:
        if _opt(args, n) not in (None, [], False):
            raise ValueError(f"`meanfield {cmd}` does not take --{n}")


# ------------------------------------------------------------------ subcommands
def _cmd_run(args) -> int:
    from .study.experiment import get_experiment
    from .study.rundir import run_experiment
    overrides = {}
    if args.size != "default":
        overrides.update(dict(getattr(get_experiment(args.name), args.size) or {}))
    overrides.update(parse_sets(_opt(args, "set")))
    res = run_experiment(args.name, overrides, out=_opt(args, "out"), device=_opt(args, "device", "cpu"),
                         backend=_opt(args, "backend", "auto"), seed=args.seed,
                         progress=False if args.quiet else None, overwrite=args.overwrite,
                         checkpoint_every=args.checkpoint_every)
    summary = dict(res.summary)
    width = max((len(k) for k in summary), default=0)
    print(f"experiment {args.name}: results")
    for k, v in summary.items():
        print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    agrees = [k for k in summary if k.endswith("_agrees")]
    if agrees:
        bad = [k[:-7] for k in agrees if not summary[k]]
        print("all theory checks agree" if not bad else f"DISAGREES with theory: {', '.join(bad)}")
    if res.figures:
        print("figures: " + ", ".join(map(str, res.figures)))
    print(f"run directory: {res.extra['out']}")
    return 0


def _cmd_list(args) -> int:
    from .study.experiment import get_experiment, list_experiments
    from .study.spec import TUPLE_SYNTAX, describe
    _no(args, "list", "set", "out")
    names = list_experiments()
    if args.name is not None:
        get_experiment(args.name)  # unknown: ValueError listing the valid ones
        names = [args.name]
    show = args.name is not None or _opt(args, "verbose", False)
    for name in names:
        try:
            exp = get_experiment(name)
        except Exception as e:  # noqa: BLE001 - one broken module: say so, list the others
            if args.name is not None:
                raise
            print(f"{name}: (cannot be loaded: {' '.join(str(e).split())})")
            continue
        print(f"{name}: {exp.description}")
        if not show:
            continue
        rows = describe(exp.config())
        w = max((len(k) for k, *_ in rows), default=0)
        for key, tp, default, meaning in rows:
            print(f"    {key:<{w}}  {tp} = {default!r}" + (f"  -- {meaning}" if meaning else ""))
    if show:
        print(f"set with --set KEY=VALUE (dotted keys); tuples are {TUPLE_SYNTAX}; none is None")
    elif names:
        print("parameters: `meanfield list -v NAME`")
    return 0


def _cmd_info(args) -> int:
    import numpy
    import torch
    from . import __version__
    from .backends import get_backend, list_backends
    from .study.plugins import loaded_plugins
    _no(args, "info", "set", "out")
    print(f"meanfield {__version__}")
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.platform()})")
    print(f"torch {torch.__version__}, numpy {numpy.__version__}, cpu threads {torch.get_num_threads()}")
    cuda = torch.cuda.is_available()
    print(f"cuda: {'yes, ' + torch.cuda.get_device_name(0) if cuda else 'no'}")
    for name in list_backends():
        if name == "auto":
            continue
        try:
            get_backend(name)
            state = "available"
        except (ValueError, ImportError, RuntimeError) as e:
            state = f"unavailable ({e})"
        print(f"backend {name}: {state}")
    print(f"KEOPS_CACHE_FOLDER={os.environ.get('KEOPS_CACHE_FOLDER', '(pykeops default)')}")
    print(f"plugins: {', '.join(loaded_plugins()) or '(none)'}")
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import sweep
    if not args.grid:
        raise ValueError("give at least one --grid KEY=VALUES")
    res = sweep(args.name, args.grid, seeds=args.seeds, seed=args.seed,
                fixed=parse_sets(_opt(args, "set")), out=_opt(args, "out"), workers=args.workers,
                scheduler=args.scheduler, batch=args.batch, batch_size=args.batch_size,
                device=_opt(args, "device", "cpu"), backend=_opt(args, "backend", "auto"),
                progress=False if args.quiet else None, retry_failed=args.retry_failed,
                metric=args.metric, threshold=args.threshold, dask_timeout=args.dask_timeout)
    print(f"sweep {args.name}: {res.computed} point(s) computed, {res.skipped} already done, "
          f"{res.failed} failed -> {res.out / 'results.csv'}")
    if res.failed:
        print("failed points are listed with their error in the 'error' column")
    if res.figure:
        print(f"phase diagram: {res.figure}")
    print(f"sweep directory: {res.out}")
    return 0


def _cmd_plot(args) -> int:
    from .sweep import plot_dir
    _no(args, "plot", "set", "out")
    paths = plot_dir(args.dir, metric=args.metric, threshold=args.threshold, x=args.x, y=args.y,
                     file=args.file)
    if not paths:
        print(f"{args.dir}: the experiment draws no figures")
    for p in paths:
        print(f"figure: {p}")
    return 0


def _cmd_report(args) -> int:
    from .report import parse_report_sets, run_report
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    device = _opt(args, "device", "cpu")
    from .study.rundir import check_device
    check_device(device)
    out = _opt(args, "out", "report")
    entries = run_report(out, size=args.size, only=only, device=device,
                         backend=_opt(args, "backend", "auto"),
                         sets=parse_report_sets(_opt(args, "set")), seed=args.seed,
                         log=lambda s: print(s, flush=True))
    print(f"wrote {os.path.join(out, 'report.html')} and {os.path.join(out, 'report.md')}")
    good = all(e.ok and e.checks[0] == e.checks[1] for e in entries)
    return 0 if good else 1


def _cmd_atlas(args) -> int:
    from .atlas import atlas_command
    _no(args, "atlas", "set")
    return atlas_command(out=_opt(args, "out") or "atlas", size=args.size, only=args.only,
                         workers=args.workers, device=_opt(args, "device") or "cpu",
                         backend=_opt(args, "backend") or "auto",
                         width_limit=not args.no_width_limit, list_only=args.list,
                         progress=False if args.quiet else None)


_CMDS = {"run": _cmd_run, "list": _cmd_list, "info": _cmd_info, "sweep": _cmd_sweep,
         "plot": _cmd_plot, "report": _cmd_report, "atlas": _cmd_atlas}


# ------------------------------------------------------------------ atlas and bench
def _split(argv: list[str]) -> tuple[int, Optional[str]]:
    """Index and name of the subcommand (the first word that is not a shared option or its value)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUED:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return i, a
    return len(argv), None


def _globals(rest: list[str]) -> tuple[list[str], list[str]]:
    """(``-v``/``--plugin``/``--set`` taken out of ``rest``, what is left in order)."""
    taken, left, i = [], [], 0
    while i < len(rest):
        a = rest[i]
        if a in ("-v", "--verbose"):
            taken.append(a)
        elif a in ("--plugin", "--set") and i + 1 < len(rest):
            taken += [a, rest[i + 1]]
            i += 1
        elif a.startswith(("--plugin=", "--set=")):
            taken.append(a)
        else:
            left.append(a)
        i += 1
    return taken, left


def _delegate(cmd: str, head: list[str], rest: list[str]) -> int:
    taken, left = _globals(rest)
    g = _Parser(prog=f"meanfield {cmd}", parents=[_common("top_")], add_help=False)
    args = g.parse_args(head + taken)
    _setup(args)
    _no(args, cmd, "set")
    fwd = []
    for name in ("device", "backend", "out"):
        v = getattr(args, "top_" + name, None)
        if v is not None:
            fwd += [f"--{name}", v]
    from . import bench
    fn = bench.main
    try:
        return int(fn(fwd + left) or 0)
    except SystemExit as e:  # its own parser: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


# ------------------------------------------------------------------ entry point
def _main(argv: list[str]) -> int:
    i, cmd = _split(argv)
    if cmd == "bench":
        return _delegate(cmd, argv[:i], argv[i + 1:])
    p = build_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    _setup(args)
    return _CMDS[args.cmd](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``meanfield`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .study.lock import LockedError
    try:
        return _main(argv)
    except _UsageError as e:
        return _fail(f"meanfield: error: {e}", 2)
    except KeyboardInterrupt as e:
        t = getattr(e, "t", None)
        if t is not None:
            t = f"{t:.6g}" if isinstance(t, (int, float)) else str(t)
            msg = f"interrupted at t={t}; checkpoint saved; run the same command to resume"
        else:
            msg = "interrupted; the last checkpoint is kept; run the same command to resume"
        return _fail(msg, 130)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, LockedError) as e:
        return _fail(f"meanfield: error: {_one_line(e)}", 2)
    except (RuntimeError, ArithmeticError) as e:  # DivergenceError and friends: the run failed
        return _fail(f"meanfield: error: run failed: {type(e).__name__}: {_one_line(e)}", 1)
    except BrokenPipeError:  # `meanfield list | head`: the reader left
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as e:  # noqa: BLE001 - never a traceback
        return _fail(f"meanfield: error: {type(e).__name__}: {_one_line(e)} (a bug? please report it "
                     "with the command line)", 1)


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, (FileNotFoundError, PermissionError)) and e.filename and str(e.filename) not in msg:
        msg = f"{msg}: {e.filename}"
    return " ".join(msg.split())


def _fail(msg: str, code: int) -> int:
    print(msg, file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
