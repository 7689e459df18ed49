#!/usr/bin/env bash
# Runs a command in a view of this machine in which the CUDA libraries cannot be found: a private mount
# namespace (`unshare -m` as root, `unshare -rm` otherwise) in which every directory holding libcudart,
# libcublas, libcublasLt or the driver's libcuda is covered by an empty directory. (A system library
# directory, which holds other libraries too, gets each CUDA file covered by an empty file instead.) The
# libraries are found where the dynamic loader would find them: `ldconfig -p` (the ld.so cache), the
# resolution `ldd` gives for FKB_HIDE_CUDA_PROBE (the plugin: its RUNPATH), and the directories in
# FKB_HIDE_CUDA_DIRS (colon list: the toolkit's). Afterwards `ldd FKB_HIDE_CUDA_PROBE` must resolve none of
# them, or the script fails: the view is checked, not assumed.
#
# Usage: hide_cuda.sh COMMAND [ARGS...]      exit 77 when this machine cannot make a mount namespace.
set -euo pipefail

cuda_re='lib(cudart|cublas|cublasLt|cuda|nvidia-ml)\.so'

if [ "${FKB_IN_CUDA_VIEW:-}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then ns=(unshare -m --propagation private); else ns=(unshare -rm --propagation private); fi
  if ! "${ns[@]}" true 2>/dev/null; then
    echo "hide_cuda: this machine cannot make a mount namespace (${ns[*]}): the view without CUDA is not available"
    exit 77
  fi
  FKB_IN_CUDA_VIEW=1 exec "${ns[@]}" "$0" "$@"
fi

# Inside the namespace. Collect the CUDA library files the loader could use.
files=()
while read -r f; do [ -n "$f" ] && files+=("$f"); done < <(
  { ldconfig -p 2>/dev/null | awk '/=>/ {print $NF}'
    if [ -n "${FKB_HIDE_CUDA_PROBE:-}" ]; then ldd "$FKB_HIDE_CUDA_PROBE" 2>/dev/null | awk '/=> \// {print $3}'; fi
    IFS=: read -ra extra <<< "${FKB_HIDE_CUDA_DIRS:-}"
    for d in "${extra[@]}"; do [ -d "$d" ] && ls -d "$d"/lib*.so* 2>/dev/null; done
  } | grep -E "/$cuda_re" | sort -u)
dirs=()
for f in "${files[@]}"; do
  dirs+=("$(dirname "$f")")
  r=$(readlink -f "$f" || true)
  [ -n "$r" ] && dirs+=("$(dirname "$r")")
done
mapfile -t dirs < <(printf '%s\n' "${dirs[@]}" | sort -u)

empty_dir=$(mktemp -d)
empty_file=$(mktemp)
is_system_dir() {
  case "$1" in
    /lib | /lib64 | /usr/lib | /usr/lib64 | /lib/*-linux-gnu | /usr/lib/*-linux-gnu) return 0 ;;
    *) return 1 ;;
  esac
}
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  if is_system_dir "$d"; then
    for f in "$d"/*; do
      if [[ "$(basename "$f")" =~ ^$cuda_re ]] && [ -e "$f" ]; then mount --bind "$empty_file" "$f"; fi
    done
  else
    mount --bind "$empty_dir" "$d"
  fi
done

if [ -n "${FKB_HIDE_CUDA_PROBE:-}" ]; then
  deps=$(ldd "$FKB_HIDE_CUDA_PROBE" 2>&1 || true)
  if echo "$deps" | grep -E "$cuda_re[^ ]* => /" >&2; then
    echo "hide_cuda: CUDA libraries are still found by $FKB_HIDE_CUDA_PROBE in the view" >&2
    exit 1
  fi
fi
exec "$@"
