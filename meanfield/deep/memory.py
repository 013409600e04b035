"""Memory of a learned versus a fixed simplex-ETF classifier, counted and measured.

For a stated model and width, two models are built: *learned* (penultimate width ``width``, a
trained C x width classifier) and *fixed* (penultimate width C, classifier frozen to a simplex ETF,
:mod:`meanfield.deep.fixed_etf`). For each we count the bytes of trainable parameters, their
gradients and the optimiser state after one step, and measure the peak memory of one training step
(forward, backward, optimiser step): ``torch.cuda.max_memory_allocated`` on CUDA (minus what was
allocated before the step), on CPU the running sum of the allocations and frees recorded by
``torch.profiler`` with ``profile_memory=True`` (an op-level account, relative to the start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .fixed_etf import fix_classifier
from .models import DeepHomogeneousMLP, MLP

__all__ = ["MemoryStats", "MemoryReport", "measure_memory", "step_memory"]


@dataclass(frozen=True)
class MemoryStats:
    """Bytes of one model's training state and of one training step.

    Attributes:
        num_trainable: trainable scalars.
        param_bytes: trainable parameters; buffer_bytes: buffers (the frozen ETF lives here).
        grad_bytes: gradients after a backward pass; optimizer_bytes: optimiser state after a step.
        state_bytes: param + grad + optimizer + buffer bytes.
        peak_step_bytes: peak memory of one training step (see module docstring).
    """

    num_trainable: int
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    state_bytes: int
    peak_step_bytes: int


@dataclass(frozen=True)
class MemoryReport:
    """Learned vs fixed classifier, with the relative savings ``1 - fixed/learned``."""

    model: str
    width: int
    depth: int
    num_classes: int
    batch: int
    optimizer: str
    device: str
    learned: MemoryStats
    fixed: MemoryStats
    state_saving: float
    peak_saving: float

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("model", "width", "depth", "num_classes", "batch",
                                             "optimizer", "device", "state_saving", "peak_saving")}
        for tag in ("learned", "fixed"):
            out.update({f"{tag}_{k}": v for k, v in getattr(self, tag).__dict__.items()})
        return out


def _bytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def _peak_cpu(fn) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    run = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        run += e.self_cpu_memory_usage
        peak = max(peak, run)
    return int(peak)


def _peak_cuda(fn, device) -> int:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def step_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, optimizer: str = "sgd") -> MemoryStats:
    """Count the training state of ``model`` and measure the peak of one cross-entropy step on (x, y)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=1e-3)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: sgd, adam")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()  # warm-up: allocates gradients and optimiser state
    grad_bytes = _bytes(p.grad for p in params if p.grad is not None)
    opt_bytes = _bytes(t for st in opt.state.values() for t in st.values()
                       if isinstance(t, torch.Tensor) and t.dim() > 0)
    peak = _peak_cuda(step, x.device) if x.device.type == "cuda" else _peak_cpu(step)
    pb, bb = _bytes(params), _bytes(model.buffers())
    return MemoryStats(sum(p.numel() for p in params), pb, bb, grad_bytes, opt_bytes,
                       pb + bb + grad_bytes + opt_bytes, peak)


def measure_memory(*, model: str = "mlp", d_in: int = 784, num_classes: int = 10, width: int = 2048,
                   depth: int = 4, batch: int = 128, optimizer: str = "sgd",
                   dtype: torch.dtype = torch.float32, device: Optional[str] = None,
                   seed: int = 0) -> MemoryReport:
    """Memory of a learned classifier vs a fixed simplex ETF, for an MLP of the stated width.

    Args:
        model: ``mlp`` (with biases) or ``homogeneous_mlp``.
        d_in, num_classes, width, depth: the architecture; learned: ``depth - 1`` hidden layers of
            ``width``; fixed: the same with the last hidden layer of width ``num_classes``.
        batch: batch size of the measured step.
        optimizer: ``sgd`` (momentum 0.9: one state tensor per parameter) or ``adam`` (two).
        device: default CPU.

    Returns:
        :class:`MemoryReport`.
    """
    if depth < 3:
        raise ValueError(f"depth must be >= 3 (at least one hidden layer besides the feature layer), got {depth}")
    device = torch.device(device or "cpu")
    cls = {"mlp": MLP, "homogeneous_mlp": DeepHomogeneousMLP}.get(model)
    if cls is None:
        raise ValueError(f"unknown model {model!r}; valid: homogeneous_mlp, mlp")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d_in, generator=g, dtype=dtype).to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    learned = cls(d_in, [width] * (depth - 1), depth, num_classes, seed=seed, dtype=dtype, device=device)
    fixed = cls(d_in, [width] * (depth - 2) + [num_classes], depth, num_classes, seed=seed, dtype=dtype,
                device=device)
    fix_classifier(fixed)
    sl = step_memory(learned, x, y, optimizer=optimizer)
    sf = step_memory(fixed, x, y, optimizer=optimizer)
    return MemoryReport(model, width, depth, num_classes, batch, optimizer, str(device), sl, sf,
                        1 - sf.state_bytes / sl.state_bytes,
                        1 - sf.peak_step_bytes / max(sl.peak_step_bytes, 1))
