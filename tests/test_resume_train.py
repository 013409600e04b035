"""A training experiment killed with SIGKILL and re-run with the same command ends bit for bit where
an uninterrupted run ends (summary.json and history.csv equal, wall-clock fields aside)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from meanfield.study.rundir import PROVENANCE_FIELDS

# tiny, but long enough (600 optimiser steps per arm) to be killed in the middle of the second arm
SETS = ["data.per_class=10", "model.width=16", "model.depth=3", "train.epochs=150",
        "train.batch_size=25", "train.log_every=30", "seeds=1", "record_every=50",
        "train.weight_decay=5e-3", "train.lr=0.05"]


def _cmd(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "meanfield.cli", "run", "weight_decay", "--out", str(out),
           "--checkpoint-every", "0"]
    for s in SETS:
        cmd += ["--set", s]
    return cmd


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.setdefault("KEOPS_CACHE_FOLDER", str(Path(__file__).resolve().parents[1] / ".keops_cache"))
    return env


def _summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in PROVENANCE_FIELDS and not k.endswith("_seconds")}


def test_weight_decay_killed_and_rerun_resumes_bit_for_bit(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    target = killed / "checkpoint-0-no_decay.pt"  # the decay arm is done, the second arm under way
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        err = proc.stderr.read().decode()
        pytest.fail(f"the run ended (rc {proc.returncode}) before its checkpoint appeared: {err[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (killed / "summary.json").exists(), "killed too late: the run had finished"
    saved = torch.load(target, weights_only=True)  # tensors, numbers, strings, lists, dicts only
    assert 1 <= saved["epoch"] < 150 and not saved["done"]
    assert {"model", "optimizer", "generator", "torch_rng", "history", "steps"} <= set(saved)

    for out in (killed, whole):  # the same command again; and an uninterrupted run
        r = subprocess.run(_cmd(out), env=_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    assert _summary(killed) == _summary(whole)
    assert (killed / "history.csv").read_text() == (whole / "history.csv").read_text()
    assert not list(killed.glob("checkpoint*.pt"))  # removed once the run finished
    assert {"nc_metrics.png", "loss.png"} <= {p.name for p in killed.iterdir()}


def test_checkpoint_of_another_run_is_refused(tmp_path):
    from meanfield.deep.checkpoint import TrainCheckpoint
    from meanfield.deep.train import TrainConfig, train
    from meanfield.models import build_model
    X, y = torch.randn(20, 3, dtype=torch.float64), torch.arange(20) % 2
    net = build_model("deep", 3, 2, width=4, depth=2, dtype="float64")
    train(net, (X, y), TrainConfig(epochs=2), checkpoint=TrainCheckpoint(tmp_path / "c.pt", every=0))
    net = build_model("deep", 3, 2, width=4, depth=2, dtype="float64")
    with pytest.raises(ValueError, match="different training run"):
        train(net, (X, y), TrainConfig(epochs=3), checkpoint=TrainCheckpoint(tmp_path / "c.pt", every=0))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read safely"):
        train(net, (X, y), TrainConfig(epochs=3), checkpoint=TrainCheckpoint(tmp_path / "bad.pt"))
