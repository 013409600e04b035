"""The subcommands of the ``meanfield`` command (run, list, info, sweep, plot, report, atlas) and the
option helpers they share; the argument tree, bench and the entry point are in :mod:`meanfield.cli`.

Every ``_cmd_NAME(args)`` takes the parsed arguments and returns the exit status; errors are raised
(``ValueError`` for bad input) and turned into one line by :func:`meanfield.cli.main`.
"""

from __future__ import annotations

import os
import platform
from typing import Optional, Sequence

__all__ = ["parse_sets", "COMMANDS"]

_LISTS = ("set", "plugin")


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


def _no(args, cmd: str, *names: str) -> None:
    for n in names:
        if _opt(args, n) not in (None, [], False):
            raise ValueError(f"`meanfield {cmd}` does not take --{n}")


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
                metric=args.metric, threshold=args.threshold, dask_timeout=args.dask_timeout,
                max_points=args.max_points)
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
                         overwrite=args.overwrite,
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


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "info": _cmd_info, "sweep": _cmd_sweep,
         "plot": _cmd_plot, "report": _cmd_report, "atlas": _cmd_atlas}
