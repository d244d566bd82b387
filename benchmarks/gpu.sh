#!/usr/bin/env bash
# The GPU benchmark (benchmarks/gpu.py) on one CUDA machine, from a checkout of this repository.
# Nothing is installed: such machines often reach no package index. Their python3 must already
# hold PyTorch with CUDA, Lightning, torchmetrics, h5py, scikit-image, tifffile, matplotlib and
# rich; livedead itself is imported from this checkout. Arguments go to gpu.py (--steps, --batch).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py "$@"
