#!/usr/bin/env bash
# Install the build tree into a fresh prefix, then build outside programs against the MPI layer:
#   1. Fortran: the column_model_mpi example with mpif90 $(pkg-config --cflags --libs fkb_mpi);
#   2. C: tests/mpi/consumer with find_package(fkb) + fkbMpiTargets.cmake;
# and run each under mpiexec with 2 ranks.
# usage: install_test.sh BUILD_DIR WORK_DIR SOURCE_DIR MODEL MPIEXEC CMAKE [MPIF90]
set -euo pipefail
BUILD=$1 WORK=$2 SRC=$3 MODEL=$4 MPIEXEC=$5 CMAKE=$6 MPIF90=${7:-}
rm -rf "$WORK"
mkdir -p "$WORK"
PREFIX="$WORK/prefix"
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log"
FLAGS=(-np 2)
if "$MPIEXEC" --version 2>&1 | grep -q "Open MPI"; then FLAGS+=(--oversubscribe); fi
if [ -n "$MPIF90" ] && [ -f "$PREFIX/include/fkb/fortran/fkb_mpi.mod" ]; then
  export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig:$PREFIX/lib64/pkgconfig"
  # shellcheck disable=SC2046
  "$MPIF90" "$SRC/fortran/examples/column_model_mpi/column_model_mpi.f90" $(pkg-config --cflags --libs fkb_mpi) \
    -o "$WORK/column_model_mpi"
  "$MPIEXEC" "${FLAGS[@]}" "$WORK/column_model_mpi" "$MODEL" node-aggregate 3 | tee "$WORK/fortran.log"
  grep -q "^PASS" "$WORK/fortran.log"
fi
"$CMAKE" -S "$SRC/tests/mpi/consumer" -B "$WORK/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_TYPE=Release > "$WORK/consumer.log"
"$CMAKE" --build "$WORK/consumer" >> "$WORK/consumer.log"
"$MPIEXEC" "${FLAGS[@]}" "$WORK/consumer/consumer" "$MODEL" | tee "$WORK/c.log"
grep -q "^PASS" "$WORK/c.log"
echo "install test: PASS"
