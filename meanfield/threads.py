"""Torch's intra-op thread count for a block of code.

Small problems (a few hundred particles or parameters, a few hundred samples) gain nothing from a
second thread, and on a busy machine two threads spin-wait on each other: a 30-particle flow ran
30x slower with two threads than with one on a loaded 2-core CPU. The engine and the experiments
run such problems inside ``torch_threads(1)``.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

__all__ = ["torch_threads", "one_thread_on_cpu"]


@contextlib.contextmanager
def torch_threads(n: Optional[int] = 1):
    """Set torch's intra-op threads to ``n`` inside the block (None: leave them); restore after."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def one_thread_on_cpu(device) -> contextlib.AbstractContextManager:
    """One torch thread when ``device`` is a CPU (the experiments' small problems), torch's own
    setting on a GPU: the one rule the experiments share."""
    return torch_threads(1 if torch.device(device).type == "cpu" else None)
