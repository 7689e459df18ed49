#!/usr/bin/env bash
# Python environment of bench/cpu_baseline.py: ONNX (to build the baseline model from the Keras weights) and
# ONNX Runtime (the baseline), in their own venv so the Keras venv's pinned packages stay untouched.
# Idempotent. Usage: bash bench/setup_cpu_baseline.sh [VENV_DIR]   (default /opt/fkb-bench)
set -euo pipefail
VENV=${1:-/opt/fkb-bench}
if ! "$VENV/bin/python" -c "import onnx, onnxruntime, numpy, h5py" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnx onnxruntime numpy h5py
fi
"$VENV/bin/python" -c "import onnx, onnxruntime; print('onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__)"
