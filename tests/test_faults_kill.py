"""SIGKILL at random (seeded) moments of `meanfield run` and `meanfield sweep`, concurrent writers,
and corrupt or truncated files of every kind the package reads.

After each kill the same command is re-run to completion and the directory must equal an
uninterrupted run's, except the wall-clock and provenance fields (rundir.PROVENANCE_FIELDS; a
sweep point's ``wall_seconds``/``how``). A killed ``--overwrite`` never leaves a directory that
looks finished with mixed files; no finished sweep point is lost or changed. Every corrupt file is
a one-line error naming it (``meanfield plot``, ``meanfield.load``, resume), never a traceback.

Default: 3 kills of each kind; ``-m slow`` adds more (and the slower file kinds).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import meanfield
import meanfield.cli
from meanfield.study.rundir import PROVENANCE_FIELDS

RNG_SEED = 1234
RUN_SETS = ["--set", "m=20", "--set", "flow.t_end=300"]
RUN_ARGS = ["run", "three_atoms", *RUN_SETS, "--checkpoint-every", "0", "--quiet"]
SWEEP_ARGS = ["sweep", "three_atoms", "--grid", "data.p1=0.5,1", "--grid", "data.p3=1,2",
              "--set", "m=20", "--set", "flow.t_end=300", "--batch-size", "1", "--quiet"]
POINT_VOLATILE = ("wall_seconds", "how")
KILLS = {"run": 3, "sweep": 3, "overwrite": 1}
SLOW_KILLS = {"run": 6, "sweep": 6, "overwrite": 4}
ENV = {**os.environ, "KEOPS_CACHE_FOLDER": os.environ.get("KEOPS_CACHE_FOLDER",
                                                           str(Path(__file__).parents[1] / ".keops_cache"))}
STATS = {"kills": 0, "killed_mid_run": 0, "finished_before_kill": 0, "corrupted": 0,
         "left_on_disk": {}}  # what a kill left: nothing / config / checkpoint / N points / finished


def _note(state: str) -> None:
    STATS["left_on_disk"][state] = STATS["left_on_disk"].get(state, 0) + 1


def _run_left(out: Path) -> str:
    if (out / "summary.json").exists():
        return "finished"
    if list(out.glob("checkpoint*.pt")):
        return "checkpoint"
    return "config" if (out / "config.json").exists() else "nothing"


def _cli(argv, capsys=None):
    code = meanfield.cli.main([str(a) for a in argv])
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def _spawn(argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "meanfield.cli", *map(str, argv)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(argv, delay: float) -> int:
    """Start the command, SIGKILL it after ``delay`` seconds (if still running); its return code."""
    proc = _spawn(argv)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    STATS["kills"] += 1
    STATS["killed_mid_run" if proc.returncode == -signal.SIGKILL else "finished_before_kill"] += 1
    proc.stderr.close()
    return proc.returncode


# ----------------------------------------------------------------------------- comparisons
def _json(path: Path):
    return json.loads(path.read_text())


def _strip(d: dict, keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _run_state(out: Path) -> dict:
    """Everything of a finished run directory that must not depend on kills and resumes."""
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    state = {"files": files,
             "config": _strip(_json(out / "config.json"), PROVENANCE_FIELDS),
             "summary": _strip(_json(out / "summary.json"), PROVENANCE_FIELDS),
             "history": (out / "history.csv").read_text()}
    for name in ("particles.pt", "trajectories.pt", "model.pt"):
        if (out / name).exists():
            sd = torch.load(out / name, map_location="cpu", weights_only=True)
            state[name] = {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in sd.items()} \
                if isinstance(sd, dict) else sd
    return state


def _points(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((out / "points").glob("*.json"))} \
        if (out / "points").exists() else {}


def _sweep_state(out: Path) -> dict:
    pts = {k: _strip(json.loads(v), POINT_VOLATILE) for k, v in _points(out).items()}
    spec = _json(out / "sweep.json")
    grids = []  # one entry per invocation (a resume adds one): provenance, compared once each
    for g in spec.pop("grids", []):
        g = _strip(g, ("started",))
        if g not in grids:
            grids.append(g)
    return {"points": pts, "results": (out / "results.csv").read_text(), "spec": spec, "grids": grids,
            "files": sorted(p.name for p in out.iterdir() if not p.name.startswith("."))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted run and sweep (in-process), and an older finished run of another config."""
    root = tmp_path_factory.mktemp("ref")
    assert _cli([*RUN_ARGS, "--out", root / "run"])[0] == 0
    assert _cli([*SWEEP_ARGS, "--out", root / "sweep"])[0] == 0
    assert _cli(["run", "three_atoms", "--set", "m=21", "--set", "flow.t_end=300", "--quiet",
                 "--out", root / "old"])[0] == 0
    return {"root": root, "run": _run_state(root / "run"), "sweep": _sweep_state(root / "sweep"),
            "old": _run_state(root / "old")}


def _delays(kind: str, n: int, hi: float) -> list[float]:
    rng = random.Random(f"{RNG_SEED}-{kind}")
    return [round(rng.uniform(0.3, hi), 3) for _ in range(n)]


# ----------------------------------------------------------------------------- kills: run
def _kill_run_case(tmp_path, reference, delay):
    out = tmp_path / f"run-{delay}"
    _kill_after([*RUN_ARGS, "--out", out], delay)
    left = _run_left(out)
    _note("run: " + left)
    code, err = _cli([*RUN_ARGS, "--out", out])
    if left == "finished":  # the kill came after summary.json: the same command refuses to redo it
        assert code == 2, f"re-run of a run finished before the kill at {delay}s: {code}"
    else:
        assert code == 0, f"resume after a kill at {delay}s failed"
        assert not (out / ".lock").exists()
    assert _run_state(out) == reference["run"], f"kill at {delay}s: resumed run differs"
    assert not list(out.glob("checkpoint*"))


@pytest.mark.parametrize("delay", _delays("run", KILLS["run"], 5.0))
def test_killed_run_resumes_to_the_same_files(tmp_path, reference, delay):
    _kill_run_case(tmp_path, reference, delay)


@pytest.mark.slow
@pytest.mark.parametrize("delay", _delays("run-slow", SLOW_KILLS["run"], 7.0))
def test_killed_run_resumes_to_the_same_files_more(tmp_path, reference, delay):
    _kill_run_case(tmp_path, reference, delay)


# ----------------------------------------------------------------------------- kills: --overwrite
def _overwrite_case(tmp_path, reference, delay):
    out = tmp_path / f"ow-{delay}"
    shutil.copytree(reference["root"] / "old", out)
    assert _run_state(out) == reference["old"]
    argv = [*RUN_ARGS, "--overwrite", "--out", out]
    _kill_after(argv, delay)
    _note("overwrite: " + _run_left(out))
    if (out / "summary.json").exists():  # looks finished: must be wholly the old or the new run
        state = _run_state(out)
        assert state in (reference["old"], reference["run"]), \
            f"kill at {delay}s left a finished-looking directory with mixed files"
    code, _ = _cli(argv)
    assert code == 0
    assert _run_state(out) == reference["run"]


@pytest.mark.parametrize("delay", _delays("overwrite", KILLS["overwrite"], 5.0))
def test_killed_overwrite_never_looks_finished(tmp_path, reference, delay):
    _overwrite_case(tmp_path, reference, delay)


@pytest.mark.slow
@pytest.mark.parametrize("delay", _delays("overwrite-slow", SLOW_KILLS["overwrite"], 7.0))
def test_killed_overwrite_never_looks_finished_more(tmp_path, reference, delay):
    _overwrite_case(tmp_path, reference, delay)


# ----------------------------------------------------------------------------- kills: sweep
def _sweep_case(tmp_path, reference, delay):
    out = tmp_path / f"sweep-{delay}"
    _kill_after([*SWEEP_ARGS, "--out", out], delay)
    before = _points(out)
    _note(f"sweep: {len(before)} points")
    for name, raw in before.items():  # a point file on disk is whole and final
        rec = json.loads(raw)
        assert rec["status"] == "ok", (name, rec.get("error"))
    code, _ = _cli([*SWEEP_ARGS, "--out", out])
    assert code == 0
    after = _points(out)
    lost = [n for n in before if n not in after]
    changed = [n for n in before if n in after and after[n] != before[n]]
    assert not lost and not changed, f"kill at {delay}s: points lost {lost}, changed {changed}"
    assert _sweep_state(out) == reference["sweep"], f"kill at {delay}s: resumed sweep differs"
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("delay", _delays("sweep", KILLS["sweep"], 5.0))
def test_killed_sweep_keeps_finished_points(tmp_path, reference, delay):
    _sweep_case(tmp_path, reference, delay)


@pytest.mark.slow
@pytest.mark.parametrize("delay", _delays("sweep-slow", SLOW_KILLS["sweep"], 7.0))
def test_killed_sweep_keeps_finished_points_more(tmp_path, reference, delay):
    _sweep_case(tmp_path, reference, delay)


# ----------------------------------------------------------------------------- concurrent writers
@pytest.mark.parametrize("cmd", ["run", "sweep"])
def test_second_writer_on_one_out_is_refused(tmp_path, capsys, cmd):
    out = tmp_path / "busy"
    argv = [*(RUN_ARGS if cmd == "run" else SWEEP_ARGS), "--out", out]
    proc = _spawn(argv)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / ".lock").exists() and proc.poll() is None:
            time.sleep(0.02)
        assert (out / ".lock").exists(), "the first writer never took the lock"
        code, err = _cli(argv, capsys)
        first_running = proc.poll() is None
    finally:
        proc.kill()  # the first writer is not needed any more (a kill: its lock goes stale)
        proc.wait()
        proc.stderr.close()
    assert first_running, "the first writer finished before the second started: the test proves nothing"
    if first_running:
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "another" in lines[0] and "is writing" in lines[0], err
    # the stale lock of the killed writer is taken over by the next run of the same command
    if cmd == "run":
        assert _cli(argv)[0] == 0 and (out / "summary.json").exists()


# ----------------------------------------------------------------------------- corrupt files
def _truncate(p: Path):
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _garbage(p: Path):
    p.write_bytes(bytes(random.Random(p.name).getrandbits(8) for _ in range(200)))


def _empty(p: Path):
    p.write_bytes(b"")


def _wrong_json(p: Path):
    p.write_text(json.dumps([1, 2, 3]) if p.suffix == ".json" else "a,b\n1,2\n")


def _nan_json(p: Path):  # valid JSON, wrong values
    d = json.loads(p.read_text())
    d = {k: ("NaN" if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in d.items()}
    p.write_text(json.dumps(d))


def _pt_wrong(p: Path):
    torch.save({"a": "not a tensor"}, p)


CORRUPTIONS = {"truncated": _truncate, "garbage": _garbage, "empty": _empty}


def _one_line_naming(code, err, name):
    lines = err.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1, (code, err)
    assert "Traceback" not in err and name in lines[0], lines[0]


RUN_FILES = ["config.json", "summary.json", "history.csv", "particles.pt"]


@pytest.mark.parametrize("how", sorted(CORRUPTIONS) + ["wrong_type"])
@pytest.mark.parametrize("name", RUN_FILES)
def test_corrupt_run_file_is_named(tmp_path, capsys, reference, name, how):
    out = tmp_path / "run"
    shutil.copytree(reference["root"] / "run", out)
    fn = CORRUPTIONS.get(how) or (_pt_wrong if name.endswith(".pt") else _wrong_json)
    fn(out / name)
    STATS["corrupted"] += 1
    # meanfield plot DIR: the figures are redrawn from the files
    code, err = _cli(["plot", out], capsys)
    _one_line_naming(code, err, name)
    # meanfield.load(DIR): the summary/config/history it reads
    if name != "particles.pt":
        try:
            df = meanfield.load(out)
        except (ValueError, FileNotFoundError) as e:
            assert name in str(e), str(e)
        else:
            # a well-formed CSV of other columns is a table load() cannot judge; plot named it
            assert name == "history.csv" and how == "wrong_type" and list(df.columns) == ["a", "b"], \
                f"corrupt {name} ({how}) loaded silently"
    # re-running the command refuses (finished) or names the file, never a traceback
    code, err = _cli([*RUN_ARGS, "--out", out], capsys)
    assert code in (0, 2) and "Traceback" not in err and len(err.strip().splitlines()) <= 1, err


def test_corrupt_summary_values_are_not_silent(tmp_path, capsys, reference):
    out = tmp_path / "run"
    shutil.copytree(reference["root"] / "run", out)
    _nan_json(out / "summary.json")
    STATS["corrupted"] += 1
    code, err = _cli(["plot", out], capsys)
    _one_line_naming(code, err, "summary.json")


@pytest.mark.parametrize("how", ["truncated", pytest.param("garbage", marks=pytest.mark.slow),
                                 pytest.param("empty", marks=pytest.mark.slow)])
def test_corrupt_checkpoint_on_resume_is_named(tmp_path, capsys, how):
    out = tmp_path / "ck"
    for delay in (3.5, 4.5, 5.5, 2.5):  # kill until a checkpoint is on disk
        shutil.rmtree(out, ignore_errors=True)
        _kill_after([*RUN_ARGS, "--out", out], delay)
        if list(out.glob("checkpoint*.pt")):
            break
    cks = list(out.glob("checkpoint*.pt"))
    if not cks:
        pytest.skip("no kill landed while a checkpoint was on disk")
    for ck in cks:
        CORRUPTIONS[how](ck)
        STATS["corrupted"] += 1
    code, err = _cli([*RUN_ARGS, "--out", out], capsys)
    _one_line_naming(code, err, cks[0].name)
    assert not (out / "summary.json").exists()


SWEEP_FILES = ["results.csv", "sweep.json", "point"]


@pytest.mark.parametrize("how", sorted(CORRUPTIONS) + ["wrong_type"])
@pytest.mark.parametrize("name", SWEEP_FILES)
def test_corrupt_sweep_file_is_named(tmp_path, capsys, reference, name, how):
    out = tmp_path / "sweep"
    shutil.copytree(reference["root"] / "sweep", out)
    target = sorted((out / "points").glob("*.json"))[0] if name == "point" else out / name
    (CORRUPTIONS.get(how) or _wrong_json)(target)
    STATS["corrupted"] += 1
    code, err = _cli(["plot", out], capsys)
    if name == "point":  # plot reads results.csv only
        assert code == 0 or (code in (1, 2) and target.name in err), err
    elif name == "results.csv" and how == "empty":
        assert code == 0 or (code in (1, 2) and len(err.strip().splitlines()) == 1), err
    else:
        _one_line_naming(code, err, target.name)
    if name != "point":
        try:
            meanfield.load(out)
        except (ValueError, FileNotFoundError) as e:
            assert target.name in str(e), str(e)
        else:
            assert name == "results.csv" and how == "empty", f"corrupt {name} ({how}) loaded silently"
    # resuming the sweep: names the file, or recomputes what it cannot trust (results.csv is derived)
    code, err = _cli([*SWEEP_ARGS, "--out", out], capsys)
    if code == 0:
        assert _sweep_state(out) == reference["sweep"], f"resume after corrupt {name} ({how}) differs"
    else:
        _one_line_naming(code, err, target.name)


@pytest.fixture(scope="module")
def tensor_runs(tmp_path_factory):
    """A run with trajectories.pt (three_atoms_relu) and one with model.pt (collapse, an MLP)."""
    root = tmp_path_factory.mktemp("pt")
    assert _cli(["run", "three_atoms_relu", "--set", "m=10", "--set", "flow.t_end=20",
                 "--set", "snapshot=3", "--quiet", "--out", root / "traj"])[0] == 0
    assert _cli(["run", "collapse", "--set", "model=mlp", "--set", "n=20", "--set", "train.epochs=3",
                 "--quiet", "--out", root / "model"])[0] == 0
    assert (root / "traj" / "trajectories.pt").exists() and (root / "model" / "model.pt").exists()
    return root


@pytest.mark.parametrize("how", ["garbage", "truncated", pytest.param("empty", marks=pytest.mark.slow),
                                 pytest.param("wrong_type", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", ["trajectories.pt", "model.pt"])
def test_corrupt_tensor_file_is_named(tmp_path, capsys, tensor_runs, name, how):
    out = tmp_path / "run"
    shutil.copytree(tensor_runs / ("traj" if name == "trajectories.pt" else "model"), out)
    (CORRUPTIONS.get(how) or _pt_wrong)(out / name)
    STATS["corrupted"] += 1
    code, err = _cli(["plot", out], capsys)
    _one_line_naming(code, err, name)


def test_zz_kill_and_corruption_counts():
    print(f"\n[test_faults_kill] {STATS}")
