#!/usr/bin/env bash
# Fetch, on this (networked) machine, the wheels the GPU machine lacks, into .gpu_wheels/.
# The GPU machine has Python 3.12, torch (CUDA), numba-cuda and scikit-image, and no network:
# carry .gpu_wheels with the run (device tool: carry [".gpu_wheels"]), then `bash bench/gpu_run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .gpu_wheels
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .gpu_wheels xatlas==0.0.11
"$PY" -m pip download --quiet --no-deps -d .gpu_wheels gsplat==1.5.3 jaxtyping wadler-lindig
du -sh .gpu_wheels && ls .gpu_wheels
