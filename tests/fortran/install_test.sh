#!/usr/bin/env bash
# Install FKB into a temporary prefix and build programs outside the tree against it:
#   1. gfortran prog.f90 $(pkg-config --cflags --libs fkb)   (no LD_LIBRARY_PATH: the rpath in fkb.pc)
#   2. a CMake project using find_package(fkb) -> fkb::fkb (a C program) and fkb::fortran (a Fortran program)
# Each program compares its predictions with Keras' own outputs for a fixture and fails on a mismatch.
# Usage: install_test.sh BUILD_DIR WORK_DIR TESTS_FORTRAN_DIR DATA_FILE FC CC CMAKE
set -euo pipefail
build=$1 work=$2 src=$3 data=$4 fc=$5 cc=$6 cmake=$7
prefix=$work/prefix
rm -rf "$work"
mkdir -p "$work"
unset LD_LIBRARY_PATH

echo "== cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/fkb/fkb.h include/fkb/runtime.hpp include/fkb/fortran/fkb.mod include/fkb/fortran/fkb_physics.mod \
  lib/libfkb.so lib/libfkb_fortran.so lib/cmake/fkb/fkbConfig.cmake lib/cmake/fkb/fkbConfigVersion.cmake \
  lib/cmake/fkb/fkbTargets.cmake lib/pkgconfig/fkb.pc; do
  [ -e "$prefix/$f" ] || { echo "missing after install: $f"; exit 1; }
done

echo "== pkg-config"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs fkb)
echo "pkg-config --cflags --libs fkb: $flags"
mkdir -p "$work/pc" && cd "$work/pc"
# shellcheck disable=SC2086
"$fc" "$src/fkb_test_util.f90" "$src/test_parity.f90" $flags -o prog
# (ldd's output is kept first: `ldd | grep -q` fails under pipefail when grep exits early.)
deps=$(ldd ./prog)
echo "$deps" | grep -E "libfkb" || true
echo "$deps" | grep -q "$prefix/lib/libfkb_fortran.so" || { echo "prog does not use the installed libfkb_fortran"; exit 1; }
echo "$deps" | grep -q "$prefix/lib/libfkb.so" || { echo "prog does not use the installed libfkb"; exit 1; }
./prog "$data"

echo "== find_package(fkb)"
"$cmake" -S "$src/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_Fortran_COMPILER="$fc" \
  -DCMAKE_C_COMPILER="$cc" -DFKB_TEST_SRC="$src" -DCMAKE_BUILD_TYPE=Release >"$work/consumer.log"
"$cmake" --build "$work/consumer" >>"$work/consumer.log" || { cat "$work/consumer.log"; exit 1; }
"$work/consumer/consumer_c" "$data"
"$work/consumer/consumer_fortran" "$data"
echo "install test passed"
