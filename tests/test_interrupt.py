"""Ctrl-C: the flow stops between two steps, saves a checkpoint, the CLI says so in one line and
exits 130; the same command then resumes to exactly the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from meanfield.study import run_experiment

SETS = {"flow.t_end": "1e6", "flow.ds": "0.003", "m": "30"}


def _cmd(out):
    cmd = [sys.executable, "-m", "meanfield.cli", "run", "three_atoms", "--out", str(out), "--quiet"]
    for k, v in SETS.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 120
    while not (out / "config.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.8)                                   # well inside the flow
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert proc.returncode == 130, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted at t=") and \
        "checkpoint saved; run the same command to resume" in lines[0], err
    t_stop = float(lines[0].split("t=")[1].split(";")[0])
    assert 0 < t_stop < 1e6
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()

    again = subprocess.run(_cmd(out), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((out / "summary.json").read_text())
    whole = run_experiment("three_atoms", SETS, write=False).summary
    for k, v in whole.items():
        if k != "wall_seconds":
            assert resumed[k] == v, k
    assert not (out / "checkpoint.pt").exists()
