#!/usr/bin/env bash
# Install what FKB needs to build and test, only what is missing (idempotent). Debian/Ubuntu.
set -euo pipefail
APT_PACKAGES=(build-essential cmake pkg-config gfortran libhdf5-dev hdf5-tools nlohmann-json3-dev libzip-dev
  libyaml-cpp-dev libopenblas-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libopenmpi-dev openmpi-bin
  python3 python3-venv python3-numpy python3-h5py libnetcdf-dev netcdf-bin libomp-dev
  clang libclang-rt-dev)  # clang + libFuzzer: scripts/fuzz
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[deps] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools for the Keras round-trip tests (Keras 3 + JAX in .venv-keras/, made by scripts/pyenv.sh). Not fatal:
# without a registry those tests skip with a message. FKB_SKIP_PYENV=1 skips it (scripts/demo needs no Python).
# The TensorFlow environment of the fixture and training scripts is made only on request: scripts/pyenv.sh --tensorflow.
if [ "${FKB_SKIP_PYENV:-0}" != "1" ]; then
  bash "$(dirname "$0")/pyenv.sh" >/dev/null || echo "[deps] Keras could not be installed from pip; the Keras round-trip tests will skip"
fi

# fypp (PyPI, the version pinned in scripts/gen_fortran, in .venv-fypp/) for the check that the committed Fortran
# sources are what their templates generate. Not fatal: without a registry the check skips with a message.
bash "$(dirname "$0")/gen_fortran" --install >/dev/null ||
  echo "[deps] fypp could not be installed from pip; the check of the generated Fortran sources will skip"
