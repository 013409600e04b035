"""One full mean-field flow step on a GPU: keops vs dense vs the baseline a researcher would write.

A full step is outputs + velocities + an Euler update of (a, w, b) (ReLU, logistic loss, float32,
uniform masses). The baseline is a torch two-layer module with the 1/m output scaling,
``loss.backward()`` and a manual update scaled by m (the Euler step of the same flow); it holds
several m x n matrices, so it runs only where they fit in memory, and its throughput is then
measured at the largest fitting n for the same m (the ratio says which n).

Prints, per (m, n, d) and method: seconds per step, pairs per second (m n / time), peak memory,
ratio to the baseline; then the error of the fast path (float32) against a float64 dense
computation at a small size, and the first-call (compile) time of each keops formula.

Usage::

    python benchmarks/bench_gpu.py                       # m = 1e6, n = 1e5, d = 2 and 10 on CUDA
    python benchmarks/bench_gpu.py --device cpu --m 20000 --n 2000 --d 2   # a smoke run
    python benchmarks/bench_gpu.py --csv out.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from meanfield.activations import get_activation
from meanfield.backends import get_backend
from meanfield.losses import get_loss

ACT = "relu"
DT = 0.1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_problem(m, n, d, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + 0.5 * X[:, -1] > 0).long()
    w = torch.randn(m, d, generator=g)
    b = torch.randn(m, generator=g)
    a = torch.randn(m, 1, generator=g)
    to = dict(dtype=dtype, device=device)
    return dict(X=X.to(**to), y=y.to(device), p=torch.full((n,), 1.0 / n, **to),
                a=a.to(**to), w=w.to(**to), b=b.to(**to))


def engine_step(be, pb):
    """One Euler step of the flow with the explicit reductions of a backend (B = 1)."""
    act, loss = get_activation(ACT), get_loss("logistic")
    a, w, b, X = pb["a"][None], pb["w"][None], pb["b"][None], pb["X"][None]
    f = be.outputs(act, a, w, b, X)
    g = pb["p"][None, :, None] * loss.grad(f, pb["y"][None])
    va, vw, vb = be.velocities(act, a, w, b, X, g)
    pb["a"] = pb["a"] + DT * va[0]
    pb["w"] = pb["w"] + DT * vw[0]
    pb["b"] = pb["b"] + DT * vb[0]


def baseline_step(pb):
    """What a researcher would write: autograd through a two-layer module, update scaled by m."""
    m = pb["a"].shape[0]
    if "params" not in pb:
        pb["params"] = [pb[k].clone().requires_grad_(True) for k in ("a", "w", "b")]
    a, w, b = pb["params"]
    f = torch.relu(pb["X"] @ w.T + b) @ a / m                  # (n, 1)
    xi = 2.0 * pb["y"].to(f.dtype) - 1.0
    risk = (pb["p"] * F.softplus(-xi * f[:, 0])).sum()
    risk.backward()
    with torch.no_grad():
        for t in (a, w, b):
            t -= DT * m * t.grad
            t.grad = None


def baseline_fits(m, n, dtype, device) -> bool:
    # autograd keeps z, relu(z) and their gradients: about 4 m x n matrices at peak
    need = 4 * m * n * torch.finfo(dtype).bits // 8
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return need < 0.8 * free
    return need < 4e9


def time_steps(step, pb, device, repeat):
    sync(device)
    t0 = time.perf_counter()
    step(pb)                                   # first call: compiles / loads kernels
    sync(device)
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step(pb)
        sync(device)
        ts.append(time.perf_counter() - t0)
    return first, statistics.median(ts)


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device):
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")


def error_check(device, m=20_000, n=3_000, d=2):
    """Relative errors (Frobenius) of the float32 fast paths against float64 dense, per quantity."""
    act, loss = get_activation(ACT), get_loss("logistic")
    ref_be = get_backend("dense")
    p64 = make_problem(m, n, d, torch.float64, device, seed=1)
    a, w, b, X = p64["a"][None], p64["w"][None], p64["b"][None], p64["X"][None]
    f64 = ref_be.outputs(act, a, w, b, X)
    g64 = p64["p"][None, :, None] * loss.grad(f64, p64["y"][None])
    v64 = ref_be.velocities(act, a, w, b, X, g64)
    out = {}
    for name in ("keops", "dense"):
        be = get_backend(name)
        c = [t.float() for t in (a, w, b, X, g64)]
        f = be.outputs(act, *c[:4])
        v = be.velocities(act, *c)
        errs = [((x.double() - y).norm() / y.norm()).item() for x, y in zip((f,) + v, (f64,) + v64)]
        out[name] = dict(zip(("f", "v_a", "v_w", "v_b"), errs))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--m", type=float, nargs="+", default=[1e6])
    ap.add_argument("--n", type=float, nargs="+", default=[1e5])
    ap.add_argument("--d", type=int, nargs="+", default=[2, 10])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["keops", "dense", "baseline"])
    ap.add_argument("--baseline-n", type=float, default=None,
                    help="n for the baseline where the main n does not fit (default: largest "
                         "power of ten that fits)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    import pykeops
    print(f"# machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"pykeops {pykeops.__version__}")
    if device.type == "cuda":
        pr = torch.cuda.get_device_properties(device)
        print(f"# GPU: {pr.name}, {pr.total_memory / 2**30:.0f} GiB, {pr.multi_processor_count} SMs")
    print(f"# full step = outputs + velocities + Euler update; {ACT}, logistic, {args.dtype}, "
          f"median of {args.repeat} steps after one warm-up step")
    hdr = ["m", "n", "d", "method", "n_run", "first_s", "step_s", "pairs_per_s", "peak_GiB",
           "x_baseline"]
    print(" ".join(f"{h:>12}" for h in hdr))
    rows = []
    for d in args.d:
        for m in map(int, args.m):
            for n in map(int, args.n):
                res = {}
                for meth in args.methods:
                    n_run = n
                    if meth == "baseline" and not baseline_fits(m, n, dtype, device):
                        n_run = int(args.baseline_n or 10 ** max(
                            [e for e in range(1, 9) if baseline_fits(m, 10 ** e, dtype, device)] or [0]))
                        if n_run < 10:
                            print(f"# baseline does not fit for m = {m}")
                            continue
                    pb = make_problem(m, n_run, d, dtype, device)
                    peak_reset(device)
                    try:
                        if meth == "baseline":
                            first, step = time_steps(baseline_step, pb, device, args.repeat)
                        else:
                            be = get_backend(meth)
                            first, step = time_steps(lambda q: engine_step(be, q), pb, device,
                                                     args.repeat)
                    except torch.cuda.OutOfMemoryError:
                        print(f"# {meth} out of memory at m={m}, n={n_run}, d={d}")
                        continue
                    res[meth] = dict(m=m, n=n, d=d, method=meth, n_run=n_run, first_s=first,
                                     step_s=step, pairs_per_s=m * n_run / step,
                                     peak_GiB=peak_gb(device))
                    del pb
                base = res.get("baseline", {}).get("pairs_per_s")
                for r in res.values():
                    r["x_baseline"] = r["pairs_per_s"] / base if base else float("nan")
                    rows.append(r)
                    print(" ".join(f"{r[h]:>12.4g}" if isinstance(r[h], float) else f"{r[h]:>12}"
                                   for h in hdr))
    if "keops" in args.methods:
        errs = error_check(device)
        for name, e in errs.items():
            print(f"# error of {name} {args.dtype} vs float64 dense (m=20000, n=3000, d=2): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in e.items()))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=hdr)
            wr.writeheader()
            wr.writerows(rows)
        print(f"# wrote {args.csv}")


if __name__ == "__main__":
    main()
