#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need. Used by the README's first
# command, by CI (.ci/run) and by the Docker build, so all three build the same way.
set -euo pipefail
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build ccache pkg-config \
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev \
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev \
  libopenblas-dev nlohmann-json3-dev libpcre2-dev libicu-dev libfaiss-dev \
  python3-grpcio python3-protobuf python3-yaml prometheus openssl libssl-dev >/dev/null
echo "install-deps: done"
