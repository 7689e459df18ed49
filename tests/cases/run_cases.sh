#!/usr/bin/env bash
# CTest wrapper for run_cases.py: run every case of tests/fixtures/cases through the built fkb and real Keras.
#   run_cases.sh FKB ROOT [run_cases.py options]
# Exits 77 (CTest SKIP_RETURN_CODE) when the Keras 3 environment cannot be made (no pip registry).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$(bash "$here/../../scripts/pyenv.sh")"
rc=$?
if [ $rc -ne 0 ] || [ -z "$py" ]; then
  echo "SKIP: Keras 3 could not be installed (scripts/pyenv.sh exit $rc), so the Keras cases were not run"
  exit 77
fi
fkb="$1"
root="$2"
shift 2
KERAS_BACKEND=jax exec "$py" "$here/run_cases.py" --fkb "$fkb" --root "$root" "$@"
