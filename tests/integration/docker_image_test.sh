#!/usr/bin/env bash
# Builds docker/Dockerfile with podman and exercises the image it makes.
#
#   CLAA_DOCKER_TEST=1 bash tests/integration/docker_image_test.sh SOURCE_DIR WORK_DIR
#
# Opt-in (exit 77, "skipped", without CLAA_DOCKER_TEST=1): the image build compiles the whole
# project inside the container, which takes far longer than CI's test budget on two cores.
# Container registries are not reachable here, so both stages build FROM a local Debian 12 image
# ($CLAA_DOCKER_BASE, default localhost/claa-debian12:bookworm; made with debootstrap when
# missing) instead of the nvidia/cuda defaults; the Dockerfile and its commands are the same.
# $CLAA_DOCKER_IMAGE names an already built image to test without rebuilding.
#
# Containers cannot be started on this kind of machine (crun may not set rlimits), so the
# test runs the image's own files the way its ENTRYPOINT and HEALTHCHECK would: chrooted into
# a container's root filesystem, as the image's user, on the host's loopback. It checks the
# image metadata (user, ports, entrypoint, health check), that every binary finds its shared
# libraries from the runtime packages, that the server starts from the entrypoint's arguments,
# answers the health check and serves metrics, that claa-loadgen from the image completes
# requests against it, and that the health check fails once the server is gone.
# Prints 'N passed, N failed'.
set -uo pipefail
SRC=$(cd "${1:?usage: docker_image_test.sh SOURCE_DIR WORK_DIR}" && pwd)
WORK=${2:?usage: docker_image_test.sh SOURCE_DIR WORK_DIR}
SKIP=77
if [[ ${CLAA_DOCKER_TEST:-0} != 1 ]]; then
  echo "SKIP: set CLAA_DOCKER_TEST=1 to build docker/Dockerfile with podman and test the image" \
       "(a full in-container build: tens of minutes on two cores)"
  exit $SKIP
fi
for tool in podman chroot mount; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found (Debian package podman provides podman)"
    exit $SKIP
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (podman --isolation=chroot builds, chroot runs)"
  exit $SKIP
fi
mkdir -p "$WORK"
BASE=${CLAA_DOCKER_BASE:-localhost/claa-debian12:bookworm}
IMAGE=${CLAA_DOCKER_IMAGE:-}
passed=0
failed=0
check() {  # check NAME COMMAND...: runs the command, counts the result
  local name=$1
  shift
  if "$@" >"$WORK/check.log" 2>&1; then
    passed=$((passed + 1))
    echo "[ PASS ] $name"
  else
    failed=$((failed + 1))
    echo "[ FAIL ] $name"
    sed 's/^/    /' "$WORK/check.log" | tail -20
  fi
}

if [[ -z $IMAGE ]]; then
  if ! podman image exists "$BASE"; then
    if ! command -v debootstrap >/dev/null; then
      echo "SKIP: base image $BASE is missing and debootstrap (to make it) is not installed"
      exit $SKIP
    fi
    echo "making $BASE with debootstrap"
    rm -rf "$WORK/rootfs"
    if ! debootstrap --variant=minbase bookworm "$WORK/rootfs" \
        "${CLAA_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1; then
      tail -20 "$WORK/debootstrap.log"
      echo "0 passed, 1 failed"
      exit 1
    fi
    tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
  fi
  IMAGE=localhost/claa-server:test
  echo "building $IMAGE from $BASE (log: $WORK/build.log)"
  start=$(date +%s)
  check "podman build docker/Dockerfile" \
    podman build --isolation=chroot --format docker \
      --ignorefile "$SRC/docker/Dockerfile.dockerignore" \
      --build-arg BUILD_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE" \
      -f "$SRC/docker/Dockerfile" -t "$IMAGE" "$SRC"
  cp "$WORK/check.log" "$WORK/build.log"
  echo "build took $(($(date +%s) - start)) s"
fi

inspect() { podman image inspect --format "$1" "$IMAGE"; }
check "image runs as user 10001" test "$(inspect '{{.Config.User}}')" = "10001:10001"
check "image exposes 50051 and 9464" \
  bash -c "[[ '$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')' == *50051/tcp*9464/tcp* ]]"
check "image has a health check" \
  bash -c "[[ '$(inspect '{{json .Config.Healthcheck.Test}}')' == *claa-healthcheck* ]]"
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
check "entrypoint is claa-server on 0.0.0.0" \
  bash -c "[[ '$entrypoint' == '[\"/usr/local/bin/claa-server\",\"--host=0.0.0.0\"'* ]]"

# A container's root filesystem, entered with chroot (see the header).
CTR=$(podman create "$IMAGE") || { echo "0 passed, 1 failed"; exit 1; }
ROOT=$(podman mount "$CTR")
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  umount "$ROOT/proc" "$ROOT/dev" 2>/dev/null
  podman umount "$CTR" >/dev/null 2>&1
  podman rm -f "$CTR" >/dev/null 2>&1
}
trap cleanup EXIT
mount --bind /proc "$ROOT/proc" && mount --bind /dev "$ROOT/dev"
# Runs a command in the image as its user; chroot and env exec, so a backgrounded run's pid is
# the command's own.
IN_IMAGE=(chroot --userspec=10001:10001 "$ROOT" env -i HOME=/home/claa
          PATH=/usr/local/bin:/usr/bin:/bin)

for bin in claa-server claa-cli claa-loadgen; do
  check "$bin finds every shared library" \
    bash -c "! chroot '$ROOT' ldd /usr/local/bin/$bin | grep -q 'not found'"
done
check "claa-server --help runs" \
  bash -c "chroot --userspec=10001:10001 '$ROOT' /usr/local/bin/claa-server --help 2>&1 |
           grep -q 'Usage: claa-server'"

# The entrypoint's own arguments, then free loopback ports (later flags win).
mapfile -t argv < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' \
  "$entrypoint")
"${IN_IMAGE[@]}" "${argv[@]}" --host=127.0.0.1 --port=0 --metrics_port=0 \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
port="" mport=""
for _ in $(seq 1 120); do
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/server.log")
  mport=$(sed -n 's#.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*#\1#p' "$WORK/server.log")
  [[ -n $port && -n $mport ]] && break
  sleep 0.5
done
check "server starts from the entrypoint's arguments" test -n "$port"
if [[ -n $port ]]; then
  health=$(inspect '{{range .Config.Healthcheck.Test}}{{.}} {{end}}')
  health=${health#CMD }
  check "health check reports SERVING" "${IN_IMAGE[@]}" CLAA_GRPC_PORT="$port" $health
  check "metrics are served" \
    bash -c "python3 -c 'import urllib.request,sys; sys.exit(0 if b\"claa_num_requests_running\" in urllib.request.urlopen(\"http://127.0.0.1:$mport/metrics\", timeout=10).read() else 1)'"
  check "claa-loadgen from the image completes 8 requests" \
    "${IN_IMAGE[@]}" /usr/local/bin/claa-loadgen --target "127.0.0.1:$port" --num_prompts 8 \
      --request_rate inf --random_input_len 16 --random_output_len 4 \
      --result_json /home/claa/result.json
  check "claa-loadgen reports 8 completed requests" \
    python3 -c "import json,sys; r=json.load(open('$ROOT/home/claa/result.json')); sys.exit(0 if r['completed'] == 8 else 1)"
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
  check "health check fails once the server is gone" \
    bash -c "! chroot --userspec=10001:10001 '$ROOT' env CLAA_GRPC_PORT=$port $health"
  check "the server shut down cleanly on SIGTERM" grep -q "shutting down" "$WORK/server.log"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
