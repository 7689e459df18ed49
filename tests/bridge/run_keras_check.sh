#!/usr/bin/env bash
# CTest: real Keras (Keras 3, JAX backend) loads every FKB-written file and reproduces Keras' and FKB's outputs.
# Skips (exit 77) only when pip cannot reach its registry.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$(bash "$here/../../scripts/pyenv.sh")"
rc=$?
if [ $rc -ne 0 ]; then
  echo "SKIP: Keras could not be installed from pip, so FKB-written files were not checked with real Keras"
  exit 77
fi
KERAS_BACKEND=jax exec "$py" "$here/keras_check.py" "$1" "$2" --fkb-outputs "$2"
