#!/usr/bin/env bash
# On the GPU machine: install the carried wheels into a scratch folder and run every GPU check
# (one call, under 8 minutes). Figures land in $OUT/gpu_check.json when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=${TMPDIR:-/tmp}/optimizer-gpu-site
python3 -m pip install --quiet --no-index --no-deps --target "$SITE" .gpu_wheels/*.whl 2>&1 | tail -3
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 470 python3 bench/gpu_check.py "$@" | tee "${OUT:-/tmp}/gpu_check.log"
status=${PIPESTATUS[0]}
tail -1 "${OUT:-/tmp}/gpu_check.log" > "${OUT:-/tmp}/gpu_check.json"
exit "$status"
