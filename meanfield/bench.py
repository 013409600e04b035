"""Benchmark: one full mean-field flow step per backend against the baseline a researcher would write.

A *step* is outputs + velocities (:func:`meanfield.velocity`, logistic loss, uniform masses) + an
Euler update of (a, w, b). The *baseline* is a torch two-layer ``nn.Module`` with the 1/m output
scaling, ``loss = sum_j p_j log(1 + exp(-xi_j f(x_j)))``, ``loss.backward()`` and the manual update
``theta -= dt * m * grad`` (the Euler step of the same flow). Every method of one (m, n, d, act) runs
on the same data and dtype, in the same invocation.

Each measurement runs in a fresh subprocess, so that its peak memory is its own: ``peak_mb`` is the
increase of the process's peak resident set size (``ru_maxrss``) during the timed steps, over its
value after building the data and a warm-up step on a tiny problem (which also compiles the
kernels): the memory the step itself needs (temporaries, the baseline's autograd graph), not the
particles and data. ``err`` is the fast path's largest relative error (max-norm of the difference over
max-norm of the reference, over f, v_a, v_w, v_b) against a float64 dense computation on the same
inputs (outputs at <= 512 samples, velocities at <= 512 particles, every reduction over all m or n).

Usage: ``meanfield bench [--full] [--out FILE.csv]`` or ``python benchmarks/bench_step.py``;
``meanfield bench --write-table`` measures the numba/dense crossover that ``auto`` reads
(:mod:`meanfield.backends.tuning`).

The machine's limits are measured in the same run (:mod:`meanfield.backends.roofline`): rows with
``method = limit_fused`` (the simplest fused relu kernel of both reductions, d = 2, float32: the
bar at small d; for tanh, sigmoid, softplus and smoothstep at d <= 2 the same fused kernel with the
activation's own float32 arithmetic inlined, the row's ``act``) and ``limit_gemm`` (the step's two matrix products at torch.mm's measured rate:
the bar at large d); ``frac_limit`` is each backend's fraction of the relevant one (limit time /
backend time; relu at d <= 16 against the fused limit, d >= 32 against the matrix-product limit).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from typing import Optional, Sequence

__all__ = ["run_bench", "run_batched", "machine", "main", "DEFAULT_GRID", "FULL_GRID"]

#: Seconds of timed steps per measurement at least (short steps are repeated until then): the
#: best of a few 10 ms steps is noisy on a shared CPU, the best of 50 is not.
MIN_TIMED_S = 0.5
#: Seconds of warm-up steps at the measured size at most (at least one step).
WARM_S = 0.2

#: (m, n, d, activation): about two minutes on 2 cores with every method.
DEFAULT_GRID = [
    (10_000, 1_000, 2, "relu"),
    (100_000, 1_000, 2, "relu"),
    (100_000, 1_000, 2, "smoothstep"),
    (100_000, 1_000, 2, "tanh"),
    (100_000, 1_000, 2, "sigmoid"),
    (100_000, 1_000, 2, "softplus"),
    (20_000, 1_000, 10, "relu"),
    (20_000, 1_000, 32, "relu"),
    (20_000, 1_000, 64, "relu"),
    (20_000, 1_797, 64, "relu"),     # digits
    (10_000, 5_000, 784, "relu"),    # MNIST's dimension
]
#: The issue's sizes (m n > 2e9: only the fast path runs; the baseline would need 40 GB).
FULL_GRID = DEFAULT_GRID + [
    (100_000, 1_000, 10, "relu"),
    (100_000, 1_000, 64, "relu"),
    (1_000_000, 10_000, 2, "relu"),
]
BIG = 2_000_000_000   # m n above which only the fastest backend runs
NUMBA_MAX_D = 64      # numba is not timed above this input dimension
DT = 0.1


def machine() -> dict:
    """CPU model, cores, memory and library versions."""
    import numpy
    import torch
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["mem_gb"] = round(int(fh.readline().split()[1]) / 2 ** 20, 1)
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:  # pragma: no cover
        info["numba"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["loadavg"] = round(os.getloadavg()[0], 2)   # other work on the machine skews timings
    except OSError:  # pragma: no cover
        pass
    return info


# ----------------------------------------------------------------------------- one measurement
def _problem(m, n, d, act, dtype, device, seed=0, batch=1):
    import torch
    import meanfield as mf
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) / d ** 0.5
    y = (X[:, 0] + 0.3 * torch.sin(3 * X[:, -1]) > 0).long()
    p = torch.full((n,), 1.0 / n, dtype=torch.float64)
    data = mf.Samples(X.to(device, dtype), y.to(device), p.to(device, dtype), 2)
    parts = mf.Particles.gaussian(m, d, batch=batch, activation=act, seed=seed + 1, dtype=dtype,
                                  device=device)
    return parts, data


def _step_backend(name):
    import meanfield as mf

    from meanfield.backends import get_backend
    from meanfield.flow import _own_threads

    from meanfield.flow import BatchedData, _make_vel

    cfg = mf.FlowConfig(loss="logistic", backend=name)
    be = get_backend(name)
    cache = {}

    def step(parts, data):
        # meanfield.simulate's step: the data checked and batched once per run (as the
        # baseline's module is built once), the velocity closure of its loop; its thread rule:
        # torch on one thread around numba's own threads (the update's add_ on two OpenMP
        # threads left them spinning into the next step's kernels)
        # (the cache holds parts and data themselves, so their ids cannot be reused)
        key = (id(parts), id(data))
        if key not in cache:
            bd = BatchedData.build(data, dtype=parts.dtype, device=parts.device, d=parts.d)
            cache[key] = (parts, data, _make_vel(parts, bd, cfg, be))
        with _own_threads(be):
            va, vw, vb = cache[key][2]((parts.a, parts.w, parts.b))
            parts.a.add_(va, alpha=DT)
            parts.w.add_(vw, alpha=DT)
            parts.b.add_(vb, alpha=DT)
    return step


def _step_baseline():
    import torch
    import torch.nn.functional as F
    from meanfield.activations import get_activation

    class TwoLayer(torch.nn.Module):
        def __init__(self, parts):
            super().__init__()
            self.inner = torch.nn.Linear(parts.d, parts.m)
            self.a = torch.nn.Parameter(parts.a[0].clone())
            with torch.no_grad():
                self.inner.weight.copy_(parts.w[0])
                self.inner.bias.copy_(parts.b[0])
            self.inner.to(parts.dtype)
            self.act = get_activation(parts.activation).fn

        def forward(self, x):
            return self.act(self.inner(x)) @ self.a / self.a.shape[0]

    cache = {}

    def step(parts, data):
        net = cache.get(id(parts))
        if net is None:
            net = cache[id(parts)] = TwoLayer(parts)
        xi = (2 * data.y - 1).to(data.X.dtype)
        f = net(data.X)[:, 0]
        loss = (data.p * F.softplus(-xi * f)).sum()
        net.zero_grad(set_to_none=True)
        loss.backward()
        m = net.a.shape[0]
        with torch.no_grad():
            for prm in net.parameters():
                prm -= DT * m * prm.grad
    return step


def _error(name, parts, data) -> float:
    """Largest relative error of backend ``name`` against float64 dense on the same inputs."""
    import torch
    from meanfield.backends import get_backend
    from meanfield.losses import get_loss
    be, de = get_backend(name), get_backend("dense")
    act = parts.act
    a, w, b, X = parts.a, parts.w, parts.b, data.X[None]
    js = torch.arange(0, data.n, max(1, data.n // 512))[:512]
    is_ = torch.arange(0, parts.m, max(1, parts.m // 512))[:512]
    d64 = lambda t: t.to(torch.float64)  # noqa: E731
    f = be.outputs(act, a, w, b, X[:, js])
    f_ref = de.outputs(act, d64(a), d64(w), d64(b), d64(X[:, js]))
    g = data.p[None, :, None] * get_loss("logistic").grad(be.outputs(act, a, w, b, X), data.y[None])
    v = be.velocities(act, a[:, is_], w[:, is_], b[:, is_], X, g)
    v_ref = de.velocities(act, d64(a[:, is_]), d64(w[:, is_]), d64(b[:, is_]), d64(X), d64(g))
    errs = [((d64(x) - y).abs().max() / y.abs().max().clamp_min(1e-300)).item()
            for x, y in zip((f,) + tuple(v), (f_ref,) + tuple(v_ref))]
    return max(errs)


def _measure(spec: dict) -> dict:
    """Run one (method, size) in this process; returns time, memory, error."""
    import resource
    import torch
    m, n, d, act = spec["m"], spec["n"], spec["d"], spec["act"]
    dtype = getattr(torch, spec["dtype"])
    device = spec["device"]
    method = spec["method"]
    if method.startswith("limit_"):
        return _measure_limit(spec)
    step = _step_baseline() if method == "baseline" else _step_backend(method)
    tiny = _problem(64, 32, d, act, dtype, device)
    t0 = time.perf_counter()
    step(*tiny)                         # compiles kernels (numba: from the disk cache if there)
    first = time.perf_counter() - t0
    parts, data = _problem(m, n, d, act, dtype, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times, warm = [], 1
    # warm-up at this size: one step, or as many as fit in WARM_S (a process's first steps of
    # 10 ms run 10-30 % slower while the allocator settles); then at least `repeats` steps and
    # MIN_TIMED_S of them (a 10 ms step timed 3 times read 20 % slow), within the budget
    while (len(times) < warm + spec["repeats"] or sum(times[warm:]) < MIN_TIMED_S) \
            and sum(times) <= spec["budget_s"]:
        sync()
        t0 = time.perf_counter()
        step(parts, data)
        sync()
        times.append(time.perf_counter() - t0)
        if len(times) == warm and sum(times) < WARM_S:
            warm += 1
    times = times[warm - 1:]            # times[0] stands for the warm-up below
    t = min(times[1:]) if len(times) > 1 else times[0]
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    err = None
    if method != "baseline":
        parts, data = _problem(m, n, d, act, dtype, device)
        err = _error(method, parts, data)
    return {"time_s": t, "pairs_per_s": m * n / t, "peak_mb": peak, "err": err,
            "first_call_s": first, "steps_timed": max(1, len(times) - 1)}


def _measure_limit(spec: dict) -> dict:
    from meanfield.backends.roofline import fused_limit, gemm_limit
    m, n, d = spec["m"], spec["n"], spec["d"]
    if spec["method"] == "limit_fused":
        act = "relu" if _relu_like(spec["act"]) else spec["act"]
        r = fused_limit(m, n, repeats=spec["repeats"] + 2, min_time=MIN_TIMED_S, d=max(d, 2),
                        act=act)
        t = r["time_s"]
    else:
        r = gemm_limit(m, n, d, spec["dtype"], repeats=spec["repeats"])
        t = r["time_s"]
    return {"time_s": t, "pairs_per_s": m * n / t, "peak_mb": 0.0, "err": None,
            "first_call_s": None, "steps_timed": spec["repeats"], "gflops": r.get("gflops")}


def _relu_like(act: str) -> bool:
    """Cheap and 1-homogeneous numba code: the relu fused limit is its bar."""
    from meanfield.activations import get_activation
    a = get_activation(act)
    return a.homogeneous and a.numba is not None and a.numba.cheap


def _limit_for(d: int, act: str) -> Optional[str]:
    """The relevant limit of a grid point: fused (relu-like at d <= 16; any other activation with
    float32 numba code at d <= 2, with its own arithmetic inlined) or matrix products (d >= 32)."""
    from meanfield.activations import get_activation
    if d >= 32:
        return "limit_gemm"
    if _relu_like(act):
        return "limit_fused" if d <= 16 else None
    nb = get_activation(act).numba
    return "limit_fused" if d <= 2 and nb is not None else None


def _in_subprocess(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-c", "import json,sys; from meanfield.bench import _measure; "
           "print('@@' + json.dumps(_measure(json.loads(sys.argv[1]))))", json.dumps(spec)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timeout {timeout:.0f}s"}
    for line in r.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    return {"skipped": "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:120]}


# ----------------------------------------------------------------------------- public API
def _methods(device: str, backends: Optional[Sequence[str]]) -> list[str]:
    from meanfield.backends import get_backend
    names = list(backends) if backends else (["numba", "dense"] if device == "cpu"
                                             else ["keops", "dense"])
    ok = []
    for nm in names:
        try:
            get_backend(nm)
            ok.append(nm)
        except ValueError:
            pass
    return ok


def run_bench(grid: Sequence[tuple] = DEFAULT_GRID, *, dtype: str = "float32", device: str = "cpu",
              backends: Optional[Sequence[str]] = None, baseline: bool = True, repeats: int = 3,
              budget_s: float = 20.0, timeout_s: float = 600.0, out: Optional[str] = None,
              limits: bool = True, echo=print) -> list[dict]:
    """Time one full flow step for every backend and the baseline over a grid of sizes.

    Args:
        grid: (m, n, d, activation) tuples.
        dtype: ``float32`` or ``float64``.
        device: ``cpu`` or ``cuda``.
        backends: backend names (default: numba and dense on CPU, keops and dense on CUDA; those
            not available here are left out).
        baseline: also time the torch-autograd baseline.
        repeats: timed steps per measurement (the best is reported) after one warm-up step.
        budget_s: stop repeating once a measurement has used this many seconds.
        timeout_s: wall-clock limit of one measurement's subprocess.
        out: CSV file to write (one row per size and method).
        limits: also measure the machine's limit for each size (``limit_fused`` at d <= 16,
            ``limit_gemm`` at d >= 32) and report each method's fraction of it.
        echo: where the table lines go (``print``; ``None`` for silence).

    Returns:
        One dict per (size, method): m, n, d, act, method, time_s, pairs_per_s, peak_mb, err,
        ratio (baseline time / this time), first_call_s, skipped, frac_limit (limit time / this
        time).
    """
    echo = echo or (lambda *_: None)
    methods = _methods(device, backends)
    info = machine()
    echo("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    echo(f"one step = outputs + velocities + Euler update; logistic loss; {dtype}; {device}")
    echo(f"{'m':>9} {'n':>7} {'d':>3} {'act':>10} {'method':>11} {'s/step':>9} {'pairs/s':>9} "
         f"{'peak MB':>8} {'x base':>7} {'err':>8} {'of limit':>8}")
    rows = []
    for (m, n, d, act) in grid:
        todo = methods[:1] if m * n > BIG else methods
        # numba's per-pair loop over d: 40x slower than dense at d = 64, minutes a step at 784
        todo = [t for t in todo if not (t == "numba" and d > NUMBA_MAX_D)]
        todo = todo + (["baseline"] if baseline and m * n <= BIG else [])
        lim = _limit_for(d, act) if limits else None
        todo = todo + ([lim] if lim else [])
        res = {}
        for meth in todo:
            spec = dict(m=m, n=n, d=d, act=act, dtype=dtype, device=device, method=meth,
                        repeats=repeats, budget_s=budget_s)
            res[meth] = _in_subprocess(spec, timeout_s)
        tb = res.get("baseline", {}).get("time_s")
        tl = res.get(lim, {}).get("time_s") if lim else None
        for meth in methods + (["baseline"] if baseline else []) + ([lim] if lim else []):
            if meth not in res:
                r = {"skipped": "m n > 2e9: baseline needs > 24 GB" if meth == "baseline"
                     else f"d > {NUMBA_MAX_D}: auto never picks it" if meth == "numba"
                     and d > NUMBA_MAX_D else "m n > 2e9: fastest backend only"}
            else:
                r = res[meth]
            row = dict(m=m, n=n, d=d, act=act, dtype=dtype, device=device, method=meth,
                       time_s=r.get("time_s"), pairs_per_s=r.get("pairs_per_s"),
                       peak_mb=r.get("peak_mb"), err=r.get("err"),
                       ratio=(tb / r["time_s"]) if tb and r.get("time_s") else None,
                       first_call_s=r.get("first_call_s"), skipped=r.get("skipped", ""),
                       frac_limit=(tl / r["time_s"]) if tl and r.get("time_s") else None)
            rows.append(row)
            if row["time_s"] is None:
                echo(f"{m:>9} {n:>7} {d:>3} {act:>10} {meth:>11}   skipped ({row['skipped']})")
            else:
                echo(f"{m:>9} {n:>7} {d:>3} {act:>10} {meth:>11} {row['time_s']:>9.4f} "
                     f"{row['pairs_per_s']:>9.2e} {row['peak_mb']:>8.1f} "
                     f"{(row['ratio'] or float('nan')):>7.2f} "
                     f"{('%.1e' % row['err']) if row['err'] is not None else '-':>8} "
                     f"{('%.0f%%' % (100 * row['frac_limit'])) if row['frac_limit'] else '-':>8}")
    if out:
        with open(out, "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]) + list(info))
            wr.writeheader()
            for row in rows:
                wr.writerow({**row, **info})
        echo(f"wrote {out}")
    return rows


def run_batched(*, systems: int = 64, m: int = 1000, n: int = 100, d: int = 2, act: str = "relu",
                dtype: str = "float32", backend: str = "numba", repeats: int = 5,
                echo=print) -> dict:
    """Step ``systems`` independent systems as one batch vs one at a time, same backend.

    Returns:
        dict with ``batched_s``, ``sequential_s`` (per step of all systems) and ``speedup``.
    """
    import torch
    from dataclasses import replace
    echo = echo or (lambda *_: None)
    dt = getattr(torch, dtype)
    parts, data = _problem(m, n, d, act, dt, "cpu", batch=systems)
    singles = [parts.select(i) for i in range(systems)]
    singles = [replace(p, a=p.a.clone(), w=p.w.clone(), b=p.b.clone()) for p in singles]
    step = _step_backend(backend)

    def best(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    tb = best(lambda: step(parts, data))
    ts = best(lambda: [step(p, data) for p in singles])
    res = {"systems": systems, "m": m, "n": n, "d": d, "backend": backend, "batched_s": tb,
           "sequential_s": ts, "speedup": ts / tb}
    echo(f"{systems} systems of m={m}, n={n}, d={d}, {act}, {dtype}, backend {backend}: "
         f"batched {tb * 1e3:.2f} ms/step, one at a time {ts * 1e3:.2f} ms/step, "
         f"speedup {ts / tb:.1f}x")
    return res


def _parse_grid(text: str) -> list[tuple]:
    """``m,n,d[,act];...`` -> [(m, n, d, act)], every field checked (ValueError naming it)."""
    from meanfield.activations import get_activation
    grid = []
    for item in (t.strip() for t in text.split(";") if t.strip()):
        parts = [p.strip() for p in item.split(",")]
        if len(parts) not in (3, 4):
            raise ValueError(f"--grid entry {item!r}: expected m,n,d or m,n,d,activation "
                             "(e.g. '1e5,1e3,2,relu')")
        try:
            m, n, d = (float(p) for p in parts[:3])
        except ValueError:
            raise ValueError(f"--grid entry {item!r}: m, n and d must be numbers") from None
        if not all(v >= 1 and v == int(v) for v in (m, n, d)):
            raise ValueError(f"--grid entry {item!r}: m, n and d must be whole numbers >= 1")
        act = parts[3] if len(parts) == 4 else "relu"
        get_activation(act)                 # unknown: ValueError listing the known ones
        grid.append((int(m), int(n), int(d), act))
    if not grid:
        raise ValueError("--grid has no entries")
    return grid


def _check_args(args) -> None:
    """The options that would otherwise fail late (or run something else): ValueError."""
    import torch
    from meanfield.backends import get_backend
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device {args.device!r} is not a device; use cpu or cuda") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"--device {args.device!r}: this machine runs cpu"
                         f"{' and cuda' if torch.cuda.is_available() else ' only (no CUDA GPU)'}")
    for nm in (args.backends.split(",") if args.backends else []):
        get_backend(nm.strip())             # unknown: ValueError listing the known ones
    if args.backends and not _methods(args.device, args.backends.split(",")):
        raise ValueError(f"none of --backends {args.backends} runs here (not installed, or not "
                         f"for device {args.device})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``meanfield bench``: the step benchmark (and the batched one)."""
    ap = argparse.ArgumentParser(prog="meanfield bench", description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="the issue's sizes (m up to 1e6, n 1e4)")
    ap.add_argument("--out", help="CSV file to write")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backends", help="comma-separated backend names (default: by device)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", help="semicolon-separated m,n,d,act entries, e.g. '1e5,1e3,2,relu'")
    ap.add_argument("--batched", action="store_true", help="also run the batched benchmark")
    ap.add_argument("--no-limits", action="store_true", help="skip the machine-limit kernels")
    ap.add_argument("--write-table", nargs="?", const="", metavar="FILE",
                    help="measure the numba/dense crossover and write the table auto reads "
                         "(default: meanfield/backends/auto_table.json), then exit")
    args = ap.parse_args(argv)
    if args.write_table is not None:
        from meanfield.backends.tuning import write_table
        print("wrote", write_table(args.write_table or None))
        return 0
    try:
        grid = _parse_grid(args.grid) if args.grid else (FULL_GRID if args.full else DEFAULT_GRID)
        _check_args(args)
    except ValueError as e:
        ap.error(str(e))
    run_bench(grid, dtype=args.dtype, device=args.device,
              backends=args.backends.split(",") if args.backends else None,
              baseline=not args.no_baseline, repeats=args.repeats, out=args.out,
              limits=not args.no_limits)
    if args.batched or args.full:
        run_batched(dtype=args.dtype)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
