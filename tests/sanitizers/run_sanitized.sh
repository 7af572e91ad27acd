#!/usr/bin/env bash
# Configures, builds and tests under a sanitizer: the CMakePresets.json presets `asan`
# (AddressSanitizer + UndefinedBehaviorSanitizer) or `tsan` (ThreadSanitizer), in build-asan/ or
# build-tsan/.
#
#   tests/sanitizers/run_sanitized.sh asan|tsan [REGEX | --ci | --integration]
#
# Without REGEX: the unit tests first (fast, most reports are found there), then the
# integration tests, whose claa-server / claa-cli / claa-loadgen children are sanitized too.
# With REGEX: only the tests `ctest -R REGEX` selects. --integration: only the integration tests.
# --ci: the subset CI runs (README's test command), sized for a 2-core CI machine: only the
# unit-test executables of the code that sees untrusted bytes or keeps the books are built
# (CI_TARGETS below: the fuzz corpus and crash replay over the safetensors / config.json /
# tokenizer / request parsers, the model loader, tokenizer, sampling, scheduler and KV handoff,
# request conversion and the security checks), and their tests run (the other executables'
# placeholders are excluded). JOBS (default 2) sets build and test
# parallelism; everything runs under `nice`, since sanitized builds are slow on a shared machine.
#
# Every sanitized process (test binaries and the servers they spawn, which may be killed before
# their stderr is read) writes its reports to build-<kind>/sanitizer-logs/report.<pid>; the run
# fails if any report exists, even when every test passed.
#
# Sanitized code runs several times slower (ThreadSanitizer 5-15x, AddressSanitizer 2-3x), so
# the run exports CLAA_TEST_TIMEOUT_SCALE (default 10 for tsan, 3 for asan; a value already in
# the environment wins): the integration tests multiply their waits and deadlines by it, pass
# the servers correspondingly longer router / worker deadlines and KV leases
# (tests/integration/timeout_scale.h), and ctest's TIMEOUTs are configured with the same factor.
# To run ctest by hand in a sanitizer build, export the same CLAA_TEST_TIMEOUT_SCALE first.
set -euo pipefail

kind="${1:-}"
regex="${2:-}"
CI_TARGETS=(fuzz_regression_test claa_model_test claa_tokenizer_tests claa_sampling_test
  scheduler_test handoff_test request_convert_test security_test)
ci=0
integration_only=0
if [[ "$regex" == --ci ]]; then
  ci=1
  regex=""
elif [[ "$regex" == --integration ]]; then
  integration_only=1
  regex=""
fi
if [[ "$kind" != asan && "$kind" != tsan ]]; then
  echo "usage: $0 asan|tsan [ctest -R regex | --ci | --integration]" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
jobs="${JOBS:-2}"
build="build-$kind"
logs="$root/$build/sanitizer-logs"

case "$kind" in
  tsan) default_scale=10 ;;
  asan) default_scale=3 ;;
esac
export CLAA_TEST_TIMEOUT_SCALE="${CLAA_TEST_TIMEOUT_SCALE:-$default_scale}"
echo "== $kind: CLAA_TEST_TIMEOUT_SCALE=$CLAA_TEST_TIMEOUT_SCALE"

nice -n 10 cmake --preset "$kind" -DCLAA_TEST_TIMEOUT_SCALE="$CLAA_TEST_TIMEOUT_SCALE"
if ((ci)); then
  nice -n 10 cmake --build --preset "$kind" -j "$jobs" --target "${CI_TARGETS[@]}"
else
  nice -n 10 cmake --build --preset "$kind" -j "$jobs"
fi

rm -rf "$logs"
mkdir -p "$logs"
# Appended to ASAN_OPTIONS / UBSAN_OPTIONS / TSAN_OPTIONS by the test presets.
export CLAA_SANITIZER_OPTIONS="log_path=$logs/report"

status=0
# Each ctest run's full output (-V: every test's stdout and stderr, including what the servers
# it spawned printed) goes to $logs/ctest-<name>.log; the console gets ctest's summary.
run_ctest() {
  local name="$1"
  shift
  local start=$SECONDS
  nice -n 10 ctest --preset "$kind" -j "$jobs" -V "$@" >"$logs/ctest-$name.log" 2>&1 || status=1
  grep -E '^[0-9]+/[0-9]+ Test|tests passed|^\s+[0-9]+ - ' "$logs/ctest-$name.log" |
    grep -vE 'Passed' || true
  echo "== ctest $name ($*): $((SECONDS - start)) s; full output in $logs/ctest-$name.log"
}
if ((ci)); then
  # Executables outside the subset show up as gtest_discover_tests' "<target>_NOT_BUILT"
  # placeholders (and eval's add_test entries need tools the subset does not build).
  run_ctest ci -L '^unit$' -E '(_NOT_BUILT$|^eval\.)'
elif [[ -n "$regex" ]]; then
  run_ctest selected -R "$regex"
else
  # Labels from tests/CMakeLists.txt: one per folder under tests/.
  ((integration_only)) || run_ctest unit -L '^unit$'
  run_ctest integration -L '^integration$'
fi

# Reports of processes whose failure no test noticed: report files (ASan, TSan honour log_path)
# and report lines in the captured output (GCC's UBSan runtime ignores log_path).
shopt -s nullglob
reports=("$logs"/report.*)
if ((${#reports[@]} > 0)); then
  echo "== ${#reports[@]} sanitizer report file(s) under $logs:" >&2
  for r in "${reports[@]}"; do
    echo "---- $r" >&2
    head -n 60 "$r" >&2
  done
  status=1
fi
pattern='runtime error:|ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|ThreadSanitizer: reported'
if grep -lE "$pattern" "$logs"/ctest-*.log >/dev/null 2>&1; then
  echo "== sanitizer reports in the test output:" >&2
  grep -hE -A12 "$pattern" "$logs"/ctest-*.log | head -n 120 >&2
  status=1
fi
if ((status == 0)); then
  echo "== $kind: all selected tests passed, no sanitizer reports"
fi
exit "$status"
