"""The ``meanfield`` command: one argparse tree with shared options for every subcommand.

``meanfield [-v] [--plugin P] SUBCOMMAND [options]`` with SUBCOMMAND one of run, list, info, sweep,
plot, report, atlas, bench. The shared options (``-v``, ``--device``, ``--backend``,
``--set KEY=VALUE``, ``--out``, ``--plugin PATH_OR_MODULE``) may stand before or after the
subcommand. Plugins are loaded before anything else. Errors are one line on stderr
(``meanfield: error: ...``): exit 2 for bad input, 1 for a failed run, 130 when interrupted.
Library modules (sweep, report) expose functions only; ``atlas`` and ``bench`` keep their own
``main(argv)`` and get the arguments parsed here (atlas) or passed through unchanged (bench).
This module holds the argument tree, bench's pass-through and the entry point; the subcommands are
in :mod:`meanfield.cli_commands`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from .cli_commands import COMMANDS, _no, _opt, parse_sets

__all__ = ["main", "parse_sets", "build_parser"]

_VALUED = ("--device", "--backend", "--set", "--out", "--plugin")


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
    s.add_argument("--max-points", type=int, default=100_000,
                   help="refuse a grid of more points (values x seeds; default 100000)")
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
    rp.add_argument("--overwrite", action="store_true",
                    help="replace runs in OUT/NAME of another configuration and recompute finished "
                         "ones (default: reuse a finished run of the same configuration, refuse others)")

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
def _setup(args) -> None:
    logging.basicConfig(level=logging.INFO if _opt(args, "verbose") else logging.WARNING,
                        format="%(name)s: %(message)s", force=True)
    from .study.plugins import load_entry_points, load_plugins
    load_plugins(_opt(args, "plugin"))
    load_entry_points()


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
    return COMMANDS[args.cmd](args)


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
