#!/usr/bin/env bash
# The GPU checks in one call on a GPU machine: configure + build the standalone check project
# (tests/gpu/CMakeLists.txt: kernels + the engine's CPU runtime sources + gpu_kernels_check, no
# gRPC needed), run every kernel check, optionally the timings and compute-sanitizer.
#
# Usage: tests/gpu/run_gpu_checks.sh [--prebuilt DIR] [--timing] [--sanitize] [--build-dir DIR]
#   --prebuilt DIR  skip the build; run DIR/gpu_kernels_check with DIR/lib on LD_LIBRARY_PATH
#                   (a bundle made by tests/gpu/make_gpu_bundle.sh on a machine that has
#                   Abseil/GoogleTest/OpenBLAS). Used automatically, with a note, when the
#                   build is impossible here and .devcarry/gpu_check holds a bundle.
#   --timing        also run GpuKernelTiming.* (CLAA_GPU_CHECK_TIMING=1)
#   --sanitize      also run the checks under compute-sanitizer memcheck
#   --bench         also run tests/bench/hf_prefill_baseline.py, then gpu_prefill_bench (which
#                   merges the HF numbers); results in $OUT/gpu_prefill.{json,md}, hf_prefill.json.
#                   CLAA_BENCH_ARGS adds benchmark flags (e.g. --lengths=4096 --layers=4).
#   --tp-bench N    also run gpu_prefill_bench split over N GPUs (NCCL tensor parallelism);
#                   results in $OUT/gpu_prefill_tpN.{json,md}; CLAA_TP_BENCH_ARGS adds flags.
#   --kv-transfer-bench  also run gpu_kv_transfer_bench (two GPUs: prefill on 0, NCCL KV handoff,
#                   decode on 1); results in $OUT/gpu_kv_transfer.{json,md}; CLAA_KV_BENCH_ARGS.
#   --attncache-bench  also run gpu_attncache_bench (AttnCache off / inserting miss / hot and
#                   cold hits); results in $OUT/gpu_attncache.{json,md}; CLAA_ATTNCACHE_BENCH_ARGS.
#   --only-bench    skip the checks (a second call on a machine where they just passed).
# Environment: CLAA_GPU_DEPS = extra CMAKE_PREFIX_PATH for Abseil/GTest/OpenBLAS (default: the
# carried .devcarry/gpu_deps when the machine has no Abseil; tests/gpu/make_gpu_bundle.sh makes
# it); CLAA_SHARED_DIR = test data (default ../shared, else the carried .devcarry/shared);
# OUT = folder for logs and the error report (default <build dir>/out).
# Exit status: that of the checks (non-zero if any check failed or nothing could run).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$ROOT/build-gpu-check
PREBUILT=""
TIMING=0
SANITIZE=0
BENCH=0
TP_BENCH=0
KV_BENCH=0
ATTNCACHE_BENCH=0
ONLY_BENCH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prebuilt) PREBUILT=$(cd "$2" && pwd); shift 2 ;;
    --timing) TIMING=1; shift ;;
    --sanitize) SANITIZE=1; shift ;;
    --bench) BENCH=1; shift ;;
    --tp-bench) TP_BENCH=$2; shift 2 ;;
    --kv-transfer-bench) KV_BENCH=1; shift ;;
    --attncache-bench) ATTNCACHE_BENCH=1; shift ;;
    --only-bench) ONLY_BENCH=1; shift ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    -h|--help) sed -n 2,27p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
OUT_DIR=${OUT:-$BUILD_DIR/out}
mkdir -p "$OUT_DIR"
export PATH=$PATH:/usr/local/cuda/bin
# NVLink multicast stays off on the lent machines (the device tool's KINDS.md).
export NCCL_NVLS_ENABLE=0

echo "== machine ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader \
  || echo "nvidia-smi failed"
nvcc --version 2>/dev/null | tail -1 || echo "no nvcc"
cmake --version 2>/dev/null | head -1 || echo "no cmake"
( . /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" )
for dep in absl/base/config.h gtest/gtest.h cblas.h; do
  found=$(find /usr/include /usr/local/include -path "*$dep" 2>/dev/null | head -1)
  echo "header $dep: ${found:-missing}"
done

if [[ -z "${CLAA_GPU_DEPS:-}" && ! -e /usr/include/absl/base/config.h &&
      -d "$ROOT/.devcarry/gpu_deps" ]]; then
  CLAA_GPU_DEPS=$ROOT/.devcarry/gpu_deps
  echo "using carried Abseil in $CLAA_GPU_DEPS"
fi
if [[ -n "${CLAA_GPU_DEPS:-}" ]]; then
  # The executable's RUNPATH does not serve the libraries' own dependencies (absl_status ->
  # absl_strings ...), so the loader needs the folder too.
  export LD_LIBRARY_PATH=$CLAA_GPU_DEPS/lib/x86_64-linux-gnu:$CLAA_GPU_DEPS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

if [[ -z "${CLAA_SHARED_DIR:-}" && ! -d "$ROOT/../shared" && -d "$ROOT/.devcarry/shared" ]]; then
  export CLAA_SHARED_DIR=$ROOT/.devcarry/shared
  echo "using carried test data in $CLAA_SHARED_DIR"
fi

BIN=""
MODEL_BIN=""
NCCL_BIN=""
BENCH_BIN=""
KV_BENCH_BIN=""
ATTNCACHE_BENCH_BIN=""
if [[ -z "$PREBUILT" ]]; then
  echo "== configure + build ($BUILD_DIR)"
  start=$(date +%s)
  if cmake -S "$ROOT/tests/gpu" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       ${CLAA_GPU_DEPS:+-DCMAKE_PREFIX_PATH=$CLAA_GPU_DEPS} >"$OUT_DIR/configure.log" 2>&1 &&
     cmake --build "$BUILD_DIR" -j"$(nproc)" >"$OUT_DIR/build.log" 2>&1; then
    echo "built in $(( $(date +%s) - start )) s"
    BIN=$BUILD_DIR/gpu_kernels_check
    MODEL_BIN=$BUILD_DIR/gpu_model_check
    NCCL_BIN=$BUILD_DIR/gpu_nccl_check
    BENCH_BIN=$BUILD_DIR/gpu_prefill_bench
    KV_BENCH_BIN=$BUILD_DIR/gpu_kv_transfer_bench
    ATTNCACHE_BENCH_BIN=$BUILD_DIR/gpu_attncache_bench
  else
    echo "build failed after $(( $(date +%s) - start )) s; last lines:"
    tail -n 15 "$OUT_DIR/configure.log" "$OUT_DIR/build.log" 2>/dev/null
    if [[ -x "$ROOT/.devcarry/gpu_check/gpu_kernels_check" ]]; then
      echo "falling back to the prebuilt bundle in .devcarry/gpu_check"
      PREBUILT=$ROOT/.devcarry/gpu_check
    else
      exit 1
    fi
  fi
fi
if [[ -n "$PREBUILT" ]]; then
  BIN=$PREBUILT/gpu_kernels_check
  export LD_LIBRARY_PATH=$PREBUILT/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "== prebuilt $BIN"
  if ldd "$BIN" | grep "not found"; then echo "missing libraries"; exit 1; fi
fi

rc=0
if [[ $ONLY_BENCH -eq 0 ]]; then
echo "== checks"
CLAA_GPU_CHECK_REPORT=$OUT_DIR/gpu_check_report.txt "$BIN" --gtest_color=no \
  --gtest_filter='GpuKernelCheck.*' 2>&1 | tee "$OUT_DIR/gpu_check.log"
rc=${PIPESTATUS[0]}
echo "kernel checks exit status: $rc"

if [[ -n "$MODEL_BIN" ]]; then
  echo "== GPU model checks (libclaa_cuda_backend.so via dlopen vs the CPU LlamaModel)"
  CLAA_GPU_MODEL_REPORT=$OUT_DIR/gpu_model_report.txt "$MODEL_BIN" --gtest_color=no 2>&1 |
    tee "$OUT_DIR/gpu_model_check.log"
  mrc=${PIPESTATUS[0]}
  echo "model checks exit status: $mrc"
  [[ $mrc -eq 0 ]] || rc=1
else
  echo "== GPU model checks: not in the prebuilt bundle (build here to run them)"
fi
if [[ -n "$NCCL_BIN" ]]; then
  echo "== NCCL communicator checks (2+ GPUs; skipped on one)"
  "$NCCL_BIN" --gtest_color=no 2>&1 | tee "$OUT_DIR/gpu_nccl_check.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi

fi  # ONLY_BENCH

if [[ $TIMING -eq 1 ]]; then
  echo "== timing"
  CLAA_GPU_CHECK_TIMING=1 "$BIN" --gtest_color=no --gtest_filter='GpuKernelTiming.*' 2>&1 |
    tee "$OUT_DIR/gpu_timing.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi

if [[ $SANITIZE -eq 1 ]]; then
  echo "== compute-sanitizer memcheck"
  if command -v compute-sanitizer >/dev/null; then
    timeout "${CLAA_SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN" --gtest_color=no \
      --gtest_brief=1 --gtest_filter='GpuKernelCheck.*' >"$OUT_DIR/memcheck.log" 2>&1
    mrc=$?
    grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$OUT_DIR/memcheck.log" | tail -n 8
    echo "memcheck exit status: $mrc"
    [[ $mrc -eq 0 ]] || rc=1
  else
    echo "compute-sanitizer not found"
  fi
fi

if [[ $BENCH -eq 1 && -n "$BENCH_BIN" ]]; then
  echo "== HF transformers baseline (same GPU, before our benchmark: it needs the memory)"
  PYTHONUNBUFFERED=1 timeout "${CLAA_HF_TIMEOUT:-240}" python3 "$ROOT/tests/bench/hf_prefill_baseline.py" \
    --out "$OUT_DIR/hf_prefill.json" ${CLAA_HF_ARGS:-} 2>&1 | tee "$OUT_DIR/hf_prefill.log" |
    grep -v -i "warn"
  echo "== GPU prefill benchmark"
  "$BENCH_BIN" --out "$OUT_DIR" --hf_json "$OUT_DIR/hf_prefill.json" ${CLAA_BENCH_ARGS:-} 2>&1 |
    tee "$OUT_DIR/gpu_prefill.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi
if [[ $TP_BENCH -gt 1 && -n "$BENCH_BIN" ]]; then
  echo "== GPU prefill benchmark, tensor parallel over $TP_BENCH GPUs"
  "$BENCH_BIN" --out "$OUT_DIR" --tp "$TP_BENCH" --attention=false ${CLAA_TP_BENCH_ARGS:-} 2>&1 |
    tee "$OUT_DIR/gpu_prefill_tp$TP_BENCH.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi
if [[ $KV_BENCH -eq 1 && -n "$KV_BENCH_BIN" ]]; then
  echo "== KV handoff over NCCL: prefill on GPU 0, decode on GPU 1"
  "$KV_BENCH_BIN" --out "$OUT_DIR" ${CLAA_KV_BENCH_ARGS:-} 2>&1 | tee "$OUT_DIR/gpu_kv_transfer.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi

if [[ $ATTNCACHE_BENCH -eq 1 && -n "$ATTNCACHE_BENCH_BIN" ]]; then
  echo "== AttnCache on the GPU: off / inserting miss / hot and cold hits"
  "$ATTNCACHE_BENCH_BIN" --out "$OUT_DIR" ${CLAA_ATTNCACHE_BENCH_ARGS:-} 2>&1 |
    tee "$OUT_DIR/gpu_attncache.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
fi

echo "== summary: $( [[ $rc -eq 0 ]] && echo PASS || echo FAIL ) (logs in $OUT_DIR)"
exit "$rc"
