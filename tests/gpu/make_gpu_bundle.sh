#!/usr/bin/env bash
# Prepares what the lent GPU machines lack (Ubuntu 24.04 with CUDA, GoogleTest and OpenBLAS, but
# no Abseil), in .devcarry/ (git-ignored; name it in the device tool's `carry`):
#  - .devcarry/gpu_deps: this machine's Abseil (headers, shared libraries, CMake config) as a
#    relocatable prefix, plus the nlohmann-json headers, so run_gpu_checks.sh can configure +
#    build there;
#  - .devcarry/shared/models/stories260K: the test model the GPU model checks compare on;
#  - DEST (default .devcarry/gpu_check): gpu_kernels_check built here (nvcc, no GPU needed) with
#    OpenBLAS and GoogleTest linked statically and the Abseil .so files it needs beside it;
#    cuBLASLt and the C/C++ runtimes come from the target machine. run_gpu_checks.sh
#    --prebuilt DEST runs it without building (and falls back to it if the build fails).
#
# Usage: tests/gpu/make_gpu_bundle.sh [DEST]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-$ROOT/.devcarry/gpu_check}
BUILD=$ROOT/build-gpu-bundle
cmake -S "$ROOT/tests/gpu" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCLAA_GPU_CHECK_STATIC_BLAS=ON >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target gpu_kernels_check
rm -rf "$DEST"
mkdir -p "$DEST/lib"
cp "$BUILD/gpu_kernels_check" "$DEST/"
strip "$DEST/gpu_kernels_check"
# Non-system shared libraries (Abseil); libc, libstdc++, cuBLASLt are the target machine's.
ldd "$BUILD/gpu_kernels_check" | awk '/=> \// {print $3}' | grep -E 'libabsl_' |
  xargs -r -I{} cp -L {} "$DEST/lib/"
du -sh "$DEST"

DEPS=$ROOT/.devcarry/gpu_deps
MULTIARCH=lib/x86_64-linux-gnu
rm -rf "$DEPS"
mkdir -p "$DEPS/include" "$DEPS/$MULTIARCH/cmake"
cp -r /usr/include/absl "$DEPS/include/"
cp -a /usr/$MULTIARCH/libabsl_*.so* "$DEPS/$MULTIARCH/"
# abslTargets.cmake finds its prefix three levels above its own folder: relocatable.
cp -r /usr/$MULTIARCH/cmake/absl "$DEPS/$MULTIARCH/cmake/"
cp -r /usr/include/nlohmann "$DEPS/include/"
du -sh "$DEPS"

# The small real model of ../shared (1.1 MB); run_gpu_checks.sh points CLAA_SHARED_DIR at it.
SHARED_SRC=${CLAA_SHARED_DIR:-$ROOT/../shared}
if [[ -d "$SHARED_SRC/models/stories260K" ]]; then
  rm -rf "$ROOT/.devcarry/shared"
  mkdir -p "$ROOT/.devcarry/shared/models"
  cp -r "$SHARED_SRC/models/stories260K" "$ROOT/.devcarry/shared/models/"
fi
