"""The ``meanfield`` command: run, list, info, bench, sweep, plot, report, atlas."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import platform
import sys
from typing import Optional, Sequence

__all__ = ["main"]


def _parse_sets(items: Sequence[str]) -> dict:
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _cmd_run(args) -> int:
    from .experiments.registry import run_experiment
    overrides = _parse_sets(args.set)
    res = run_experiment(args.name, overrides, out=args.out, device=args.device, backend=args.backend,
                         seed=args.seed, progress=None if not args.quiet else False,
                         overwrite=args.overwrite, checkpoint_every=args.checkpoint_every)
    summary = dict(res.summary)
    width = max((len(k) for k in summary), default=0)
    print(f"experiment {args.name}: results")
    for k, v in summary.items():
        print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    agrees = [k for k in summary if k.endswith("_agrees")]
    if agrees:
        bad = [k[:-7] for k in agrees if not summary[k]]
        print(("all theory checks agree" if not bad else f"DISAGREES with theory: {', '.join(bad)}"))
    if res.figures:
        print("figures: " + ", ".join(res.figures))
    return 0


def _cmd_list(args) -> int:
    from .experiments.registry import describe_parameters, get_experiment, list_experiments
    for name in list_experiments():
        exp = get_experiment(name)
        print(f"{name}: {exp.description}")
        if args.verbose or args.name == name:
            for pname, tp, default in describe_parameters(exp):
                print(f"    {pname} ({tp}) = {default!r}")
    return 0


def _cmd_info(args) -> int:
    import numpy
    import torch
    from . import __version__
    from .backends import get_backend, list_backends
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
        except ValueError as e:
            state = f"unavailable ({e})"
        print(f"backend {name}: {state}")
    print(f"KEOPS_CACHE_FOLDER={os.environ.get('KEOPS_CACHE_FOLDER', '(pykeops default)')}")
    return 0


def _cmd_delegate(module: str, argv: Sequence[str]) -> int:
    mod = importlib.import_module(module)
    return int(mod.main(list(argv)) or 0)


# subcommands implemented in their own modules, with their own argument parsers
_DELEGATED = {
    "bench": ("meanfield.bench", "time one flow step per backend against a naive autograd baseline"),
    "sweep": ("meanfield.sweep", "run an experiment over a grid of parameters (resumable) and draw a phase diagram"),
    "plot": ("meanfield.sweep", "redraw a sweep's phase diagram from its results.csv"),
    "report": ("meanfield.report", "run every experiment at a small size and write the claims page"),
    "atlas": ("meanfield.atlas", "run/resume the collapse atlas (phase diagrams) and write its page"),
}


def _available_delegates() -> dict:
    out = {}
    for name, (module, helptext) in _DELEGATED.items():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            out[name] = (module, helptext)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``meanfield`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    delegates = _available_delegates()
    if argv and argv[0] in delegates:
        module = delegates[argv[0]][0]
        if argv[0] == "plot":
            return _cmd_delegate_fn(module, "plot_main", argv[1:])
        return _cmd_delegate(module, argv[1:])

    p = argparse.ArgumentParser(prog="meanfield", description="Mean-field and finite-width "
                                "simulations of neural collapse.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the engine decides")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run an experiment and write its run directory")
    r.add_argument("name", help="experiment name (see `meanfield list`)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (repeatable)")
    r.add_argument("--out", default=None, help="run directory (default runs/NAME)")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument("--backend", default="auto", help="auto, dense, keops or numba")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="wall-clock seconds between checkpoints of long runs (default 60)")
    r.set_defaults(fn=_cmd_run)
    ls = sub.add_parser("list", help="list experiments and their parameters")
    ls.add_argument("name", nargs="?", default=None, help="show this experiment's parameters")
    ls.add_argument("--verbose", "-v", action="store_true", help="show every experiment's parameters")
    ls.set_defaults(fn=_cmd_list)
    inf = sub.add_parser("info", help="versions, devices and backends")
    inf.set_defaults(fn=_cmd_info)
    for name, (_, helptext) in delegates.items():
        sub.add_parser(name, help=helptext, add_help=False)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        return args.fn(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"meanfield: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # divergence and friends
        print(f"meanfield: run failed: {e}", file=sys.stderr)
        return 1


def _cmd_delegate_fn(module: str, fn: str, argv: Sequence[str]) -> int:
    mod = importlib.import_module(module)
    return int(getattr(mod, fn)(list(argv)) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
