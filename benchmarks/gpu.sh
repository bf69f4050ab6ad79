#!/usr/bin/env bash
# The accelerator figures in one command, in order of importance, each step under its
# own time limit (TP_LIMIT, SD_LIMIT seconds, so that a slow step leaves time for the
# next):
#   1. throughput.py: bf16 train-step img/s and TFLOP/s of WRN-28-10 b512 and
#      ResNet-50 b256 (H100 plain-jit-step figures to compare: 12,100 and 5,700 img/s);
#   2. compute.py: ResNet-110 per-batch stochastic depth vs none (target <= 0.80x),
#      unscanned and scanned, then the per-stage rows if time is left.
# Usage: bash benchmarks/gpu.sh [OUTDIR]          (default /tmp/flaxcnn-gpu)
#        TINY=1 bash benchmarks/gpu.sh /tmp/x     (a CPU rehearsal at a tiny size)
# An offline machine with jax, flax, optax, orbax and absl but not ml_collections
# installs it from wheels put in .whl/ (see benchmarks/RESULTS.md, "Running on a GPU").
# No TensorFlow is needed on this path.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/flaxcnn-gpu}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
if [ "${TINY:-0}" = 1 ]; then
  models="resnet20_cifar:8" steps=2 batch=4 sd_steps=2 limit=300
else
  models="wrn28_10:512,resnet50:256" steps=50 batch=128 sd_steps=30 limit=600
fi
# Per-step limits (seconds).
tp_limit=${TP_LIMIT:-$limit} sd_limit=${SD_LIMIT:-$limit}
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1 | tee "$out/machine.txt"
timeout "$tp_limit" python3 benchmarks/throughput.py --models="$models" --steps="$steps" \
  2>&1 | tee "$out/throughput.txt"
timeout "$sd_limit" python3 benchmarks/compute.py --skip_compile --batch="$batch" \
  --steps="$sd_steps" 2>&1 | tee "$out/compute.txt"
