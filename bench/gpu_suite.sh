#!/usr/bin/env bash
# The GPU benchmarks, in one run of at most 7 min 40 s (each step is bounded by a timeout);
# their figures go to bench/RESULTS.md. From the repository root, on the device
# machine: source .device/setup.sh && bash bench/gpu_suite.sh OUT_DIR
#   1. a paper-size pair's and a supernet round's TFLOP/s: fp32, bf16, +channels_last,
#      +compile, +CUDA graphs, and a profile of one step (bench/gpu_training.py)
#   2. evaluation samples/s (bench/gpu_metrics.py)
#   3. K = 1, 4, 8 packed trials at quick and paper size, without and then with NVIDIA MPS
#      (bench/gpu_packing.py)
#   4. the quick EAGAN search on the GPU (bench/gpu_searches.py), against its CPU wall in
#      bench/RESULTS.md
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/raygan-gpu-suite}
mkdir -p "$out"
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
step() { echo "== $1"; shift; timeout "$@" 2>&1 | tee -a "$out/suite.log"; }
step "training throughput" 100 python bench/gpu_training.py --size paper --steps 20
step "evaluation" 40 python bench/gpu_metrics.py --samples 5000 --cpu-samples 100 --repeats 1
step "packing, time-sliced" 75 python bench/gpu_packing.py --packs 1,4,8 --seconds 3
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$out/mps-pipe CUDA_MPS_LOG_DIRECTORY=$out/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d
  step "packing, under MPS" 75 python bench/gpu_packing.py --packs 1,4,8 --seconds 3
  echo quit | nvidia-cuda-mps-control
else
  echo "== packing, under MPS: skipped (no nvidia-cuda-mps-control on this machine)"
fi
# 5 min 35 s on an H200 before issue 22: it ends here unfinished unless it got faster
step "quick EAGAN search" 170 python bench/gpu_searches.py --out "$out/searches" --only eagan \
  --timeout 160
