#!/usr/bin/env bash
# The MPI part of the GPU benchmark (BENCHMARKS.md: "MPI node-aggregate vs per-rank: on 4 ranks x 512 columns
# sharing one GPU, aggregate <= 0.5 x the per-rank time per step"), for bench/device/run.sh to call:
#
#   bash bench/device/mpi_part.sh [BUILD_DIR [OUT_DIR [SECONDS]]]     # defaults: build-gpu, $OUT, 150
#
# Needs BUILD_DIR/bin/fkb_mpi_bench (configure build-gpu with -DFKB_ENABLE_MPI=ON -DFKB_BUILD_BENCH=ON and build
# the target fkb_mpi_bench; libmpi.so.40 of the build machine's Open MPI 4.1 matches the GPU machine's) and the
# models BUILD_DIR/bench-models/{cbrain,climsim}.h5 (prepare.sh stages them; tests/fixtures are the fallback).
# Runs, for each model, 4 ranks x 512 columns all on cuda:0 (device auto: local_rank % 1 GPU), per-rank and
# node-aggregate interleaved in one fkb_mpi_bench process group, fp32 (and MPI_PRECISIONS="fp32 tf32" if set);
# checks outputs against the CPU before timing. Writes OUT_DIR/mpi_<model>_<precision>.json and .log; prints a
# table last: median ms per step per mode, the ratio node-aggregate / per-rank, and the node-aggregate
# overhead (median over steps of the step time less the leader's h2d + compute + d2h in it). Exit status 0 when every
# run succeeded. Takes about 30-60 s (most of it CUDA context creation in 4 ranks x 2 modes).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
B="${1:-$ROOT/build-gpu}"
OUT_DIR="${2:-${OUT:-$ROOT/bench/results/mpi-$(date -u +%Y%m%dT%H%M%SZ)}}"
BUDGET="${3:-150}"
NP="${MPI_NP:-4}"
NCOL="${MPI_NCOL:-512}"
STEPS="${MPI_STEPS:-200}"
PRECISIONS="${MPI_PRECISIONS:-fp32}"
mkdir -p "$OUT_DIR"
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }

BENCH="$B/bin/fkb_mpi_bench"
if [ ! -x "$BENCH" ]; then
  echo "mpi_part: $BENCH is missing (build target fkb_mpi_bench with -DFKB_ENABLE_MPI=ON -DFKB_BUILD_BENCH=ON)"
  exit 2
fi
MPIRUN="$(command -v mpirun || command -v mpiexec || true)"
if [ -z "$MPIRUN" ]; then echo "mpi_part: no mpirun on PATH"; exit 2; fi
export LD_LIBRARY_PATH="$B/deps:$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # the device machine may run us as root
export FKB_DEVICE=""                                                # device from the node-local rank
export OMP_NUM_THREADS=1
# Ranks spread over the cores, not bound to one (default Open MPI binding for np > 2 is by socket: fine).
MPIFLAGS=(-np "$NP" -x LD_LIBRARY_PATH -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x FKB_DEVICE
  -x OMP_NUM_THREADS)
if [ "$(nproc)" -lt "$NP" ]; then MPIFLAGS+=(--oversubscribe); fi

model_path() {  # name -> file
  local name=$1
  for f in "$B/bench-models/$name.h5" "$ROOT/tests/fixtures/k3_$name.keras"; do
    [ -s "$f" ] && { echo "$f"; return; }
  done
}

RC=0
ROWS=()
for name in cbrain climsim; do
  model="$(model_path "$name")"
  if [ -z "$model" ]; then echo "mpi_part: no $name model"; RC=1; continue; fi
  for prec in $PRECISIONS; do
    if [ "$(left)" -lt 25 ]; then echo "mpi_part: skip $name $prec (budget)"; ROWS+=("$name $prec skipped"); continue; fi
    tag="${name}_${prec}"
    echo "mpi_part: $NP ranks x $NCOL columns, $name ($model), $prec"
    timeout "$(( $(left) - 5 ))" "$MPIRUN" "${MPIFLAGS[@]}" "$BENCH" "$model" --ncol "$NCOL" --device auto \
      --precision "$prec" --modes per-rank,node-aggregate --steps "$STEPS" --warmup 20 --rounds 5 \
      --json "$OUT_DIR/mpi_$tag.json" > "$OUT_DIR/mpi_$tag.log" 2>&1
    rc=$?
    tail -n 4 "$OUT_DIR/mpi_$tag.log"
    if [ $rc -ne 0 ]; then RC=1; ROWS+=("$name $prec failed(rc=$rc)"); continue; fi
    ROWS+=("$(python3 - "$OUT_DIR/mpi_$tag.json" "$name" "$prec" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
m = j["modes"]
p = m["per-rank"]["step_ms"]["median"]
a = m["node-aggregate"]["step_ms"]["median"]
o = m["node-aggregate"].get("overhead_ms", {}).get("median", float("nan"))
dev = m["node-aggregate"]["report"]["per_rank"][0]["device"]
print(f"{sys.argv[2]} {sys.argv[3]} {p:.3f} {a:.3f} {a / p:.3f} {o:.3f} {dev.replace(' ', '_')}")
PY
)")
  done
done

echo
echo "MPI: ${NP} ranks x ${NCOL} columns sharing one GPU, median ms per step (target: node-aggregate/per-rank <= 0.5)"
printf "%-8s %-5s %12s %15s %8s %12s  %s\n" model prec per-rank node-aggregate ratio agg-overhead leader-device
for r in "${ROWS[@]}"; do
  set -- $r
  if [ $# -ge 7 ]; then printf "%-8s %-5s %12s %15s %8s %12s  %s\n" "$1" "$2" "$3" "$4" "$5" "$6" "$7"; else echo "$r"; fi
done
exit $RC
