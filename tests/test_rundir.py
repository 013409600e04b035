"""Run directories: validated before anything is written, owned by one process, never mixed,
and an interrupted --overwrite never looks finished."""

import json
import os
import socket
import stat
from dataclasses import dataclass

import pytest
import torch

from meanfield.record import atomic_torch_save, write_json
from meanfield.study import (Experiment, ExperimentResult, register_experiment, run_experiment,
                             unregister_experiment)
from meanfield.study.lock import DirLock, LockedError


@dataclass(frozen=True)
class ToyConfig:
    """A toy.

    Attributes:
        x: a number.
    """

    x: float = 1.0


INTERRUPT = []   # non-empty: the next run is interrupted (Ctrl-C) inside the experiment


def _run(cfg, ctx):
    if INTERRUPT:
        INTERRUPT.clear()
        raise KeyboardInterrupt
    return ExperimentResult({"y": 2 * cfg.x}, [{"t": 0.0, "y": 2 * cfg.x}])


@pytest.fixture
def toy():
    register_experiment(Experiment("rundir_toy", "toy", ToyConfig, _run), overwrite=True)
    yield "rundir_toy"
    unregister_experiment("rundir_toy")


def test_validation_happens_before_any_directory(tmp_path, toy):
    out = tmp_path / "r"
    for bad in ({"nope": 1}, {"x": "abc"}):
        with pytest.raises(ValueError):
            run_experiment(toy, bad, out=out)
    with pytest.raises(ValueError, match="seed"):
        run_experiment(toy, out=out, seed=2 ** 70)
    with pytest.raises(ValueError, match="device"):
        run_experiment(toy, out=out, device="foo")
    with pytest.raises(ValueError, match="backend"):
        run_experiment(toy, out=out, backend="foo")
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_experiment(toy, out=tmp_path / "file" / "sub")


def test_finished_and_foreign_unfinished_runs_are_refused(tmp_path, toy):
    out = tmp_path / "r"
    run_experiment(toy, {"x": 2.0}, out=out)
    assert json.loads((out / "summary.json").read_text())["y"] == 4.0
    with pytest.raises(FileExistsError, match="finished run"):
        run_experiment(toy, {"x": 2.0}, out=out)
    # an unfinished run of another configuration is refused, naming the difference
    (out / "summary.json").unlink()
    with pytest.raises(FileExistsError, match=r"parameters.x \(2.0 there, 3.0 now\)"):
        run_experiment(toy, {"x": 3.0}, out=out)
    # the same configuration resumes (here: runs again) and finishes
    run_experiment(toy, {"x": 2.0}, out=out)
    assert (out / "summary.json").exists()


def test_an_interrupted_overwrite_never_looks_finished(tmp_path, toy):
    out = tmp_path / "r"
    run_experiment(toy, {"x": 2.0}, out=out)
    atomic_torch_save({"stale": torch.zeros(1)}, out / "checkpoint.pt")
    INTERRUPT.append(1)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(toy, {"x": 5.0}, out=out, overwrite=True)
    assert not (out / "summary.json").exists() and not (out / "checkpoint.pt").exists()
    assert not (out / "config.json").exists()   # nothing to resume from: nothing left to block
    assert not (out / ".lock").exists()                       # released on the way out
    run_experiment(toy, {"x": 5.0}, out=out)                  # the next run recomputes it
    assert json.loads((out / "summary.json").read_text())["y"] == 10.0


def test_a_live_owner_is_refused_and_a_dead_one_taken_over(tmp_path, toy):
    out = tmp_path / "r"
    out.mkdir()
    write_json(out / ".lock", {"pid": os.getppid(), "host": socket.gethostname(), "what": "run"})
    with pytest.raises(LockedError, match="another run"):
        run_experiment(toy, out=out)
    assert not (out / "config.json").exists()
    write_json(out / ".lock", {"pid": 2 ** 22 + 12345, "host": socket.gethostname()})  # no such pid
    run_experiment(toy, out=out)
    assert (out / "summary.json").exists() and not (out / ".lock").exists()
    with DirLock(out):            # taken race-free by os.link: a second taker fails at once
        with pytest.raises(LockedError):
            with DirLock(out):
                pass


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        atomic_torch_save({"t": torch.zeros(2)}, tmp_path / "b.pt")
        os.umask(0o077)
        write_json(tmp_path / "c.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.pt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.pt", "c.json"]  # no temp left


def test_a_refused_value_inside_the_experiment_leaves_nothing_behind(tmp_path):
    out = tmp_path / "ta"
    with pytest.raises(ValueError):
        run_experiment("three_atoms", {"data.p3": -1, "flow.t_end": 10.0}, out=out)
    assert not out.exists()
    run_experiment("three_atoms", {"flow.t_end": 10.0, "m": 20}, out=out)   # the corrected command
    assert (out / "summary.json").exists()


def test_figures_failing_never_cost_the_finished_run(tmp_path, toy, caplog):
    from meanfield.study import get_experiment
    exp = get_experiment(toy)

    def bad_plot(run):
        raise ZeroDivisionError("figure bug")

    register_experiment(Experiment("rundir_toy_badplot", "toy", ToyConfig, _run, plot=bad_plot))
    try:
        res = run_experiment("rundir_toy_badplot", out=tmp_path / "b")
    finally:
        unregister_experiment("rundir_toy_badplot")
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["y"] == 2.0
    assert res.summary["y"] == 2.0 and exp.name == toy
    assert "meanfield plot" in caplog.text


def test_runs_and_sweeps_never_share_a_directory(tmp_path, toy):
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text("{}")
    with pytest.raises(ValueError, match="sweep directory"):
        run_experiment(toy, out=tmp_path / "sw")


def _hold(path, results):
    import time as _t

    from meanfield.study.lock import DirLock, LockedError
    try:
        with DirLock(path):
            t0 = _t.monotonic()
            _t.sleep(0.4)
            results.put(("held", t0, _t.monotonic()))
    except LockedError:
        results.put(("refused", 0.0, 0.0))


def test_a_stale_lock_is_taken_over_by_exactly_one_of_many(tmp_path):
    import multiprocessing as mp

    out = tmp_path / "r"
    out.mkdir()
    write_json(out / ".lock", {"pid": 2 ** 22 + 12345, "host": socket.gethostname()})  # dead owner
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hold, args=(out, q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    res = [q.get(timeout=5) for _ in procs]
    held = sorted((a, b) for k, a, b in res if k == "held")
    assert held, res
    for (a0, a1), (b0, b1) in zip(held, held[1:]):
        assert a1 <= b0, f"two owners at once: {held}"     # never two holders at the same time
    assert not (out / ".lock").exists()
