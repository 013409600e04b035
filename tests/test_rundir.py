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


# ----------------------------------------------------------------------------- nothing not ours is lost
def _plot_named(run):
    """A 'figure' whose name depends on the configuration (no matplotlib: fast)."""
    name = f"fig_x{run.config.x:g}.png"
    (run.path / name).write_bytes(b"not really a png")
    return [name]


@pytest.fixture
def toy_plot():
    register_experiment(Experiment("rundir_toy_plot", "toy", ToyConfig, _run, plot=_plot_named),
                        overwrite=True)
    yield "rundir_toy_plot"
    unregister_experiment("rundir_toy_plot")


def _files(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _cli_err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("meanfield: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_overwrite_never_deletes_a_users_files(tmp_path, toy_plot, capsys):
    from meanfield.cli import main
    # a folder of the user's (no run record): refused, even with --overwrite; nothing touched
    d = tmp_path / "myfigs"
    d.mkdir()
    (d / "paper_fig1.png").write_text("x")
    (d / "history.csv").write_text("mine")
    before = _files(d)
    for overwrite in (True, False):
        with pytest.raises(FileExistsError, match="not a meanfield run directory.*paper_fig1.png"):
            run_experiment(toy_plot, out=d, overwrite=overwrite)
    assert main(["run", toy_plot, "--out", str(d), "--overwrite"]) == 2
    err = _cli_err(capsys)
    assert str(d) in err and "paper_fig1.png" in err and "choose another --out" in err
    assert _files(d) == before
    # a config.json that is not a run record: not "an unfinished run of another configuration"
    (d / "config.json").write_text('{"lr": 0.1}')
    before = _files(d)
    with pytest.raises(FileExistsError, match="config.json is not a meanfield run record") as e:
        run_experiment(toy_plot, out=d)
    assert "unfinished run" not in str(e.value)
    with pytest.raises(FileExistsError, match="not a meanfield run directory"):
        run_experiment(toy_plot, out=d, overwrite=True)
    assert _files(d) == before
    # a run directory: --overwrite deletes the files the run recorded, never a file added later
    r = tmp_path / "run"
    run_experiment(toy_plot, {"x": 2.0}, out=r)
    rec = json.loads((r / "config.json").read_text())
    assert rec["figures"] == ["fig_x2.png"]
    assert set(rec["files"]) == {"config.json", "history.csv", "summary.json", "fig_x2.png"}
    (r / "notes.png").write_text("mine")
    run_experiment(toy_plot, {"x": 3.0}, out=r, overwrite=True)
    assert sorted(p.name for p in r.iterdir()) == ["config.json", "fig_x3.png", "history.csv",
                                                  "notes.png", "summary.json"]
    assert (r / "notes.png").read_text() == "mine"
    assert json.loads((r / "config.json").read_text())["parameters"]["x"] == 3.0


def test_an_empty_out_is_refused(tmp_path, toy, monkeypatch, capsys):
    from meanfield.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.png").write_text("x")
    with pytest.raises(ValueError, match="--out is empty"):
        run_experiment(toy, out="", overwrite=True)
    for argv in (["run", toy, "--out", "", "--overwrite"], ["run", toy, "--out", " "],
                 ["report", "--only", toy, "--out", ""]):
        assert main(argv) == 2
        assert "--out is empty" in _cli_err(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_report_never_replaces_a_run_of_another_configuration(tmp_path, toy_plot, capsys):
    from meanfield.cli import main
    run_experiment(toy_plot, {"x": 0.5}, out=tmp_path / toy_plot)   # the user's own run
    before = _files(tmp_path / toy_plot)
    assert main(["report", "--only", toy_plot, "--out", str(tmp_path)]) == 2
    err = _cli_err(capsys)
    assert str(tmp_path / toy_plot) in err and "another configuration" in err
    assert "parameters.x (0.5 there, 1.0 now)" in err and "--overwrite" in err
    assert _files(tmp_path / toy_plot) == before
    assert not (tmp_path / "report.md").exists()          # refused before anything ran
    # an unfinished run of another configuration is refused the same way
    (tmp_path / toy_plot / "summary.json").unlink()
    before = _files(tmp_path / toy_plot)
    assert main(["report", "--only", toy_plot, "--out", str(tmp_path)]) == 2
    assert "unfinished run of another configuration" in _cli_err(capsys)
    assert _files(tmp_path / toy_plot) == before
    # a folder that is not a run: refused even with --overwrite
    (tmp_path / "o" / toy_plot).mkdir(parents=True)
    (tmp_path / "o" / toy_plot / "mine.txt").write_text("x")
    assert main(["report", "--only", toy_plot, "--out", str(tmp_path / "o"), "--overwrite"]) == 2
    assert "not a meanfield run directory" in _cli_err(capsys)
    assert (tmp_path / "o" / toy_plot / "mine.txt").read_text() == "x"
    # --overwrite replaces a run (of another configuration) explicitly
    assert main(["report", "--only", toy_plot, "--out", str(tmp_path), "--overwrite"]) == 0
    assert json.loads((tmp_path / toy_plot / "config.json").read_text())["parameters"]["x"] == 1.0


def test_report_into_its_own_previous_output_recomputes_it(tmp_path, toy_plot):
    from meanfield.cli import main
    argv = ["report", "--only", toy_plot, "--out", str(tmp_path), "--set", f"{toy_plot}.x=2"]
    assert main(argv) == 0
    run_dir = tmp_path / toy_plot
    before = _files(run_dir)
    (run_dir / "notes.txt").write_text("mine")            # a user's file in the run folder
    (tmp_path / "report.md").unlink()
    assert main(argv) == 0                                 # same configuration: recomputed
    assert json.loads((run_dir / "summary.json").read_text())["y"] == 4.0
    assert (run_dir / "notes.txt").read_text() == "mine"   # only the run's files were replaced
    md = (tmp_path / "report.md").read_text()
    assert "| y | 4 |" in md and f"({toy_plot}/fig_x2.png)" in md
    # an unfinished run of the same configuration runs again and finishes
    (run_dir / "summary.json").unlink()
    assert main(argv) == 0
    assert json.loads((run_dir / "summary.json").read_text())["y"] == 4.0
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*before, "notes.txt"])


def _run_draws_then_fails(cfg, ctx):
    (ctx.out / "early.png").write_text("drawn inside the run")
    if cfg.x < 0:
        raise ValueError("x must be >= 0")
    return ExperimentResult({"y": cfg.x}, [{"t": 0.0}])


def test_a_run_failing_after_writing_a_file_leaves_no_orphan(tmp_path):
    register_experiment(Experiment("rundir_toy_early", "toy", ToyConfig, _run_draws_then_fails),
                        overwrite=True)
    try:
        out = tmp_path / "e"
        with pytest.raises(ValueError, match="x must be"):
            run_experiment("rundir_toy_early", {"x": -1.0}, out=out)
        assert not out.exists()            # no file without a run record: the corrected command runs
        run_experiment("rundir_toy_early", {"x": 1.0}, out=out)
        assert "early.png" in json.loads((out / "config.json").read_text())["files"]
    finally:
        unregister_experiment("rundir_toy_early")
