#!/usr/bin/env bash
# Builds the libFuzzer targets (CMakePresets.json `fuzz`: clang, CLAA_FUZZ=ON, ASan + UBSan) and
# runs each for a fixed time, nice'd, one after the other.
#
#   tests/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET (default 120)] [TARGET...]
#
# TARGET is a directory name under tests/fuzz/corpus (default: all of them). Each run starts
# from the committed seeds (read-only) plus the inputs earlier runs found, kept under
# build-fuzz/fuzz-work/<target>/corpus, and writes its log and any crash, timeout or OOM input
# to build-fuzz/fuzz-work/<target>/. A crash input belongs, once fixed, in
# tests/fuzz/regressions/<target>/, where the gtest suite replays it (tests/unit/fuzz).
# The last line per target summarizes: inputs executed, execs/s, coverage, crashes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
seconds="${1:-120}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  for d in tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

nice -n 10 cmake --preset fuzz
nice -n 10 cmake --build --preset fuzz

work="$root/build-fuzz/fuzz-work"
failed=0
summary=()
for t in "${targets[@]}"; do
  bin="$root/build-fuzz/tests/fuzz/fuzz_$t"
  dir="$work/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  dict_args=()
  case "$t" in
    tokenize_*) dict="tests/fuzz/dicts/tokenize.dict" ;;
    *) dict="tests/fuzz/dicts/$t.dict" ;;
  esac
  [[ -f "$dict" ]] && dict_args=("-dict=$dict")
  echo "== fuzz_$t for ${seconds} s"
  # -timeout: one input running 10 s is a hang worth saving; -rss_limit_mb: a parser that
  # allocates 2 GiB for a few KB of input is a bug too.
  set +e
  nice -n 10 "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict_args[@]}" \
    "$dir/corpus" "tests/fuzz/corpus/$t" >"$dir/log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
  cov=$(grep -oE '(cov|ft): [0-9]+' "$dir/log" | tail -2 | tr '\n' ' ' || true)
  corpus=$(find "$dir/corpus" -type f | wc -l)
  artifacts=$(find "$dir/artifacts" -type f | wc -l)
  line="$t: rc=$rc execs=${execs:-?} exec/s=${rate:-?} ${cov}corpus=$corpus artifacts=$artifacts"
  summary+=("$line")
  if ((rc != 0)); then
    failed=1
    echo "!! fuzz_$t failed (rc=$rc); see $dir/log" >&2
    grep -E '^==[0-9]+==ERROR|SUMMARY|check failed|^(.*): .*Sanitizer' "$dir/log" | head -5 >&2 || true
  fi
done
printf '%s\n' "${summary[@]}"
exit "$failed"
