#!/usr/bin/env bash
# Soak: one claa-server under claa-loadgen at a steady Poisson rate for DURATION seconds, the
# server's RSS and queue gauges sampled every SAMPLE_S seconds. Writes, under OUT_DIR:
#   samples.csv   t_s, rss_kb, threads, running, waiting, kv_usage, load1 (the host's 1-minute
#                 load average: on a shared machine it tells other work from the server's own)
#   loadgen.json  claa-loadgen --result_json (per-request arrays included)
#   summary.md    requests sent / ok / failed by code, RSS first / last / max and its trend,
#                 TTFT p50 / p99 per minute, the exact commands
# Exit status: 0 when every request succeeded, 1 when any failed, 2 on a setup error.
#
#   tests/soak/run_soak.sh                                  # 600 s, built-in model, 10 req/s
#   DURATION=30 RATE=20 tests/soak/run_soak.sh              # find a sustainable rate first
#   MODEL=../shared/models/stories260K tests/soak/run_soak.sh
#
# Environment: BUILD_DIR (default <source>/build), DURATION (600), RATE (10 req/s), INPUT_LEN
# (128), OUTPUT_LEN (64), RANGE_RATIO (0.5), SAMPLE_S (10), MODEL (empty: the built-in demo
# model), SEED (0), SERVER_ARGS (extra claa-server flags), OUT_DIR (default a new /tmp dir),
# CLAA_TEST_TIMEOUT_SCALE (1; multiplies the start-up wait and the per-request deadline for slow
# builds, as in the integration tests: tests/sanitizers/run_sanitized.sh sets it).
# ctest runs it for 20 s (soak_smoke); the recorded 10-minute run is in docs/reliability.md.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$SRC/build}"
DURATION="${DURATION:-600}"
RATE="${RATE:-10}"
INPUT_LEN="${INPUT_LEN:-128}"
OUTPUT_LEN="${OUTPUT_LEN:-64}"
RANGE_RATIO="${RANGE_RATIO:-0.5}"
SAMPLE_S="${SAMPLE_S:-10}"
MODEL="${MODEL:-}"
SEED="${SEED:-0}"
SERVER_ARGS="${SERVER_ARGS:-}"
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/claa-soak.XXXXXX)}"
SERVER="$BUILD_DIR/server/claa-server"
LOADGEN="$BUILD_DIR/server/loadgen/claa-loadgen"

for b in "$SERVER" "$LOADGEN"; do
  [[ -x "$b" ]] || { echo "run_soak: $b not built (set BUILD_DIR)" >&2; exit 2; }
done
mkdir -p "$OUT_DIR"
# Whole requests at RATE/s over DURATION; the last ones may end a little after it.
NUM_PROMPTS=$(python3 -c "print(max(1, round($RATE * $DURATION)))")
SCALE="${CLAA_TEST_TIMEOUT_SCALE:-1}"
START_POLLS=$(python3 -c "print(round(600 * max(1.0, float('$SCALE'))))")  # of 0.1 s
TIMEOUT_S=$(python3 -c "print(round(120 * max(1.0, float('$SCALE'))))")

server_cmd=("$SERVER" --port=0 --metrics_port=0)
[[ -n "$MODEL" ]] && server_cmd+=("--model=$MODEL")
# shellcheck disable=SC2206  # SERVER_ARGS is a list of flags
[[ -n "$SERVER_ARGS" ]] && server_cmd+=($SERVER_ARGS)
"${server_cmd[@]}" >"$OUT_DIR/server.out" 2>"$OUT_DIR/server.err" &
SERVER_PID=$!
LOADGEN_PID=""
cleanup() {
  [[ -n "$LOADGEN_PID" ]] && kill "$LOADGEN_PID" 2>/dev/null || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

ADDR="" METRICS=""
for _ in $(seq 1 "$START_POLLS"); do
  ADDR=$(sed -n 's/^claa-server: listening on //p' "$OUT_DIR/server.out")
  METRICS=$(sed -n 's|^claa-server: metrics on \(http://.*\)$|\1|p' "$OUT_DIR/server.out")
  [[ -n "$ADDR" && -n "$METRICS" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "run_soak: server exited" >&2; cat "$OUT_DIR/server.err" >&2; exit 2; }
  sleep 0.1
done
[[ -n "$ADDR" ]] || { echo "run_soak: server did not start" >&2; exit 2; }

loadgen_cmd=("$LOADGEN" --target "$ADDR" --num_prompts "$NUM_PROMPTS" --request_rate "$RATE"
  --random_input_len "$INPUT_LEN" --random_output_len "$OUTPUT_LEN"
  --random_range_ratio "$RANGE_RATIO" --seed "$SEED" --timeout_s "$TIMEOUT_S"
  --result_json "$OUT_DIR/loadgen.json")
echo "run_soak: ${server_cmd[*]}" | tee "$OUT_DIR/commands.txt"
echo "run_soak: ${loadgen_cmd[*]}" | tee -a "$OUT_DIR/commands.txt"
"${loadgen_cmd[@]}" >"$OUT_DIR/loadgen.out" 2>"$OUT_DIR/loadgen.err" &
LOADGEN_PID=$!

fetch_metrics() {
  if command -v curl >/dev/null; then
    curl -s --max-time 5 "$METRICS" || true
  else
    python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
      "$METRICS" 2>/dev/null || true
  fi
}
# One sample: elapsed seconds, VmRSS and threads (/proc), the server's queue and KV gauges, the
# host's load average.
sample() {
  local m rss threads
  m=$(fetch_metrics)
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
  gauge() { awk -v n="$1" 'index($1, n) == 1 && (length($1) == length(n) || substr($1, length(n) + 1, 1) == "{") {print $2; exit}' <<<"$m"; }
  echo "$1,$rss,$threads,$(gauge claa_num_requests_running),$(gauge claa_num_requests_waiting),$(gauge claa_kv_cache_usage_perc),$(cut -d' ' -f1 /proc/loadavg)" \
    >>"$OUT_DIR/samples.csv"
}
echo "t_s,rss_kb,threads,running,waiting,kv_usage,load1" >"$OUT_DIR/samples.csv"
SECONDS=0
next=0
while kill -0 "$LOADGEN_PID" 2>/dev/null; do
  if (( SECONDS >= next )); then
    sample "$SECONDS"
    next=$((next + SAMPLE_S))
  fi
  sleep 0.5
done
LOADGEN_STATUS=0
wait "$LOADGEN_PID" || LOADGEN_STATUS=$?
LOADGEN_PID=""
sleep 1
sample "$SECONDS"  # after the load: the server is idle again
[[ $LOADGEN_STATUS -eq 0 ]] || { echo "run_soak: claa-loadgen failed" >&2; cat "$OUT_DIR/loadgen.err" >&2; exit 2; }

python3 - "$OUT_DIR" "$DURATION" "$RATE" <<'EOF'
import csv, json, os, platform, subprocess, sys, datetime
out, duration, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(os.path.join(out, "loadgen.json")))
rows = list(csv.DictReader(open(os.path.join(out, "samples.csv"))))
cmds = open(os.path.join(out, "commands.txt")).read().splitlines()

def pct(xs, p):  # numpy's default (linear interpolation)
    xs = sorted(xs)
    if not xs: return float("nan")
    k = (len(xs) - 1) * p / 100.0
    f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)

n = len(r["success"]); ok = sum(1 for s in r["success"] if s)
codes = {}
for s, e in zip(r["success"], r["errors"]):
    if not s: codes[e.split(":")[0] or "UNKNOWN"] = codes.get(e.split(":")[0] or "UNKNOWN", 0) + 1
rss = [(int(x["t_s"]), int(x["rss_kb"])) for x in rows if x["rss_kb"]]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"): cpu = line.split(":", 1)[1].strip(); break
except OSError: pass
L = []
L.append("# Soak summary\n")
L.append(f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; host: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}")
L.append(f"- Duration {duration:.0f} s at {rate:g} req/s (Poisson); commands:")
L.append("```"); L += [c.replace("run_soak: ", "") for c in cmds]; L.append("```")
L.append(f"- Requests sent {n}, ok {ok}, failed {n - ok}" + (": " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())) if codes else ""))
L.append(f"- Benchmark duration {r.get('duration', 0):.1f} s, throughput {r.get('request_throughput', 0):.2f} req/s, "
         f"{r.get('output_throughput', 0):.1f} output tok/s")
L.append(f"- TTFT overall: p50 {r.get('median_ttft_ms', 0):.1f} ms, p99 {r.get('p99_ttft_ms', 0):.1f} ms; "
         f"E2EL p99 {r.get('p99_e2el_ms', 0):.1f} ms")
if rss:
    first, last = rss[0][1], rss[-1][1]
    mx = max(rss, key=lambda x: x[1])
    # RSS after the first minute (warm-up: pools and allocator arenas fill) against the end.
    warm = [v for t, v in rss if t >= 60] or [v for _, v in rss]
    L.append(f"- RSS: first {first/1024:.1f} MiB, last {last/1024:.1f} MiB, max {mx[1]/1024:.1f} MiB (t={mx[0]} s); "
             f"after the first minute min {min(warm)/1024:.1f} / max {max(warm)/1024:.1f} MiB "
             f"({len(rss)} samples every ~{int(rss[1][0]-rss[0][0]) if len(rss) > 1 else 0} s, samples.csv)")
L.append("\n| minute | requests started | ok | failed | TTFT p50 (ms) | TTFT p99 (ms) | RSS at end of minute (MiB) | max running | max load1 |")
L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
minutes = int(max(r["start_times"]) // 60) + 1 if n else 0
for m in range(minutes):
    idx = [i for i, t in enumerate(r["start_times"]) if m * 60 <= t < (m + 1) * 60]
    tt = [r["ttfts"][i] * 1000 for i in idx if r["success"][i]]
    okm = sum(1 for i in idx if r["success"][i])
    rs = [v for t, v in rss if t <= (m + 1) * 60]
    in_minute = [x for x in rows if m * 60 <= int(x["t_s"]) < (m + 1) * 60]
    run_max = max((float(x["running"] or 0) for x in in_minute), default=float("nan"))
    load_max = max((float(x["load1"] or 0) for x in in_minute), default=float("nan"))
    L.append(f"| {m + 1} | {len(idx)} | {okm} | {len(idx) - okm} | {pct(tt, 50):.1f} | {pct(tt, 99):.1f} | "
             f"{(rs[-1] / 1024) if rs else float('nan'):.1f} | {run_max:.0f} | {load_max:.2f} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(L) + "\n")
print("\n".join(L))
sys.exit(0 if ok == n else 1)
EOF
