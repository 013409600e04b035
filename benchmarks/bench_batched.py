"""64 systems of m = 1e3, n = 1e2 stepped together vs one at a time, on the same backend.

Usage::

    python benchmarks/bench_batched.py [--backend numba] [--dtype float32] [--systems 64]
"""

import argparse
import sys

from meanfield.bench import machine, run_batched


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--systems", type=int, default=64)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args(argv)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()))
    run_batched(systems=args.systems, m=args.m, n=args.n, backend=args.backend, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
