"""Every long run resumes: kill -9 a run once its first checkpoint exists, re-run the same command,
and get the run directory of an uninterrupted run (summary.json, history.csv, particles.pt),
identical except the wall-clock fields."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WALL = {"wall_seconds", "wall_s", "seconds"}

# name -> (--set overrides at a tiny size, the checkpoint file whose appearance triggers the kill)
CASES = {
    "three_atoms_relu": ({"m": 20, "flow.t_end": 100, "flow.dt": 0.1, "flow.ds": 0.02,
                          "flow.lam": 0.02, "lam_t": 1.6, "snapshot": 5},
                         "checkpoint-phase1.pt"),
    "maxmargin": ({"m": 30, "lams": "0.1,0.01", "lam_t": 1, "grid": 48, "snapshot": 5},
                  "checkpoint-phase1.pt"),
    "width_limit": ({"widths": "5,10", "seeds": 2, "reference_m": 200, "long_t": 0.2,
                     "tracking_m": 5, "steps_tested": "0.025,0.05,0.1", "flow.t_end": 0.2},
                    "checkpoint-reference.pt"),
    "collapse": ({"data": "moons", "n": 40, "model.m": 30, "flow.dt": 0.01, "flow.t_end": 1.5},
                 "checkpoint.pt"),
}
FINITE = ({"data": "moons", "n": 40, "model": "two_layer", "model.width": 8, "train.epochs": 300},
          "checkpoint.pt")
SLOW = {  # later checkpoints: the kill lands in a second phase / in the training units
    "three_atoms_relu": "checkpoint-phase2-lam0.pt",
    "maxmargin": "checkpoint-phase2.pt",
    "width_limit": "checkpoint-progress.pt",
}


def _cmd(name, sets, out):
    cmd = [sys.executable, "-m", "meanfield.cli", "run", name, "--out", str(out),
           "--checkpoint-every", "0", "--quiet"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT),
                KEOPS_CACHE_FOLDER=os.environ.get("KEOPS_CACHE_FOLDER", str(ROOT / ".keops_cache")))


def _same_run_directory(a: Path, b: Path):
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        for k in WALL:
            s.pop(k, None)
    assert sa == sb
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    if (a / "particles.pt").exists():
        pa, pb = (torch.load(d / "particles.pt", weights_only=True) for d in (a, b))
        for k in ("a", "w", "b"):
            assert torch.equal(pa[k], pb[k]), f"particles {k} differ after resume"
    if (a / "model.pt").exists():
        ma, mb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
        assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not list(b.glob("checkpoint*.pt")), "a finished run leaves no checkpoint"


def _kill_and_resume(tmp_path, name, sets, trigger):
    env = _env()
    ref = tmp_path / "ref"
    subprocess.run(_cmd(name, sets, ref), check=True, env=env, timeout=600,
                   capture_output=True)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(name, sets, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ck = out / trigger
    deadline = time.time() + 300
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck.exists() and not (out / "summary.json").exists(), \
        f"the run should have been killed mid-way: {proc.stderr.read()[-800:]!r}"
    done = subprocess.run(_cmd(name, sets, out), env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run_directory(ref, out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_run_resumes_bit_for_bit(tmp_path, name):
    sets, trigger = CASES[name]
    _kill_and_resume(tmp_path, name, sets, trigger)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_killed_run_resumes_in_a_later_phase(tmp_path, name):
    _kill_and_resume(tmp_path, name, CASES[name][0], SLOW[name])


@pytest.mark.slow
def test_killed_finite_training_resumes_bit_for_bit(tmp_path):
    _kill_and_resume(tmp_path, "collapse", *FINITE)
