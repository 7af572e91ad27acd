#!/usr/bin/env bash
# CTest k8s_manifests (tests/integration/k8s.cmake): renders deploy/k8s with kubectl kustomize,
# validates every object with kubernetes-models and cross-checks it against claa-server
# (tests/k8s/check_manifests.mjs explains the checks).
#
#   run_test.sh SOURCE_DIR WORK_DIR CLAA_SERVER [CLAA_LOADGEN]
#
# Exit 77 (CTest's skip code here) when kubectl, node or npm is absent. kubectl is not a
# Debian 12 package in a usable version (kubernetes-client is 1.20, whose built-in kustomize
# cannot render these overlays), so docker/install-deps.sh does not install it.
#
# The npm packages are installed with `npm ci` from tests/k8s/package-lock.json into
# WORK_DIR/npm (the build tree, never the source tree), with npm's cache in WORK_DIR/npm-cache
# and --prefer-offline, so only the first run downloads. `npm ci` reruns only when the lock
# file changed since the last install (a stamp in node_modules records its hash).
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: run_test.sh SOURCE_DIR WORK_DIR CLAA_SERVER [CLAA_LOADGEN]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
work=$2
server=$3
loadgen=${4:-}
here="$src/tests/k8s"

kubectl=${KUBECTL:-$(command -v kubectl || true)}
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found: the manifest test needs Node.js and npm (kubernetes-models)"
    exit 77
  fi
done
if [[ -z $kubectl ]]; then
  echo "SKIP: kubectl not found: install kubectl (>= 1.27, with kustomize v5) to render deploy/k8s"
  exit 77
fi
kubectl_version=$("$kubectl" version --client 2>/dev/null | tr '\n' ' ' || true)
echo "kubectl: $kubectl ($kubectl_version)"
# The overlays use kustomize v4+ fields (labels, patches with targets); kubectl embeds
# kustomize v4+ since 1.21 and prints its version since then.
if ! grep -Eq 'Kustomize Version: v([4-9]|[1-9][0-9])\.' <<<"$kubectl_version"; then
  echo "SKIP: $kubectl has no kustomize v4 or later built in (kubectl >= 1.21 does)"
  exit 77
fi
echo "node: $(node --version), npm: $(npm --version 2>/dev/null)"

mkdir -p "$work/npm" "$work/npm-cache"
lock_hash=$(sha256sum "$here/package-lock.json" "$here/package.json" | sha256sum | cut -d' ' -f1)
stamp="$work/npm/node_modules/.claa-lock-sha256"
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
  cp "$here/package.json" "$here/package-lock.json" "$work/npm/"
  start=$(date +%s)
  if ! (cd "$work/npm" && npm ci --cache "$work/npm-cache" --prefer-offline --no-audit --no-fund \
          --loglevel=error); then
    echo "FAIL: npm ci in $work/npm failed (is the npm registry reachable? the cache is $work/npm-cache)"
    exit 1
  fi
  echo "$lock_hash" > "$stamp"
  echo "npm ci: $(( $(date +%s) - start )) s"
else
  echo "npm ci: node_modules up to date with package-lock.json (cached in $work/npm)"
fi

exec node "$here/check_manifests.mjs" --source_dir="$src" --modules_dir="$work/npm" \
  --kubectl="$kubectl" --server="$server" ${loadgen:+--loadgen="$loadgen"} --work_dir="$work/run"
