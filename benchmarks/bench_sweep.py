"""Benchmark: a 64-point mean-field sweep run batched against the same points one after another.

Both runs go through :func:`meanfield.sweep.sweep` (same code path, same backend, same process,
``workers=1``); only ``batch`` differs. Each point is a two-layer ReLU network of m = 1000 trainable
particles on the line-classes geometry with n = 100 samples (``line_classes(points=50)``), logistic
loss, weight decay lambda and initial scale varying over an 8 x 8 grid, fixed-step Heun.

    python benchmarks/bench_sweep.py [--m 1000] [--n 100] [--steps 20] [--backend auto]

Prints both wall times, the ratio (target >= 4x on a 2-core CPU) and the largest relative
difference between the two tables (batching must not change the numbers).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from meanfield.data import line_classes
from meanfield.experiments.registry import Experiment, ExperimentResult, register_experiment
from meanfield.flow import FlowConfig, simulate
from meanfield.particles import Particles
from meanfield.record import Recorder
from meanfield.sweep import sweep


@dataclass(frozen=True)
class BenchConfig:
    """A line-classes mean-field run (lam and scale_a may differ within a batch)."""

    lam: float = 1e-2
    scale_a: float = 1.0
    m: int = 1000
    points: int = 50
    dt: float = 0.05
    steps: int = 20


def _batch(cfgs, seeds, ctx):
    c0 = cfgs[0]
    data = line_classes(points=c0.points).sample(dtype=torch.float64)
    parts = [Particles.gaussian(c.m, 1, scale_a=c.scale_a, seed=s) for c, s in zip(cfgs, seeds)]
    P = Particles(torch.cat([p.a for p in parts]), torch.cat([p.w for p in parts]),
                  torch.cat([p.b for p in parts]), "relu")
    lam = tuple(c.lam for c in cfgs) if len(cfgs) > 1 else c0.lam
    flow = FlowConfig(loss="logistic", lam=lam, integrator="heun", dt=c0.dt, t_end=c0.dt * c0.steps,
                      backend=ctx.backend)

    def spread(c):  # within-class spread of the outputs, max - min over each class, summed
        f, y = c.outputs[..., 0], c.data.y[0]
        return sum(f[:, y == k].amax(1) - f[:, y == k].amin(1) for k in (0, 1))

    rec = Recorder("linear", num=3, stats={"spread": spread})
    res = simulate(P, data, flow, recorder=rec, seed=seeds[0], progress=False)
    B = len(cfgs)
    out = []
    for s in range(B):
        last = [r for r in res.history if B == 1 or r.get("system") == s][-1]
        out.append(ExperimentResult({"risk": last["risk"], "spread": last["spread"],
                                     "norm_l2": last["norm_l2"], "backend": res.backend}))
    return out


def _run(cfg, ctx):
    return _batch([cfg], [ctx.seed], ctx)[0]


EXPERIMENT = Experiment("bench_line_classes", "benchmark: ReLU mean-field net on line classes",
                        BenchConfig, _run, run_batch=_batch, batch_keys=("lam", "scale_a"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--n", type=int, default=100, help="samples (even)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backend", default="auto", help="auto (numba on CPU), dense, numba, keops")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    register_experiment(EXPERIMENT)
    grid = {"lam": "1e-3:1e-1:8:log", "scale_a": "0.5:2:8"}
    fixed = {"m": args.m, "points": args.n // 2, "steps": args.steps}
    print(f"64-point sweep: m = {args.m}, n = {args.n}, {args.steps} Heun steps, backend "
          f"{args.backend}, device {args.device}, torch threads {torch.get_num_threads()}")
    times, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (allocator, kernels, imports) outside the timings
        sweep("bench_line_classes", {"lam": "1e-2"}, fixed={**fixed, "steps": 2}, out=Path(tmp) / "w",
              batch=False, plot=False, backend=args.backend, device=args.device, progress=False)
        for mode in (True, False):
            t0 = time.perf_counter()
            res = sweep("bench_line_classes", grid, fixed=fixed, out=Path(tmp) / str(mode),
                        batch=mode, plot=False, backend=args.backend, device=args.device,
                        progress=False)
            times[mode] = time.perf_counter() - t0
            assert res.computed == 64 and res.failed == 0, res.rows[0].get("error")
            tables[mode] = res.rows
    err = max(abs(a[k] - b[k]) / max(abs(a[k]), abs(b[k]), 1e-300)
              for a, b in zip(tables[True], tables[False]) for k in ("risk", "spread", "norm_l2"))
    print(f"batched (one system of 64):   {times[True]:8.2f} s  ({times[True] / 64 * 1e3:.1f} ms/point)")
    print(f"one after another (64 runs):  {times[False]:8.2f} s  ({times[False] / 64 * 1e3:.1f} ms/point)")
    for mode, name in ((True, "batched"), (False, "one by one")):
        print(f"backend that ran ({name}): {', '.join(sorted({str(r['backend']) for r in tables[mode]}))}")
    print(f"ratio: {times[False] / times[True]:.1f}x  (target >= 4x on a 2-core CPU)")
    print(f"largest relative difference between the two tables: {err:.2e}")
    return 0 if math.isfinite(err) else 1


if __name__ == "__main__":
    raise SystemExit(main())
