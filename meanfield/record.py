"""What is measured when: the recorder, history tables, checkpoints, progress bars, run directories."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Recorder", "RecordContext", "Checkpointer", "progress_bar", "write_history",
           "read_history", "write_json", "atomic_write"]


@dataclass(frozen=True)
class RecordContext:
    """What a statistic sees at a recorded time.

    Attributes:
        t: time.
        step: step count.
        particles: the state (:class:`meanfield.particles.Particles`, B systems).
        outputs ((B, n, k) Tensor): f at the data points.
        data: :class:`meanfield.flow.BatchedData`.
        risk ((B,) Tensor): R(pi), data term plus weight decay.
    """

    t: float
    step: int
    particles: Any
    outputs: Tensor
    data: Any
    risk: Tensor


Stat = Callable[[RecordContext], "Tensor | float | Mapping[str, Tensor | float]"]


class Recorder:
    """Records statistics at chosen times (log-spaced by default).

    Args:
        times: ``"log"`` (t = 0 and ``num`` log-spaced times from ``t_min`` to t_end), ``"linear"``,
            or an explicit increasing sequence of times.
        num: number of recorded times for ``log``/``linear``.
        t_min: first positive recorded time for ``log`` (default t_end * 1e-4).
        stats: name -> function of a :class:`RecordContext` returning a (B,) tensor, a float, or a
            dict of those (several columns). ``risk`` and ``norm_l2`` are always recorded.
        snapshot: keep the neurons (a, w, b) of the first ``snapshot`` particles of every system at
            every recorded time in ``self.snapshots`` (for trajectory figures); 0 keeps none.

    A row is written per system, with a ``system`` column (0 when B = 1).
    """

    def __init__(self, times: str | Sequence[float] = "log", *, num: int = 60,
                 t_min: Optional[float] = None, stats: Optional[Mapping[str, Stat]] = None,
                 snapshot: int = 0):
        if isinstance(times, str) and times not in ("log", "linear"):
            raise ValueError(f"times must be 'log', 'linear' or a sequence of times; got {times!r}")
        self.spec, self.num, self.t_min = times, int(num), t_min
        self.stats = dict(stats or {})
        self.history: list[dict] = []
        self.snapshot = int(snapshot)
        self.snapshots: list[dict] = []
        self._schedule: list[float] = []
        self._next = 0

    def start(self, t_end: float) -> None:
        """Fix the schedule for a run ending at t_end."""
        if isinstance(self.spec, str):
            if self.spec == "log":
                t0 = self.t_min if self.t_min is not None else t_end * 1e-4
                ts = [0.0] + [float(x) for x in torch.logspace(math.log10(t0), math.log10(t_end),
                                                                self.num, dtype=torch.float64)]
            else:
                ts = [float(x) for x in torch.linspace(0, t_end, self.num, dtype=torch.float64)]
        else:
            ts = sorted(float(x) for x in self.spec)
        self._schedule = ts
        self._next = 0

    def due(self, t: float) -> bool:
        """Whether t has reached the next scheduled time."""
        return self._next < len(self._schedule) and t >= self._schedule[self._next] * (1 - 1e-12)

    def skip_to(self, t: float) -> None:
        """Pass every scheduled time up to t without recording (a continued run)."""
        while self.due(t):
            self._next += 1

    def record(self, *, t: float, step: int, particles, outputs: Tensor, data, risk: Tensor) -> None:
        """Evaluate every statistic and append one row per system."""
        while self._next < len(self._schedule) and t >= self._schedule[self._next] * (1 - 1e-12):
            self._next += 1
        ctx = RecordContext(t, step, particles, outputs, data, risk)
        cols: dict[str, Tensor] = {"risk": risk, "norm_l2": particles.variation_norm("l2")}
        for name, fn in self.stats.items():
            val = fn(ctx)
            items = val.items() if isinstance(val, Mapping) else [(name, val)]
            for key, v in items:
                cols[key] = torch.as_tensor(v, dtype=torch.float64).reshape(-1).expand(particles.batch)
        B = particles.batch
        if self.snapshot > 0:
            k = min(self.snapshot, particles.m)
            self.snapshots.append({"t": float(t), "a": particles.a[:, :k].detach().cpu().clone(),
                                   "w": particles.w[:, :k].detach().cpu().clone(),
                                   "b": particles.b[:, :k].detach().cpu().clone()})
        for s in range(B):
            row = {"t": float(t), "step": int(step), "system": s}
            row.update({k: float(v[s]) for k, v in cols.items()})
            self.history.append(row)

    def state(self) -> dict:
        return {"history": list(self.history), "next": self._next, "snapshots": list(self.snapshots)}

    def load_state(self, st: dict) -> None:
        self.history = list(st["history"])
        self._next = int(st["next"])
        self.snapshots = list(st.get("snapshots", []))


class Checkpointer:
    """Writes a run's state atomically every ``every`` seconds; refuses checkpoints of other runs.

    Args:
        path: checkpoint file.
        every: wall-clock seconds between saves (0: every call to :meth:`due` says yes).
        key: a fingerprint of the run (config, seed, initial state, data).
    """

    def __init__(self, path, *, every: float, key: str):
        self.path = Path(path)
        self.every = float(every)
        self.key = key
        self._last = time.monotonic()

    def exists(self) -> bool:
        return self.path.exists()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def save(self, **payload) -> None:
        payload["key"] = self.key
        atomic_torch_save({k: (tuple(x.detach().cpu() if x is not None else None for x in v)
                               if k == "state" else v) for k, v in payload.items()}, self.path)
        self._last = time.monotonic()

    def load(self, device) -> dict:
        """The saved payload, read with ``torch.load(weights_only=True)``: a checkpoint holds only
        tensors, numbers, strings, lists, dicts, tuples, None and RNG states (ByteTensors), and a
        planted file that would run code on unpickling is refused (ValueError naming the file)."""
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"checkpoint {self.path} cannot be read safely ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); a checkpoint holds only "
                             "tensors, numbers and strings: delete it to start over") from None
        if not isinstance(saved, dict) or not isinstance(saved.get("state"), (tuple, list)):
            raise ValueError(f"checkpoint {self.path} is not a meanfield checkpoint; delete it to "
                             "start over")
        if saved.get("key") != self.key:
            raise ValueError(f"checkpoint {self.path} belongs to a different run (other config, seed, "
                             "data or initial particles); delete it or choose another output folder")
        saved["state"] = tuple(x.to(device) if x is not None else None for x in saved["state"])
        return saved


class _NoBar:
    def update(self, *_):
        pass

    def close(self):
        pass


class _TimeBar:
    """A tqdm bar over simulated time (integer percent, so log-time runs still move)."""

    def __init__(self, total: float, desc: str):
        from tqdm.auto import tqdm
        self.total = total
        self.done = 0.0
        self.shown = 0
        self.bar = tqdm(total=100, desc=desc, unit="%", leave=False)

    def update(self, dt: float):
        self.done += dt
        pct = min(100, int(100 * self.done / self.total))
        if pct > self.shown:
            self.bar.update(pct - self.shown)
            self.shown = pct

    def close(self):
        self.bar.close()


def progress_bar(*, total: float, enabled: Optional[bool], desc: str):
    """A progress bar over a total; quiet when ``enabled`` is False or None and stderr is not a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return _TimeBar(total, desc) if enabled else _NoBar()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_file(directory, prefix: str, suffix: str = "") -> tuple[int, str]:
    """``mkstemp`` in ``directory`` with the mode an ordinary ``open`` would give (the umask is
    honoured: mkstemp alone makes every file 0600). Returns ``(fd, path)``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def atomic_write(path, text: str) -> None:
    """Write a text file atomically (temp file + rename): readers never see half a file."""
    path = Path(path)
    fd, tmp = temp_file(path.parent, f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` atomically (temp file + rename), honouring the umask."""
    path = Path(path)
    fd, tmp = temp_file(path.parent, f".{path.name}-", ".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj) -> None:
    """JSON, atomically, with non-finite floats written as null."""
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, Tensor):
            return clean(o.tolist())
        if hasattr(o, "item") and callable(o.item):
            return clean(o.item())
        return o
    atomic_write(path, json.dumps(clean(obj), indent=2, sort_keys=False) + "\n")


def write_history(path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows (dicts) as CSV, atomically; columns are the union of keys in first-seen order."""
    import io
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(path, buf.getvalue())


def check_csv(path) -> str:
    """The text of a CSV written by :func:`write_history`, or a ValueError naming the file.

    The writer always ends the file with a line end and gives every row the header's fields, so a
    file cut short (a torn copy, a full disk) or garbage is refused instead of read as fewer rows.
    """
    try:
        with open(path, newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is corrupt: not UTF-8 text ({e})") from None
    if not text:
        raise ValueError(f"{path} is empty (truncated?): expected at least a header line")
    if not text.endswith("\n"):
        raise ValueError(f"{path} is truncated: its last line has no line end")
    if not text.strip():  # the header of no columns: a table without rows
        return text
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise ValueError(f"{path} is corrupt: {e}") from None
    width = len(rows[0])
    for i, r in enumerate(rows[1:], 2):
        if len(r) != width:
            raise ValueError(f"{path} is corrupt or truncated: line {i} has {len(r)} fields for "
                             f"{width} columns")
    return text


def read_history(path) -> list[dict]:
    """Read a history/results CSV back (numbers as floats where they parse).

    Raises:
        ValueError: a truncated or corrupt file (named); see :func:`check_csv`.
    """
    out = []
    with io.StringIO(check_csv(path), newline="") as fh:
        for r in csv.DictReader(fh):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out.append(row)
    return out
