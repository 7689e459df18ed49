#!/usr/bin/env bash
# Setup of the plugin tests (tests/plugin/CMakeLists.txt): installs the build into WORK/prefix as a user would,
# makes WORK/noplugin (the same install without libfkb_cuda.so) and WORK/fake (a file named libfkb_cuda.so
# that is no library), and builds the Fortran column-model example against the installed FKB with
# pkg-config only (no extra flags for the plugin), as WORK/column_model.
# Usage: make_view.sh BUILD_DIR WORK_DIR SOURCE_DIR CMAKE [FC]
set -euo pipefail
build=$1 work=$2 src=$3 cmake=$4 fc=${5:-}
rm -rf "$work"
mkdir -p "$work"
"$cmake" --install "$build" --prefix "$work/prefix" > "$work/install.log"
[ -f "$work/prefix/lib/libfkb_cuda.so" ] || { echo "cmake --install did not install lib/libfkb_cuda.so"; exit 1; }
cp -a "$work/prefix" "$work/noplugin"
rm "$work/noplugin/lib/libfkb_cuda.so"
mkdir -p "$work/fake"
echo "not a shared library" > "$work/fake/libfkb_cuda.so"
if [ -n "$fc" ]; then
  flags=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs fkb)
  echo "pkg-config --cflags --libs fkb: $flags"
  mkdir -p "$work/cm"
  cd "$work/cm"
  # shellcheck disable=SC2086
  "$fc" "$src/fortran/examples/column_model/column_physics.f90" "$src/fortran/examples/column_model/column_model.f90" \
    $flags -o "$work/column_model"
fi
echo "view ready in $work"
