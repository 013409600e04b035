"""Checkpoints of a training run, so a killed :func:`meanfield.deep.train.train` resumes bit for bit.

A checkpoint holds the model's ``state_dict``, the optimiser's and the scheduler's state, the
mini-batch generator's state and torch's global RNG state, the epoch and step reached, and the
history and kept features so far. It is written atomically (temporary file + rename) with
``torch.save`` of tensors, numbers, strings, lists and dicts only, and read back with
``torch.load(weights_only=True)``: a planted file cannot run code (it is refused, naming the file).

A checkpoint carries a fingerprint of its run (the training configuration, the initial parameters
and the data); one of another run is refused rather than resumed. When the run finishes the
checkpoint is written once more, so a finished run re-run with the same checkpoint returns at once
with the same model, history and features (an experiment of several trainings replays the
finished ones).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch

from ..record import atomic_torch_save

__all__ = ["TrainCheckpoint", "run_key"]

_FORMAT = "meanfield.train/1"


def run_key(model: torch.nn.Module, samples, config) -> str:
    """A fingerprint of a training run: its config, the initial parameters and the data."""
    h = hashlib.sha256()
    h.update(repr(sorted(asdict(config).items())).encode())
    for t in list(model.state_dict().values()) + [samples.X, samples.y, samples.p]:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:20]


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_cpu(v) for v in obj]
    return obj


class TrainCheckpoint:
    """Periodic checkpoints of one :func:`~meanfield.deep.train.train` call.

    Args:
        path: the checkpoint file (created with its folder).
        every: wall-clock seconds between saves (0: after every epoch). The final state is
            always saved.
    """

    def __init__(self, path: str | os.PathLike, *, every: float = 60.0):
        self.path = Path(path)
        self.every = float(every)
        self.key: Optional[str] = None
        self._last = time.monotonic()
        self._monitor = None
        self._monitor_values: Optional[list] = None
        self._monitor_best: Optional[float] = None

    # ------------------------------------------------------------------ used by train()
    def begin(self, model, samples, config) -> None:
        """Fingerprint the run (call before any step)."""
        self.key = run_key(model, samples, config)
        self._last = time.monotonic()

    def attach(self, monitor) -> None:
        """Save and restore the window of a divergence monitor (``monitor.values``) and its best
        value so far (``monitor.best``) with the run."""
        self._monitor = monitor
        if self._monitor_values is not None and hasattr(monitor, "values"):
            monitor.values = list(self._monitor_values)
        if hasattr(monitor, "best"):
            if self._monitor_best is not None:
                monitor.best = self._monitor_best
            elif self._monitor_values:  # a checkpoint from before the best was saved
                monitor.best = min(self._monitor_values + ([monitor.best] if monitor.best is not None
                                                           else []))

    def restore(self, model, opt, sched, gen: torch.Generator) -> Optional[dict]:
        """Load the saved state into ``model``, ``opt``, ``sched`` and ``gen`` if a checkpoint of
        this run exists.

        Returns:
            ``{"epoch", "steps", "done", "history", "features"}`` or None (no checkpoint: start afresh).

        Raises:
            ValueError: an unreadable file, or a checkpoint of another run (named).
        """
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - never unpickle code; name the file
            raise ValueError(f"checkpoint {self.path} cannot be read safely ({type(e).__name__}); "
                             "a checkpoint holds only tensors, numbers and strings: delete it to "
                             "start over") from None
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            raise ValueError(f"checkpoint {self.path} is not a meanfield training checkpoint; "
                             "delete it to start over")
        if saved.get("key") != self.key:
            raise ValueError(f"checkpoint {self.path} belongs to a different training run (other "
                             "config, initial model or data); delete it or choose another output "
                             "folder")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None and saved.get("scheduler") is not None:
            sd = dict(saved["scheduler"])
            if hasattr(sched, "milestones"):
                sd["milestones"] = Counter(sched.milestones)
            sched.load_state_dict(sd)
        gen.set_state(saved["generator"])
        torch.random.set_rng_state(saved["torch_rng"])
        mon = saved.get("monitor")
        self._monitor_values = [float(v) for v in mon] if mon is not None else None
        best = saved.get("monitor_best")
        self._monitor_best = float(best) if best is not None else None
        return {"epoch": int(saved["epoch"]), "steps": int(saved["steps"]), "done": bool(saved["done"]),
                "history": list(saved["history"]),
                "features": {int(k): v for k, v in saved["features"].items()}}

    def step(self, epoch: int, steps: int, model, opt, sched, gen, history, features, *,
             final: bool = False) -> None:
        """Save now if ``every`` seconds passed since the last save (or ``final``)."""
        if final or time.monotonic() - self._last >= self.every:
            self.save(epoch, steps, model, opt, sched, gen, history, features, done=final)

    def save(self, epoch: int, steps: int, model, opt, sched, gen, history, features, *,
             done: bool = False) -> None:
        """Write the state now (``done``: the run finished; a resume returns at once)."""
        sched_sd = None
        if sched is not None:
            sched_sd = {k: v for k, v in sched.state_dict().items() if k != "milestones"}
        payload: dict[str, Any] = {
            "format": _FORMAT, "key": self.key, "epoch": int(epoch), "steps": int(steps),
            "done": bool(done),
            "model": _cpu(model.state_dict()), "optimizer": _cpu(opt.state_dict()),
            "scheduler": _cpu(sched_sd), "generator": gen.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "history": _cpu(list(history)), "features": {int(k): _cpu(v) for k, v in features.items()},
            "monitor": [float(v) for v in getattr(self._monitor, "values", [])]
            if self._monitor is not None else None,
            "monitor_best": getattr(self._monitor, "best", None) if self._monitor is not None else None,
        }
        atomic_torch_save(payload, self.path)
        self._last = time.monotonic()
