#!/usr/bin/env bash
# Make (once) the Python environments the repository's Python scripts use, and print the interpreter's path.
# FKB itself needs no Python; these are for tests and for making models with real Keras.
#
#   scripts/pyenv.sh                  .venv-keras/     Keras 3 + JAX (CPU), h5py, numpy
#                                     for the Keras round-trip tests (tests/bridge/run_keras_check.sh calls this)
#   scripts/pyenv.sh --tensorflow     .venv-keras-tf/  Keras 3 + TensorFlow + tf-keras, h5py, numpy, pyyaml, at the
#                                     versions that made the committed fixtures (tests/fixtures/README.md), for
#                                     tests/fixtures/make_*.py, fortran/examples/column_model/train.py and
#                                     bench/make_keras_mlp.py. About 2 GB; CPU only.
#   scripts/pyenv.sh [--tensorflow] --dry-run    say what would be created and installed, change nothing
#
# Then e.g.  "$(scripts/pyenv.sh --tensorflow)" tests/fixtures/make_fixtures.py
# The folders can be moved with FKB_KERAS_VENV / FKB_KERAS_TF_VENV. An environment that already imports its
# packages is left as it is. Exit 77 when python3 -m venv or pip fails (no registry: the bridge tests then skip
# with a message), 2 on a bad argument.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
flavour=jax
dry=0
for arg in "$@"; do
  case "$arg" in
    --tensorflow) flavour=tensorflow ;;
    --jax) flavour=jax ;;
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "[pyenv] unknown argument '$arg' (--tensorflow, --dry-run, --help)" >&2; exit 2 ;;
  esac
done

if [ "$flavour" = tensorflow ]; then
  venv="${FKB_KERAS_TF_VENV:-$root/.venv-keras-tf}"
  # The versions tests/fixtures/manifest.json records (Keras 3.15.1 with TensorFlow 2.21.0, tf-keras 2.21.0).
  packages=(tensorflow==2.21.0 tf-keras==2.21.0 keras==3.15.1 h5py numpy pyyaml)
  imports="import keras, tensorflow, tf_keras, h5py, numpy, yaml"
  # A caller's KERAS_BACKEND=jax would make the import check fail (this env has no JAX) and rebuild the venv.
  unset KERAS_BACKEND
else
  venv="${FKB_KERAS_VENV:-$root/.venv-keras}"
  packages=(keras jax h5py numpy)
  # Keras picks its backend at import; without KERAS_BACKEND it would try TensorFlow, which this env lacks.
  export KERAS_BACKEND=jax
  imports="import keras, jax, h5py, numpy"
fi
py="$venv/bin/python"

if [ -x "$py" ] && "$py" -c "$imports" >/dev/null 2>&1; then
  [ "$dry" = 1 ] && echo "[pyenv] $venv exists and imports its packages: nothing to do" >&2
  echo "$py"
  exit 0
fi
if [ "$dry" = 1 ]; then
  echo "[pyenv] would run: python3 -m venv $venv" >&2
  echo "[pyenv] would run: $venv/bin/pip install ${packages[*]}" >&2
  echo "$py"
  exit 0
fi
echo "[pyenv] creating $venv (${packages[*]})" >&2
python3 -m venv "$venv" >&2 || { echo "[pyenv] python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 77; }
if ! "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2; then
  echo "[pyenv] pip could not install ${packages[*]} (registry unreachable?)" >&2
  exit 77
fi
if ! "$py" -c "$imports" >&2; then
  echo "[pyenv] $venv was made but does not import its packages" >&2
  exit 77
fi
echo "$py"
