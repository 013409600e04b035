"""One full mean-field flow step per backend vs the torch-autograd baseline (see meanfield.bench).

Usage::

    python benchmarks/bench_step.py                 # default grid, about 2 minutes on 2 cores
    python benchmarks/bench_step.py --full --out bench.csv   # the issue's sizes
"""

import sys

from meanfield.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
