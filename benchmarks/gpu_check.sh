#!/usr/bin/env bash
# The GPU checks of meanfield in one run, sized for a 15-minute device lease (about 5 minutes):
#   1. the CUDA tests: KeOps vs dense vs autograd for relu and tanh, float32 and float64, batched
#      once (each KeOps formula compiles in 5-10 s, so the activations are capped at two);
#   2. benchmarks/bench_gpu.py: one full flow step, keops vs dense vs the autograd baseline, at
#      m = 1e6, n = 1e4, d = 2 (target >= 1e11 pairs/s for relu) and one step of m = 1e7, n = 1e5
#      (target < 10 s).
#
# Prepare once, on a machine with pip access, in the repository root (the device has no network;
# its python is 3.12 with torch, numpy, numba, tqdm, scipy, matplotlib, pytest):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl pykeops==2.3 keopscore==2.3 pybind11
# Run it there with `.whl` carried; it writes device.txt, tests.log, bench.csv and bench.log to
# $OUT (or ./gpu_check_out). Every stage has its own time limit, so one slow stage cannot eat
# the lease; the exit status is the first failing stage's
# (1 tests, 2 bench, 3 the big step or a failed wheel install, 4 no CUDA device).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KEOPS_CACHE_FOLDER=${KEOPS_CACHE_FOLDER:-/tmp/keops_cache}
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
status=0
fail() { [ "$status" -ne 0 ] || status=$1; }   # pipefail: a stage fails if its command does
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  python3 -c "import torch, pykeops; print('torch', torch.__version__, 'pykeops', pykeops.__version__,
'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/device.txt"
python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 4)" \
    || { echo "no CUDA device visible to torch: nothing to check here" | tee -a "$OUT/device.txt"; exit 4; }

# 1. CUDA tests (relu and tanh only; the CPU tests already ran in CI)
timeout 200 python3 -m pytest -q -p no:cacheprovider -x -m "not slow" \
    tests/test_backend_keops.py tests/test_flow.py \
    -k "cuda and not sigmoid and not softplus and not smoothstep and not leaky" 2>&1 \
    | tee "$OUT/tests.log" || fail 1

# 2. throughput: the issue's sizes, then the one big step
timeout 120 python3 benchmarks/bench_gpu.py --m 1e6 --n 1e4 --d 2 --repeat 3 \
    --csv "$OUT/bench.csv" 2>&1 | tee "$OUT/bench.log" || fail 2
timeout 90 python3 benchmarks/bench_gpu.py --m 1e7 --n 1e5 --d 2 --repeat 1 \
    --methods keops --csv "$OUT/bench_big.csv" 2>&1 | tee -a "$OUT/bench.log" || fail 3
exit $status
