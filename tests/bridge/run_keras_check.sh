#!/usr/bin/env bash
# CTest: real Keras loads every FKB-written file and reproduces Keras' and FKB's outputs.
#   run_keras_check.sh FIXTURES EXPORT              Keras 3 (JAX backend), every written .keras and .h5
#   run_keras_check.sh FIXTURES EXPORT --tf-keras   tf-keras, the .h5 files written for tf-keras
# Skips (exit 77) only when pip cannot reach its registry.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${3:-}" = "--tf-keras" ]; then
  py="$(bash "$here/../../scripts/pyenv.sh" --tensorflow)"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "SKIP: tf-keras could not be installed from pip, so FKB-written tf-keras files were not checked with it"
    exit 77
  fi
  KERAS_BACKEND=tensorflow exec "$py" "$here/keras_check.py" "$1" "$2" --fkb-outputs "$2" --tf-keras
fi
py="$(bash "$here/../../scripts/pyenv.sh")"
rc=$?
if [ $rc -ne 0 ]; then
  echo "SKIP: Keras could not be installed from pip, so FKB-written files were not checked with real Keras"
  exit 77
fi
KERAS_BACKEND=jax exec "$py" "$here/keras_check.py" "$1" "$2" --fkb-outputs "$2"
