"""What every batched or resumable experiment needs, written once.

- :func:`check_batch`: configurations may share a batched run only when they differ in the
  experiment's ``batch_keys`` (dotted keys); :func:`flat_params` lists a config's keys.
- :func:`stack_particles` / :func:`split_history`: many systems as one engine run and back.
- :class:`Progress`: finished pieces of a run that is not one engine flow (trainings, time
  segments), kept in a checkpoint so that a killed run resumes bit for bit.
"""

from __future__ import annotations

import torch

from .experiment import RunContext
from .spec import describe

__all__ = ["flat_params", "check_batch", "stack_particles", "split_history", "with_system",
           "Progress"]


def flat_params(cfg) -> dict:
    """Every reachable key of a config with its value (``data.p1``, ``flow.t_end``, ``m``, ...)."""
    return {k: v for k, _, v, _ in describe(cfg)}


def check_batch(cfgs: list, seeds: list, batch_keys) -> None:
    """Raise ValueError unless there is one seed per config and they differ only in ``batch_keys``."""
    if not cfgs or len(cfgs) != len(seeds):
        raise ValueError(f"run_batch needs one seed per config; got {len(cfgs)} configs, "
                         f"{len(seeds)} seeds")
    ref = flat_params(cfgs[0])
    for c in cfgs[1:]:
        p = flat_params(c)
        diff = sorted(k for k in set(ref) | set(p) if k not in batch_keys and ref.get(k) != p.get(k))
        if diff:
            raise ValueError(f"systems of one batch must share {', '.join(diff)} (only "
                             f"{', '.join(batch_keys)} may differ); group them first")


def stack_particles(parts: list):
    """One batched :class:`~meanfield.particles.Particles` from single systems."""
    from ..particles import Particles
    if len(parts) == 1:
        return parts[0]
    if hasattr(Particles, "stack"):
        return Particles.stack(parts)
    return Particles(torch.cat([x.a for x in parts]), torch.cat([x.w for x in parts]),
                     torch.cat([x.b for x in parts]), parts[0].activation)


def split_history(history: list, B: int) -> list[list[dict]]:
    """The rows of every system, each carrying its ``system`` column."""
    out: list[list[dict]] = [[] for _ in range(B)]
    for r in history:
        s = int(r.get("system", 0))
        out[s].append({**r, "system": s})
    return out


def with_system(rows: list, s: int = 0) -> list[dict]:
    return [{**r, "system": r.get("system", s)} for r in rows]


class Progress:
    """Finished pieces of a run that is not one engine flow (trainings, segments), kept in a
    checkpoint written by the engine's :class:`~meanfield.record.Checkpointer` (atomic, refused
    for another run, tensors and numbers only). Every piece must be deterministic: a resumed run
    then ends bit for bit where an uninterrupted one would.

    Args:
        ctx: the run context (no checkpoint without a run directory).
        name: the checkpoint file (``checkpoint-*.pt``: removed when the run finishes).
        key: a fingerprint of everything the pieces depend on (config, seed).
    """

    def __init__(self, ctx: RunContext, name: str, key):
        import hashlib
        from ..record import Checkpointer
        path = ctx.checkpoint(name)
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        self.ck = None if path is None else Checkpointer(path, every=ctx.checkpoint_every, key=digest)
        self.data: dict = {}
        if self.ck is not None and self.ck.exists():
            self.data = dict(self.ck.load(device="cpu")["units"])

    def unit(self, name: str, fn):
        """``fn()``'s value, computed once: later calls (and resumed runs) return the saved one."""
        if name not in self.data:
            self.data[name] = fn()
            self.save()
        return self.data[name]

    def save(self, force: bool = False) -> None:
        if self.ck is not None and (force or self.ck.due()):
            self.ck.save(state=(), units=self.data)
