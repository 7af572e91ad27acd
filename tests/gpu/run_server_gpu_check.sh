#!/usr/bin/env bash
# On a GPU machine: unpacks .devcarry/server_bundle.tar.xz (tests/gpu/make_server_bundle.sh) and
# runs the GPU server test (tests/integration/gpu_server_test.cc: claa-server --device=cuda, tp 1
# and 2, against --device=cpu over gRPC). The test binary has claa-server's build path compiled
# in, so the bundle is placed there.
#
# Usage (device tool, carry .devcarry/server_bundle.tar.xz and .devcarry/shared):
#   tests/gpu/run_server_gpu_check.sh [BUILD_DIR (default /work/main/build-cuda)]
# With CLAA_DISAGG_BENCH_OUT=DIR (two GPUs), it then runs tests/bench/disagg_gpu_bench.py on a
# random-weight 0.55B Llama (tests/bench/make_random_llama.py) and writes its results to DIR.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-/work/main/build-cuda}
export NCCL_NVLS_ENABLE=0
tmp=$(mktemp -d)
tar -C "$tmp" -xJf "$ROOT/.devcarry/server_bundle.tar.xz"
mkdir -p "$BUILD/server" "$BUILD/tests/integration"
cp "$tmp/server_bundle/claa-server" "$tmp/server_bundle/libclaa_cuda_backend.so" "$BUILD/server/"
cp "$tmp/server_bundle/gpu_server_integration_test" "$BUILD/tests/integration/"
export LD_LIBRARY_PATH=$tmp/server_bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CLAA_SHARED_DIR=${CLAA_SHARED_DIR:-$ROOT/.devcarry/shared}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if ldd "$BUILD/server/claa-server" "$BUILD/server/libclaa_cuda_backend.so" | grep "not found"; then
  echo "missing libraries"
  exit 1
fi
"$BUILD/tests/integration/gpu_server_integration_test" --gtest_color=no 2>&1
rc=$?
if [[ -n "${CLAA_DISAGG_BENCH_OUT:-}" ]]; then
  mkdir -p "$CLAA_DISAGG_BENCH_OUT"
  cp "$tmp/server_bundle/claa-loadgen" "$BUILD/server/"
  python3 "$ROOT/tests/bench/make_random_llama.py" --out "$tmp/llama-0.5b" \
    --tokenizer "$CLAA_SHARED_DIR/tokenizers/smollm2-135m/tokenizer.json" || rc=1
  python3 "$ROOT/tests/bench/disagg_gpu_bench.py" --bin "$BUILD/server" --model "$tmp/llama-0.5b" \
    --out "$CLAA_DISAGG_BENCH_OUT" ${CLAA_DISAGG_BENCH_ARGS:-} || rc=1
fi
exit $rc
