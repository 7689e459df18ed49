#!/usr/bin/env bash
# Everything FKB measures on the GPU machine, in ONE device call (GPU-MACHINE.md, BENCHMARKS.md):
#   1. the GPU tests (build-gpu/bin/fkb_backend_tests: Keras parity of every fixture on CUDA, per-op CUDA vs
#      CPU, precision modes with their errors, f64, device pointers, graphs, OOM fallback);
#   2. `fkb bench --device cuda` on cbrain and climsim over the BENCHMARKS.md batch sizes in fp32, tf32 and
#      bf16, host-to-host and --device-resident;
#   3. the PyTorch baseline (bench/device/torch_baseline.py: eager and CUDA graph, same precisions, h2h
#      pinned and pageable) in the same call;
#   4. the MPI part (bench/device/mpi_part.sh: node-aggregate vs per-rank, 4 ranks on one GPU) when built;
#   5. the ratio table (bench/device/report.py), printed last; results.json and time_vs_batch.png.
#
# Prepare on the build machine first:  bench/device/prepare.sh
# Then, with the device `run` tool:
#   run(command="bash bench/device/run.sh", timeout_s=600,
#       carry=["build-gpu/bin", "build-gpu/lib", "build-gpu/deps", "build-gpu/bench-models"])
# Results go to $OUT (the device tool's output folder; bench/results/device-DATE when run by hand).
# The script watches a deadline (FKB_RUN_BUDGET_S, default 540 s) and skips what would not fit, saying so.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
BUDGET="${FKB_RUN_BUDGET_S:-540}"
OUT="${OUT:-$ROOT/bench/results/device-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/fkb-bench.XXXXXX)"
B="$ROOT/build-gpu"
LOG="$OUT/run.log"
PY="${PYTHON:-python3}"

log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }

# The test binaries were built through /tmp/fkb-src (prepare.sh): point it at this copy of the tree.
ln -sfn "$ROOT" /tmp/fkb-src
export LD_LIBRARY_PATH="$B/deps:$B/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export FKB_SHARED_MODELS="$B/bench-models/shared"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-16}"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) logical)"
  echo "fkb tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$WORK/machine.txt"
cat "$WORK/machine.txt" | tee -a "$LOG"

if [ ! -x "$B/bin/fkb" ] || [ ! -x "$B/bin/fkb_backend_tests" ]; then
  log "build-gpu/bin is missing: run bench/device/prepare.sh here first and carry build-gpu/{bin,lib,deps,bench-models}"
  exit 2
fi
# The CUDA plugin (lib/libfkb_cuda.so) links the CUDA libraries; libfkb and fkb do not.
missing=$(ldd "$B/bin/fkb" "$B/bin/fkb_backend_tests" "$B/lib/libfkb_cuda.so" 2>&1 | grep "not found" | sort -u)
if [ -n "$missing" ]; then log "missing shared libraries (add them to build-gpu/deps in prepare.sh):"; echo "$missing" | tee -a "$LOG"; fi

# ---------------------------------------------------------------------------------------------------------------------
# 1. GPU tests
log "GPU tests"
timeout 240 "$B/bin/fkb_backend_tests" --gtest_color=no > "$OUT/tests.log" 2>&1
TEST_RC=$?
grep -E "^\[  (PASSED|FAILED) \]|tests ran|\[ precision\]|\[ times|\[ oom|\[ cuda" "$OUT/tests.log" | tail -150 | tee -a "$LOG"
log "GPU tests exit code $TEST_RC"

# ---------------------------------------------------------------------------------------------------------------------
# 2. fkb bench, in priority order while the budget lasts
CBRAIN="$B/bench-models/cbrain.h5"
CLIMSIM="$B/bench-models/climsim.h5"
CBRAIN_BATCHES="128,512,2048,8192,32768,131072,524288"
CLIMSIM_BATCHES="128,512,2048,8192,32768,131072"
ITERS="${FKB_BENCH_ITERS:-20}"
WARMUP="${FKB_BENCH_WARMUP:-3}"
SKIPPED=()

fkb_bench() {  # name model batches precision mode(h2h|dev) min_seconds_left [variant: fused = FKB's own GEMM]
  local name=$1 model=$2 batches=$3 prec=$4 mode=$5 need=$6 variant=${7:-}
  local tag="$prec${variant:+-$variant}"
  if [ "$(left)" -lt "$need" ]; then SKIPPED+=("fkb $name $tag $mode"); log "skip fkb $name $tag $mode (budget)"; return; fi
  local extra=()
  [ "$mode" = dev ] && extra=(--device-resident)
  log "fkb bench $name $tag $mode"
  env ${variant:+FKB_CUDA_GEMM=$variant} timeout "$(( $(left) - 20 ))" "$B/bin/fkb" bench "$model" --device cuda \
    --precision "$prec" --batch "$batches" --warmup "$WARMUP" --iters "$ITERS" "${extra[@]}" \
    --json "$WORK/fkb_${name}_${tag}_${mode}.json" >> "$LOG" 2>&1 || log "fkb bench $name $tag $mode failed (exit $?)"
}

torch_bench() {  # need
  if [ "$(left)" -lt "$1" ]; then SKIPPED+=("torch baseline"); log "skip the PyTorch baseline (budget)"; return; fi
  log "PyTorch baseline"
  timeout "$(( $(left) - 20 ))" "$PY" "$HERE/torch_baseline.py" --model "cbrain=$CBRAIN:$CBRAIN_BATCHES" \
    --model "climsim=$CLIMSIM:$CLIMSIM_BATCHES" --iters "$ITERS" --warmup "$WARMUP" --out "$WORK/torch.json" \
    >> "$LOG" 2>&1 || log "PyTorch baseline failed (exit $?)"
}

fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" fp32 h2h 120
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" fp32 h2h 110
torch_bench 100
fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" tf32 h2h 60
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" tf32 h2h 55
fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" bf16 h2h 50
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" bf16 h2h 45
# The MPI part (bench/device/mpi_part.sh, owned by the MPI layer): 4 ranks x 512 columns on one GPU.
if [ -x "$B/bin/fkb_mpi_bench" ] && [ -f "$HERE/mpi_part.sh" ]; then
  if [ "$(left)" -ge 90 ]; then
    log "MPI part"
    mpi_budget=$(( $(left) - 60 )); [ "$mpi_budget" -gt 150 ] && mpi_budget=150
    mkdir -p "$WORK/mpi"
    OUT="$WORK/mpi" bash "$HERE/mpi_part.sh" "$B" "$WORK/mpi" "$mpi_budget" > "$WORK/mpi_table.txt" 2>&1
    log "MPI part exit code $?"
    tail -n 8 "$WORK/mpi_table.txt" | tee -a "$LOG"
  else
    SKIPPED+=("MPI part"); log "skip the MPI part (budget)"
  fi
else
  log "no build-gpu/bin/fkb_mpi_bench: MPI part not run"
fi
fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" fp32 dev 40
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" fp32 dev 35
fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" tf32 dev 30
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" tf32 dev 30
fkb_bench cbrain "$CBRAIN" "$CBRAIN_BATCHES" bf16 dev 30
fkb_bench climsim "$CLIMSIM" "$CLIMSIM_BATCHES" bf16 dev 30
# FKB's own fused GEMM (bias + activation in one kernel per layer) at the small batches, where launches count.
fkb_bench cbrain "$CBRAIN" "128,512,2048,8192" fp32 h2h 25 fused
fkb_bench climsim "$CLIMSIM" "128,512,2048,8192" fp32 h2h 25 fused

# ---------------------------------------------------------------------------------------------------------------------
# 3. Report: results.json, time_vs_batch.png, the ratio table last
printf '%s\n' "${SKIPPED[@]:-}" > "$WORK/skipped.txt"
log "report"
"$PY" "$HERE/report.py" --dir "$WORK" --tests-rc "$TEST_RC" --out "$OUT" 2>&1 | tee "$OUT/summary.txt"
log "done in $(($(date +%s) - START)) s; results in $OUT"
exit 0
