#!/usr/bin/python3
"""A real Prometheus server scrapes a real claa-server; TTFT quantiles are checked end to end.

Starts claa-server (built-in model, free loopback ports) and /usr/bin/prometheus (Debian
package `prometheus`) from deploy/prometheus/prometheus.yml with a 1 s scrape interval, its own
target and a temporary TSDB. Sends a few dozen streaming Generate calls through the Python
client (server/python/claa_client.py), measuring each TTFT on the client and reading the
server's own TTFT from the `complete` message. Then, through Prometheus's HTTP API:
  - the TTFT histogram's buckets hold exactly the server-reported TTFTs, and the token and
    request counters match the responses' usage;
  - histogram_quantile(0.5, sum by (le) (increase(...))) over a window starting on a sample
    equals the quantile interpolated from those TTFTs;
  - histogram_quantile(0.5, sum by (le) (rate(...[1m]))) is finite and lies within the bucket
    resolution of both the server-reported and the client-measured median (plus the measured
    transport overhead);
  - every query of deploy/grafana/claa-dashboard.json evaluates without error, with data
    for the metrics the server exports today;
  - every rule of deploy/prometheus/alerts.yml is loaded and evaluates without error.
Exits 77 (CTest's skip code here) when /usr/bin/prometheus is absent. Prints 'N passed, N failed'.
"""
import argparse
import bisect
import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from py_harness import Checks, scaled

SKIP = 77
NUM_REQUESTS = 36
CONCURRENCY = 4
PROMPT_LENGTHS = (4, 32, 128, 512)  # spread TTFTs over several buckets
MAX_TOKENS = 4
TTFT = "claa_time_to_first_token_seconds"
# Metrics the dashboard may use before the server exports them (being added this cycle).
PLANNED_METRICS = {"claa_prompt_kept_ratio_bucket", "claa_prompt_kept_ratio_sum",
                   "claa_prompt_kept_ratio_count"}


def die_with_parent():
    """Popen preexec_fn: the child gets SIGKILL when this test dies (a CTest timeout kills the
    test's process only), so no server or Prometheus outlives it."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=scaled(10))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(binary):
    """claa-server on free ports with metrics on; returns (process, grpc address, metrics port)."""
    proc = subprocess.Popen([binary, "--port=0", "--metrics_port=0"], stdout=subprocess.PIPE,
                            text=True, preexec_fn=die_with_parent)
    address, metrics_port = None, None
    deadline = time.time() + scaled(60)
    while time.time() < deadline and (address is None or metrics_port is None):
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"metrics on http://[^:]+:(\d+)/metrics", line)
        if m:
            metrics_port = int(m.group(1))
        if "listening on " in line:
            address = line.strip().split("listening on ")[1]
    if address is None or metrics_port is None:
        stop(proc)
        raise RuntimeError("claa-server did not print its ports")
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc, address, metrics_port


class Prometheus:
    """A Prometheus server on a free loopback port with a fresh TSDB, and its query API."""

    def __init__(self, binary, config_path, work_dir):
        self.proc = None
        self.log_path = os.path.join(work_dir, "prometheus.log")
        tsdb = os.path.join(work_dir, "tsdb")
        for _ in range(3):  # another process may take the free port before Prometheus binds it
            shutil.rmtree(tsdb, ignore_errors=True)
            self.port = free_port()
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen(
                    [binary, f"--config.file={config_path}", f"--storage.tsdb.path={tsdb}",
                     f"--web.listen-address=127.0.0.1:{self.port}",
                     "--storage.tsdb.retention.time=1h"],
                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            if self.wait_ready(30):
                return
            stop(self.proc)
        raise RuntimeError(f"prometheus did not become ready; log:\n{self.log_tail()}")

    def log_tail(self, lines=30):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        return False

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400/422 carry a JSON error body
            return json.load(e)

    def query(self, expr, at=None):
        """Instant query; returns (result list or None, error string)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.api("query", **params)
        if body.get("status") != "success":
            return None, f"{body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"], ""

    def scalar(self, expr, at=None):
        """The single sample value of an expression, or None."""
        result, _ = self.query(expr, at)
        if not result or len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_for(self, expr, predicate, timeout):
        deadline = time.time() + scaled(timeout)
        value = None
        while time.time() < deadline:
            value = self.scalar(expr)
            if value is not None and predicate(value):
                return True, value
            time.sleep(0.25)
        return False, value


def bucket_quantile(q, buckets):
    """Prometheus's histogram_quantile on [(upper bound, cumulative count)] sorted by bound."""
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    # The first bucket (the +Inf one excluded) whose cumulative count reaches the rank.
    b = next((i for i in range(len(buckets) - 1) if buckets[i][1] >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (end - start) * (rank / count)


def bucket_of(value, bounds):
    """(lower, upper] of the histogram bucket that holds value; bounds end with +Inf."""
    i = bisect.bisect_left(bounds, value)
    return (bounds[i - 1] if i > 0 else 0.0), bounds[i]


def send_load(client, count):
    """`count` streaming calls from CONCURRENCY threads; returns (records, errors)."""
    records, errors = [], []
    lock = threading.Lock()
    jobs = list(range(count))

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                i = jobs.pop()
            n = PROMPT_LENGTHS[i % len(PROMPT_LENGTHS)]
            ids = [3 + (i * 31 + k * 7) % 500 for k in range(n)]
            start = time.perf_counter()
            first, complete = None, None
            try:
                for resp in client.generate(token_ids=ids, max_tokens=MAX_TOKENS,
                                            temperature=0.0, ignore_eos=True, timeout=scaled(60)):
                    if resp.HasField("chunk") and resp.chunk.token_ids and first is None:
                        first = time.perf_counter() - start
                    elif resp.HasField("complete"):
                        complete = resp.complete
            except client.grpc.RpcError as e:
                with lock:
                    errors.append(f"{e.code().name}: {e.details()}")
                continue
            with lock:
                if first is None or complete is None:
                    errors.append(f"request {i}: no token or no complete")
                else:
                    records.append({"client_ttft": first,
                                    "server_ttft": complete.timing.ttft_seconds,
                                    "prompt_tokens": complete.usage.prompt_tokens,
                                    "completion_tokens": complete.usage.completion_tokens})

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, errors


def dashboard_queries(path):
    with open(path) as f:
        dashboard = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", ""), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    return out


def substitute(expr):
    """Grafana's variables as the dashboard's 'All' selection and a 1 s scrape would set them."""
    for var, value in (("$model_name", ".*"), ("$role", ".*"), ("$method", ".*"),
                       ("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "5m")):
        expr = expr.replace(var, value)
    return expr


def metric_names(expr):
    """claa_* metric names an expression selects (label names never start with claa_)."""
    return set(re.findall(r"\b(claa_[a-z0-9_]+)", expr))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="claa-server binary")
    parser.add_argument("--source_dir", required=True, help="repository root")
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    args = parser.parse_args()
    if not os.access(args.prometheus, os.X_OK):
        print(f"SKIP: {args.prometheus} not found: install the Debian package `prometheus` "
              "(docker/install-deps.sh installs it) to run this test")
        return SKIP
    t0 = time.time()
    # Absolute: Prometheus resolves rule_files against the directory of its config file.
    deploy = os.path.join(os.path.abspath(args.source_dir), "deploy")
    sys.path.insert(0, os.path.join(args.source_dir, "server", "python"))
    import claa_client  # noqa: E402  (path set above)

    os.makedirs(args.work_dir, exist_ok=True)
    check = Checks()
    server = prom = None
    try:
        server, address, metrics_port = start_server(args.server)

        # The example configuration, pointed at this server, scraping every second.
        with open(os.path.join(deploy, "prometheus", "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
        config["rule_files"] = [os.path.join(deploy, "prometheus", r)
                                for r in config.get("rule_files", [])]
        jobs = [j for j in config["scrape_configs"] if j["job_name"] == "claa-server"]
        check("example config has a claa-server job", len(jobs) == 1)
        job = jobs[0]
        job["scrape_timeout"] = "1s"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
        config["scrape_configs"] = [job]
        config_path = os.path.join(args.work_dir, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)

        prom = Prometheus(args.prometheus, config_path, args.work_dir)
        ok, _ = prom.wait_for('up{job="claa-server"}', lambda v: v == 1, 20)
        check("prometheus scrapes claa-server (up == 1)", ok, prom.log_tail())
        client = claa_client.ClaaClient(address, cache_dir=os.path.join(args.work_dir, "stubs"))
        bad = None
        try:  # one refused request, so the failure counter has a series to show
            list(client.generate(token_ids=[99999], max_tokens=1, timeout=scaled(10)))
        except client.grpc.RpcError as e:
            bad = e.code().name
        check("out-of-range token is refused", bad == "INVALID_ARGUMENT", str(bad))

        # A labelled histogram child appears with its first observation, and rate() cannot
        # count what a series' first sample already holds. So one warm-up request creates the
        # TTFT series, and the load starts only once Prometheus has sampled that state. Whether
        # the series existed (at zero) before the warm-up decides what a window reaching back
        # past the warm-up counts.
        pre_existing = prom.scalar(f"count(count_over_time({TTFT}_count[1m]))") is not None
        warm_start = time.time()
        warm, errors = send_load(client, 1)
        check("warm-up request succeeds", len(warm) == 1 and not errors, "; ".join(errors))
        ok, _ = prom.wait_for(f"sum({TTFT}_count)", lambda v: v == len(warm), 20)
        check("prometheus sees the warm-up request", ok)
        mark = time.time()
        time.sleep(2.5)  # two more scrapes of the warm-up state before the load
        load_start = time.time()
        load, errors = send_load(client, NUM_REQUESTS)
        load_s = time.time() - load_start
        client.close()
        check(f"{NUM_REQUESTS} Generate calls succeed", len(load) == NUM_REQUESTS and not errors,
              "; ".join(errors[:3]))
        if not load or not warm:
            return check.summary()
        records = warm + load
        n = len(records)
        print(f"load: {len(load)} requests in {load_s:.2f}s; client TTFT lower median "
              f"{statistics.median_low(r['client_ttft'] for r in load) * 1e3:.2f} ms; server TTFT "
              f"lower median {statistics.median_low(r['server_ttft'] for r in load) * 1e3:.2f} ms;"
              f" TTFT series before the first request: {pre_existing}", flush=True)

        # Wait for a scrape that started after the last response arrived: it sees the final
        # state. (A scrape between a request's first token and its completion would show the
        # TTFT count complete but not yet the success and token counters.)
        load_end = time.time()
        ok, _ = prom.wait_for("max(timestamp(claa_num_requests_running))",
                              lambda v: v > load_end, 20)
        check("prometheus scrapes the server after the load", ok)
        at = time.time()
        count = prom.scalar(f"sum({TTFT}_count)", at)
        check("TTFT histogram count equals the request count", count == n, f"{count} != {n}")
        check("the 1m rate window reaches back past the warm-up", at - 60 < warm_start,
              f"warm-up, load and scrapes took {at - warm_start:.1f}s")

        def total(metric):
            return prom.scalar(f"sum({metric})", at)

        check("claa_request_success_total counts every request",
              total("claa_request_success_total") == n)
        check("claa_prompt_tokens_total matches usage",
              total("claa_prompt_tokens_total") == sum(r["prompt_tokens"] for r in records))
        check("claa_generation_tokens_total matches usage",
              total("claa_generation_tokens_total") == sum(r["completion_tokens"] for r in records))
        check("claa_request_failure_total{code=INVALID_ARGUMENT} is 1",
              total('claa_request_failure_total{code="INVALID_ARGUMENT"}') == 1)

        # Buckets, exactly: the server's histogram holds the TTFTs its responses reported.
        result, err = prom.query(f"sum by (le) ({TTFT}_bucket)", at)
        buckets = sorted((float(s["metric"]["le"]), float(s["value"][1])) for s in result or [])
        bounds = [b for b, _ in buckets]

        def cumulative(recs):
            return [(b, float(sum(1 for r in recs if r["server_ttft"] <= b))) for b in bounds]

        check("TTFT buckets match the server-reported TTFTs",
              buckets and buckets == cumulative(records),
              f"{err} prometheus {buckets} expected {cumulative(records)}")
        print("TTFT buckets (le: count): " + ", ".join(
            f"{b:g}: {c:g}" for b, c in buckets if 0 < c), flush=True)

        # The quantile of the load's TTFTs, exactly: increase() over a window that starts on a
        # sample of the warm-up state. A window starting between samples extrapolates each
        # bucket series to its start, capped where that series would reach zero, so buckets
        # whose first value differs (the warm-up's bucket and above vs. below) would be scaled
        # differently; starting on a sample, no series is extrapolated backwards.
        at = round(at, 3)
        result, err = prom.query(f"{TTFT}_count[{int((at - mark) * 1000) + 2000}ms]", at)
        samples = [(float(t), float(v)) for t, v in result[0]["values"]] \
            if result and len(result) == 1 else []
        starts = [t for t, v in samples if v == len(warm) and t < load_start]
        check("a sample of the warm-up state precedes the load", starts, f"{err} {samples}")
        window_ms = int(round((at - starts[-1]) * 1000)) if starts else 60000
        expr = f"histogram_quantile(0.5, sum by (le) (increase({TTFT}_bucket[{window_ms}ms])))"
        want = bucket_quantile(0.5, cumulative(load))
        p50 = prom.scalar(expr, at)
        print(f"prometheus p50 TTFT (increase[{window_ms}ms] from a sample): {p50}; "
              f"expected {want}", flush=True)
        check("p50 TTFT via increase() equals the quantile of the server-reported TTFTs",
              p50 is not None and math.isclose(p50, want, rel_tol=1e-6), f"{p50} != {want}")

        # The usual dashboard form. rate() extrapolates (see above), which may move the
        # estimate by a few per cent of the counts, so it must lie within the buckets of the
        # 0.45 and 0.55 quantiles, both of the server-reported TTFTs and of the client-measured
        # ones. Each server TTFT excludes the client's transport: the server's order statistics
        # lie at or below the client's, and at most the largest per-request overhead below.
        recs = records if pre_existing else load  # what the 1m window counts
        lo, _ = bucket_of(bucket_quantile(0.45, cumulative(recs)), bounds)
        _, hi = bucket_of(bucket_quantile(0.55, cumulative(recs)), bounds)
        client_ttfts = sorted(r["client_ttft"] for r in recs)
        overhead = max(r["client_ttft"] - r["server_ttft"] for r in recs)
        c_lo, _ = bucket_of(max(client_ttfts[math.ceil(0.45 * len(recs)) - 1] - overhead, 0), bounds)
        _, c_hi = bucket_of(client_ttfts[math.ceil(0.55 * len(recs)) - 1], bounds)
        rate_expr = f"histogram_quantile(0.5, sum by (le) (rate({TTFT}_bucket[1m])))"
        p50 = prom.scalar(rate_expr, at)
        print(f"prometheus p50 TTFT (rate[1m], {len(recs)} requests): {p50}; server-side "
              f"bounds [{lo}, {hi}]; client-side bounds [{c_lo}, {c_hi}] (client median "
              f"{statistics.median_low(client_ttfts):.6f} s, overhead up to {overhead * 1e3:.2f} ms)",
              flush=True)
        finite = p50 is not None and math.isfinite(p50)
        check("p50 TTFT via rate[1m] is finite", finite, str(p50))
        check("p50 TTFT via rate[1m] lies in the buckets of the server-reported median",
              finite and lo <= p50 <= hi, f"{p50} not in [{lo}, {hi}]")
        check("p50 TTFT via rate[1m] agrees with the client-measured median",
              finite and c_lo <= p50 <= c_hi, f"{p50} not in [{c_lo}, {c_hi}]")
        for q in (0.9, 0.99):
            v = prom.scalar(f"histogram_quantile({q}, sum by (le) (rate({TTFT}_bucket[1m])))", at)
            check(f"p{int(q * 100)} TTFT is finite and at least p50",
                  v is not None and p50 is not None and math.isfinite(v) and v >= p50, str(v))

        # The dashboard: every query evaluates; those over exported metrics return data.
        exported, _ = prom.query('count by (__name__) ({__name__=~"claa_.*"})', at)
        exported = {s["metric"]["__name__"] for s in exported or []}
        queries = dashboard_queries(os.path.join(deploy, "grafana", "claa-dashboard.json"))
        check("dashboard has queries", len(queries) >= 20, str(len(queries)))
        bad_queries = []
        for title, expr in queries:
            names = metric_names(expr)
            unknown = names - exported - PLANNED_METRICS
            result, err = prom.query(substitute(expr), at)
            if unknown:
                bad_queries.append(f"{title}: unknown metrics {sorted(unknown)}")
            elif result is None:
                bad_queries.append(f"{title}: {expr}: {err}")
            elif not result and names <= exported:
                bad_queries.append(f"{title}: {expr}: no data")
        check("every dashboard query evaluates (with data where the metrics exist)",
              not bad_queries, "\n  " + "\n  ".join(bad_queries))

        # The dashboard's template variables: label_values(metric, label) as Grafana asks it.
        with open(os.path.join(deploy, "grafana", "claa-dashboard.json")) as f:
            variables = [v for v in json.load(f)["templating"]["list"] if v["type"] == "query"]
        for v in variables:
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"])
            if not m:
                check(f"variable {v['name']} is a label_values() query", False, v["query"])
                continue
            metric, label = m.groups()
            got = prom.api(f"label/{label}/values", **{"match[]": metric}).get("data")
            result, _ = prom.query(f"count by ({label}) ({metric})", at)
            want = sorted(s["metric"][label] for s in result or [] if label in s["metric"])
            check(f"variable {v['name']} lists {want}",
                  got == want and (want or label != "model_name"), f"{got} != {want}")

        # The alert rules: loaded from alerts.yml and evaluated without error.
        with open(os.path.join(deploy, "prometheus", "alerts.yml")) as f:
            want_rules = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}
        deadline = time.time() + 10
        rules = []
        while time.time() < deadline:
            groups = prom.api("rules").get("data", {}).get("groups", [])
            rules = [r for g in groups for r in g["rules"]]
            # A rule never evaluated reports Go's zero time, 0001-01-01.
            if rules and all(not r.get("lastEvaluation", "0001").startswith("0001")
                             for r in rules):
                break
            time.sleep(0.25)
        names = {r["name"] for r in rules}
        check("every alert rule is loaded", names == want_rules, f"{names} vs {want_rules}")
        unhealthy = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}" for r in rules
                     if r.get("health") != "ok"]
        check("every alert rule evaluates without error", rules and not unhealthy,
              "; ".join(unhealthy))
    finally:
        stop(prom.proc if prom else None)
        stop(server)
    print(f"prometheus test took {time.time() - t0:.1f}s")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
