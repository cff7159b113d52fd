#!/usr/bin/env bash
# GPU check (issue 17): AMP training 2D + 3D (images/s, beside nnU-Net v2 when installed), a 1-process
# torchrun run, sliding-window prediction of a 512 x 512 x 300 CT (time, peak GPU memory) and the
# out-of-memory fallback under a memory cap. Under 8 minutes on one H100.
#   benchmarks/gpu_check.sh [OUT_DIR] [--iterations N] [--workers N] [--nnunet-limit-s S]
# Figures: OUT_DIR/gpu_check.json (default benchmarks/results/gpu_check). Without CUDA: one line, exit 0.
# PYTHON picks the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$root/benchmarks/gpu_check.py" "$@"
