#!/usr/bin/env bash
# Build FKB for the GPU machine on this (GPU-less) machine and stage everything bench/device/run.sh needs
# under build-gpu/, so that one device call can run it (GPU-MACHINE.md, "Build here, carry the build folder").
#
#   bench/device/prepare.sh            # then, on the device:  bash bench/device/run.sh
#
# What it does:
#  * configures and builds build-gpu (Release, sm_90, CUDA on, no MPI/Fortran) through the stable path
#    /tmp/fkb-src -> this checkout, so the paths compiled into the test binaries (fixtures, CLI) are
#    /tmp/fkb-src/...; run.sh points the same symlink at the device's copy of the tree;
#  * copies into build-gpu/deps the shared libraries the GPU machine (Ubuntu 24.04) lacks: yaml-cpp, libzip
#    (the CUDA, HDF5, OpenBLAS, gfortran and system libraries there have the same sonames as here);
#  * stages the benchmark models in build-gpu/bench-models: cbrain (../shared/models/cbrain/stabNN.h5), a
#    climsim-shaped MLP saved by real Keras (bench/make_keras_mlp.py with the interpreter of `scripts/pyenv.sh --tensorflow`), and a copy of
#    ../shared/models for the shared-model parity tests (FKB_SHARED_MODELS).
# The device call then carries: build-gpu/bin build-gpu/lib build-gpu/deps build-gpu/bench-models.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SRC=/tmp/fkb-src
B=build-gpu
JOBS="${JOBS:-2}"
KERAS_PY="${KERAS_PY:-$ROOT/.venv-keras-tf/bin/python}"  # scripts/pyenv.sh --tensorflow makes it
SHARED="${SHARED:-$ROOT/../shared/models}"

ln -sfn "$ROOT" "$SRC"
cd "$SRC"
# MPI (for bench/device/mpi_part.sh, which run.sh calls): on when mpicc is here, unless FKB_PREPARE_MPI=OFF.
MPI=OFF
if [ "${FKB_PREPARE_MPI:-AUTO}" != OFF ] && command -v mpicc > /dev/null; then MPI=ON; fi
cmake -S "$SRC" -B "$SRC/$B" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DFKB_ENABLE_CUDA=ON \
  -DFKB_ENABLE_MPI="$MPI" -DFKB_ENABLE_FORTRAN=OFF -DFKB_BUILD_TESTS=ON -DFKB_BUILD_BENCH="$MPI"
cmake --build "$SRC/$B" -j"$JOBS" --target fkb_cli fkb_backend_tests
if [ "$MPI" = ON ] && cmake --build "$SRC/$B" --target help | grep -q fkb_mpi_bench; then
  cmake --build "$SRC/$B" -j"$JOBS" --target fkb_mpi_bench
else
  echo "prepare: no fkb_mpi_bench target (MPI=$MPI): run.sh will skip the MPI part"
fi

# Shared libraries the GPU machine lacks.
mkdir -p "$B/deps"
rm -f "$B"/deps/*
for lib in $(ldd "$B/bin/fkb" "$B/bin/fkb_backend_tests" "$B/lib/libfkb.so" "$B/lib/libfkb_cuda.so" "$B"/bin/fkb_mpi_bench 2>/dev/null | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libyaml-cpp.so* | libzip.so* | libgtest*.so* | libgmock*.so*) cp -L "$lib" "$B/deps/" ;;
  esac
done

# Benchmark models.
mkdir -p "$B/bench-models"
cp "$SHARED/cbrain/stabNN.h5" "$B/bench-models/cbrain.h5"
if [ ! -s "$B/bench-models/climsim.h5" ]; then
  "$KERAS_PY" bench/make_keras_mlp.py "$B/bench-models/climsim.h5"
fi
rm -rf "$B/bench-models/shared"
mkdir -p "$B/bench-models/shared"
cp -r "$SHARED"/cbrain "$SHARED"/icon-cloudcover "$B/bench-models/shared/" 2>/dev/null || true

echo "staged:"
du -sh "$B/bin" "$B/lib" "$B/deps" "$B/bench-models"
du -sch "$B/bin" "$B/lib" "$B/deps" "$B/bench-models" | tail -1
echo "device call: run(command='bash bench/device/run.sh', carry=[build-gpu/bin, build-gpu/lib, build-gpu/deps, build-gpu/bench-models])"
