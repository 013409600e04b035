"""The collapse atlas: named phase-diagram sweeps, their runner and the atlas page.

Each :class:`AtlasEntry` is one question ("does the non-convex class collapse?") drawn as one
figure of one or more :class:`Panel` s; each panel is a sweep of a registered experiment
(:func:`meanfield.sweep.sweep`, resumable) over two parameters, coloured by the mean over seeds of
the collapse statistic of the experiment's regime with the threshold called "collapsed", the seed
spread hatched, and the experiment's theory (or a reference) boundary dashed. Sizes: ``small``
(tests), ``default`` (each entry under 15 minutes on a 2-core CPU), ``large`` (a GPU).

:func:`run_atlas` runs or resumes every entry into ``DIR/<name>/<panel>/``, runs ``width_limit``
into ``DIR/width_limit`` if absent, and writes ``DIR/atlas.html`` and ``DIR/atlas.md``: every
figure and one paragraph per entry computed from the results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from .entry import (ATLAS, SIZES, AtlasEntry, Panel, check_size, get_atlas, list_atlas,
                    register_atlas, sizes)
from .page import _load_json, plot_entry, write_page
from .stats import panel_rows, panel_stats, reading

__all__ = ["Panel", "AtlasEntry", "ATLAS", "SIZES", "register_atlas", "list_atlas", "get_atlas",
           "run_entry", "run_atlas", "panel_stats", "panel_rows", "reading", "plot_entry",
           "write_page", "describe_atlas", "atlas_command"]


def describe_atlas() -> list[str]:
    """One line per entry: name, title and the experiments of its panels."""
    out = []
    for n in list_atlas():
        e = get_atlas(n)
        out.append(f"{e.name}: {e.title} [{', '.join(dict.fromkeys(p.experiment for p in e.panels))}]")
    return out


def run_entry(entry: AtlasEntry, out: Path, *, size: str = "default", workers: int = 1,
              device: str = "cpu", backend: str = "auto", progress: Optional[bool] = False) -> dict:
    """Run or resume every sweep of an entry into ``out/<panel.key>``; returns timing info."""
    from ..sweep import sweep
    from ..threads import torch_threads
    check_size(size)
    info = {"size": size, "sweeps": {}}
    t0 = time.perf_counter()
    # the small size is small problems: one torch thread in this process (two spin-wait on each
    # other on a loaded CPU: 2-4x the CPU time of the small atlas, measured)
    threads = 1 if size == "small" and workers == 1 and str(device).startswith("cpu") else None
    for p in entry.panels:
        if p.key in info["sweeps"]:
            continue
        t1 = time.perf_counter()
        with torch_threads(threads):
            res = sweep(p.experiment, dict(p.grid[size]), seeds=entry.seeds[size],
                        fixed=dict(p.fixed.get(size, {})), out=out / p.key, workers=workers,
                        device=device, backend=backend, progress=progress, plot=False)
        info["sweeps"][p.key] = {"computed": res.computed, "skipped": res.skipped,
                                 "failed": res.failed, "wall_seconds": time.perf_counter() - t1}
    info["wall_seconds"] = time.perf_counter() - t0
    return info


def run_atlas(out: str | Path, *, size: str = "default", only: Optional[Sequence[str]] = None,
              workers: int = 1, device: str = "cpu", backend: str = "auto",
              width_limit: bool = True, progress: Optional[bool] = False) -> Path:
    """Run or resume the atlas into ``out`` and write ``atlas.html`` / ``atlas.md``.

    Args:
        out: atlas directory.
        size: ``small``, ``default`` or ``large``.
        only: entry names (None: all; an empty list: none, e.g. only the width-limit run).
        workers: local processes per sweep.
        width_limit: also run ``width_limit`` into ``out/width_limit`` if it has no summary.

    Returns:
        the path of ``atlas.html``.
    """
    check_size(size)
    out = Path(out)
    names = list(only) if only is not None else list_atlas()
    entries = [get_atlas(n) for n in names]
    out.mkdir(parents=True, exist_ok=True)
    timings = _load_json(out / "timings.json")
    for e in entries:
        info = run_entry(e, out / e.name, size=size, workers=workers, device=device,
                         backend=backend, progress=progress)
        plot_entry(e, out / e.name, size=size)
        timings[e.name] = info
        _write_json(out / "timings.json", timings)
    if width_limit and not (out / "width_limit" / "summary.json").exists():
        from ..study.rundir import run_experiment
        t0 = time.perf_counter()
        run_experiment("width_limit", _WIDTH_LIMIT[size], out=out / "width_limit", device=device,
                       progress=progress)
        timings["width_limit"] = {"size": size, "wall_seconds": time.perf_counter() - t0}
        _write_json(out / "timings.json", timings)
    return write_page(out, [e.name for e in entries], timings=timings)


# small: horizons to t = 10 and steps past the stability limit too (the experiment's own small)
_WIDTH_LIMIT = sizes({"widths": "10,30,100", "seeds": 4, "reference_m": 5000, "long_t": 10.0,
                      "tracking_m": 30, "steps_tested": "0.05,0.1,0.2,0.5,1,2,2.5,5,10"}, {},
                     {"reference_m": 400000})


def _write_json(path: Path, obj) -> None:
    from ..record import write_json
    write_json(path, obj)




def atlas_command(*, out: str | Path = "atlas", size: str = "default", only: Optional[str] = None,
                  workers: int = 1, device: str = "cpu", backend: str = "auto",
                  width_limit: bool = True, list_only: bool = False, progress=None) -> int:
    """What ``meanfield atlas`` does (the CLI parses, this runs): list, or run and write the page.

    Raises:
        ValueError: an unknown entry or size (the CLI prints it in one line).
    """
    if list_only:
        for line in describe_atlas():
            print(line)
        return 0
    names = [s.strip() for s in only.split(",") if s.strip()] if only else None
    if names is not None:  # --only: the width-limit run only when named
        width_limit = width_limit and "width_limit" in names
        names = [n for n in names if n != "width_limit"]   # [] = no entry (not all)
    for n in names or []:
        get_atlas(n)
    page = run_atlas(out, size=size, only=names, workers=workers, device=device, backend=backend,
                     width_limit=width_limit, progress=progress)
    print(f"atlas page: {page}")
    return 0

