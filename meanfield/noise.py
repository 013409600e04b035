"""The Langevin noise of a batched flow: one generator per system.

System ``b`` of a batch draws its noise from its own generator, seeded with ``seeds[b]``, in the
order a single run draws it (a, then w and b when the inner weights train). So a system's
trajectory does not depend on which other systems were stepped beside it: a sweep point gives the
same numbers batched, unbatched, on any worker or after a resume, and system 0 of a batch seeded
with ``s`` is the run of that system alone with seed ``s``. (One generator for the whole batch,
as before, made each point's noise depend on the batch it fell in.)
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["SystemNoise", "system_seeds"]

Seed = Union[None, int, Sequence[int]]


def system_seeds(seed: Seed, B: int) -> tuple[int, ...]:
    """The B systems' seeds: ``seed + b`` for an int (one drawn from ``os.urandom`` for None),
    or the sequence itself (length B, integers)."""
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") >> 2
    if isinstance(seed, (list, tuple)):
        if len(seed) != B:
            raise ValueError(f"seed has {len(seed)} entries but the batch has {B} systems; pass "
                             "one seed per system or a single int")
        out = tuple(int(s) for s in seed)
    else:
        if isinstance(seed, bool) or int(seed) != seed:
            raise ValueError(f"seed must be an integer, got {seed!r}")
        out = tuple(int(seed) + b for b in range(B))
    if any(s < 0 for s in out):
        raise ValueError(f"seeds must be non-negative integers, got {min(out)}")
    return out


class SystemNoise:
    """Per-system Gaussian draws for a (B, ...) state.

    Args:
        seeds: one seed per system.
        device: the generators' device.
    """

    def __init__(self, seeds: Sequence[int], device):
        self.seeds = tuple(int(s) for s in seeds)
        self.gens = []
        for s in self.seeds:
            g = torch.Generator(device=device)
            g.manual_seed(s)
            self.gens.append(g)

    def randn_like(self, x: Tensor) -> Tensor:
        """Standard normal noise of x's shape (B, ...): row b from system b's generator."""
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=x.device)
                            for g in self.gens])

    def get_state(self) -> Tensor:
        """(B, N) uint8: every generator's state."""
        return torch.stack([g.get_state() for g in self.gens])

    def set_state(self, state: Optional[Tensor]) -> None:
        """Restore :meth:`get_state`'s output; a (N,) state (a single-system run) for B = 1."""
        if state is None:
            return
        if state.dim() == 1:
            state = state[None]
        if state.shape[0] != len(self.gens):
            raise ValueError(f"the saved noise state holds {state.shape[0]} generator(s) but the "
                             f"batch has {len(self.gens)} systems; continue each system alone "
                             "(FlowResult.select) or start the run again")
        for g, st in zip(self.gens, state):
            g.set_state(st.clone().cpu())  # its own storage: set_state reads from offset 0
