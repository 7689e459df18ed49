#!/usr/bin/env bash
# Make (once) the Python environment the bridge tests use: Keras 3 with the JAX CPU backend, in .venv-keras/.
# Prints the interpreter's path. Exit 77 when pip cannot reach its registry (the tests then skip with a message).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${FKB_KERAS_VENV:-$root/.venv-keras}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c "import keras, jax, h5py, numpy" >/dev/null 2>&1; then
  echo "$py"
  exit 0
fi
echo "[pyenv] creating $venv (keras, jax[cpu], h5py, numpy)" >&2
python3 -m venv "$venv" >&2 || { echo "[pyenv] python3 -m venv failed" >&2; exit 77; }
if ! "$venv/bin/pip" install -q --disable-pip-version-check keras jax h5py numpy >&2; then
  echo "[pyenv] pip could not install keras/jax (registry unreachable?)" >&2
  exit 77
fi
echo "$py"
