#!/usr/bin/env bash
# Packs claa-server with the CUDA backend, the GPU server test, the AttnCache benchmark (its
# accuracy mode runs on the GPU with --device=cuda) and claa-loadgen (the disaggregated serving
# benchmark, tests/bench/disagg_gpu_bench.py), for a lent GPU machine, which
# has CUDA, cuBLAS and NCCL but not gRPC, protobuf, Abseil, prometheus-cpp, FAISS or ICU 72
# (DESIGN.md §5): the binaries plus every non-system shared library they load, compressed to fit
# the device tool's carry limit, as .devcarry/server_bundle.tar.xz (git-ignored).
#
# Usage: tests/gpu/make_server_bundle.sh [BUILD_DIR (default build-cuda: a main build with CUDA)]
# On the GPU machine: tests/gpu/run_server_gpu_check.sh unpacks and runs it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-cuda}
cmake --build "$BUILD" -j"${JOBS:-2}" --target claa-server claa_cuda_backend \
  gpu_server_integration_test claa-bench-attncache claa-loadgen
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/server_bundle/lib"
bins=("$BUILD/server/claa-server" "$BUILD/server/libclaa_cuda_backend.so"
      "$BUILD/tests/integration/gpu_server_integration_test"
      "$BUILD/tests/bench/claa-bench-attncache" "$BUILD/server/loadgen/claa-loadgen")
cp "${bins[@]}" "$STAGE/server_bundle/"
# The C/C++ runtimes, the CUDA libraries (cuBLAS, NCCL, the driver) are the target machine's.
for b in "${bins[@]}"; do ldd "$b" | awk '/=> \// {print $3}'; done | sort -u |
  grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libcuda|libcudart|libcublas[^/]*|libnccl)\.so' |
  xargs -r -I{} cp -L {} "$STAGE/server_bundle/lib/"
mkdir -p "$ROOT/.devcarry"
tar -C "$STAGE" -cJf "$ROOT/.devcarry/server_bundle.tar.xz" server_bundle
du -sh "$STAGE/server_bundle" "$ROOT/.devcarry/server_bundle.tar.xz"
