#!/usr/bin/env python3
"""Disaggregated serving on two GPUs: the KV handoff over NCCL against the host-staged gRPC
fetch, with the TTFT breakdown the router measures (issue 5; docs/benchmarks.md).

One prefill worker on GPU 0 serves two decode workers on GPU 1: one started with
--kv_transport=nccl, one with --kv_transport=grpc, each behind its own router, so both
transports run against the same prefill worker in the same run. For each prompt length and
pruning method, claa-loadgen sends requests one at a time through each router; the script
takes the deltas of the routers' and decode workers' Prometheus histograms over the measured
requests (warm-ups excluded) and writes disagg_gpu.json / disagg_gpu.md to --out.

    python3 tests/bench/disagg_gpu_bench.py --bin DIR --model DIR --out DIR
DIR of --bin holds claa-server, libclaa_cuda_backend.so and claa-loadgen.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

PARTS = [("queue", "claa_request_queue_time_seconds"),
         ("prefill", "claa_request_prefill_time_seconds"),
         ("kv_transfer", "claa_kv_transfer_seconds"),
         ("decode_queue", "claa_decode_queue_time_seconds"),
         ("ttft", "claa_time_to_first_token_seconds")]


class Proc:
    def __init__(self, name, argv, log_dir):
        self.name = name
        self.log = open(os.path.join(log_dir, name + ".log"), "w+")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.address = self.metrics = None

    def wait_ready(self, timeout=600):
        t0 = time.time()
        while time.time() - t0 < timeout:
            self.log.flush()
            with open(self.log.name) as f:
                text = f.read()
            m = re.search(r"metrics on http://([\d.]+:\d+)/metrics", text)
            a = re.search(r"listening on (\S+)", text)
            if m and a:
                self.metrics, self.address = m.group(1), a.group(1)
                print(f"{self.name}: {self.address} (ready after {time.time() - t0:.0f} s)",
                      flush=True)
                return
            if self.p.poll() is not None:
                sys.exit(f"{self.name} exited:\n{text[-3000:]}")
            time.sleep(0.5)
        sys.exit(f"{self.name} did not start in {timeout} s")

    def scrape(self):
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()


def totals(text, name):
    """Sum of `name`'s samples over all label sets (for histograms: name_sum / name_count)."""
    s = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            s += float(line.rsplit(" ", 1)[1])
    return s


def snapshot(router, decode):
    r, d = router.scrape(), decode.scrape()
    out = {}
    for key, name in PARTS:
        out[key] = (totals(r, name + "_sum"), totals(r, name + "_count"))
    out["decode_transfer"] = (totals(d, "claa_kv_transfer_seconds_sum"),
                              totals(d, "claa_kv_transfer_seconds_count"))
    out["bytes"] = totals(d, "claa_kv_transfer_bytes_total")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default="2048,8192,32768")
    ap.add_argument("--methods", default="full,claa:0.2")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--warmups", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    server = os.path.join(a.bin, "claa-server")
    common = [server, "--model=" + a.model, "--device=cuda", "--port=0", "--metrics_port=0",
              "--kv_lease_seconds=120", "--max_prefill_tokens=40000"]
    worker = common + ["--kv_cache_mb=12288"]
    env_note = os.environ.get("NCCL_NVLS_ENABLE")
    procs = []
    try:
        prefill = Proc("prefill", worker + ["--role=prefill", "--gpu_device=0"], a.out)
        procs.append(prefill)
        prefill.wait_ready()
        decodes = {}
        for t in ("nccl", "grpc"):
            d = Proc("decode_" + t, worker + ["--role=decode", "--gpu_device=1",
                                              "--kv_transport=" + t], a.out)
            procs.append(d)
            d.wait_ready()
            decodes[t] = d
        routers = {}
        for t, d in decodes.items():
            r = Proc("router_" + t, common + ["--role=router",
                                              "--prefill_workers=" + prefill.address,
                                              "--decode_workers=" + d.address], a.out)
            procs.append(r)
            r.wait_ready()
            routers[t] = r

        rows = []
        for length in [int(x) for x in a.lengths.split(",")]:
            for method in a.methods.split(","):
                name, _, keep = method.partition(":")
                for t in ("nccl", "grpc"):
                    def loadgen(n, result):
                        argv = [os.path.join(a.bin, "claa-loadgen"),
                                "--target=" + routers[t].address, f"--num_prompts={n}",
                                "--max_concurrency=1", f"--random_input_len={length}",
                                "--random_output_len=4", "--seed=7", "--timeout_s=120"]
                        if name != "full":
                            argv += ["--pruning_method=" + name, "--keep_ratio=" + keep]
                        if result:
                            argv += ["--result_json=" + result]
                        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                    loadgen(a.warmups, None)
                    before = snapshot(routers[t], decodes[t])
                    result = os.path.join(a.out, f"loadgen_{t}_{length}_{name}.json")
                    loadgen(a.requests, result)
                    after = snapshot(routers[t], decodes[t])
                    row = {"transport": t, "prompt_tokens": length, "method": method,
                           "requests": a.requests}
                    for key, _ in PARTS:
                        ds = after[key][0] - before[key][0]
                        dc = after[key][1] - before[key][1]
                        row[key + "_ms"] = 1000 * ds / dc if dc else None
                    ts = after["decode_transfer"][0] - before["decode_transfer"][0]
                    tc = after["decode_transfer"][1] - before["decode_transfer"][1]
                    nbytes = after["bytes"] - before["bytes"]
                    row["kv_mb_per_request"] = nbytes / tc / 1e6 if tc else None
                    row["transfer_ms_decode_side"] = 1000 * ts / tc if tc else None
                    row["gb_per_s"] = nbytes / ts / 1e9 if ts else None
                    with open(result) as f:
                        lg = json.load(f)
                    row["client_mean_ttft_ms"] = lg.get("mean_ttft_ms")
                    row["completed"] = lg.get("completed")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        for p in procs:
            p.p.terminate()
        for p in procs:
            try:
                p.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.p.kill()

    with open(os.path.join(a.out, "disagg_gpu.json"), "w") as f:
        json.dump({"rows": rows, "NCCL_NVLS_ENABLE": env_note}, f, indent=2)
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    md = ["| prompt | method | transport | KV MB | transfer ms | GB/s | queue | prefill | "
          "KV transfer | decode queue | TTFT (router) | TTFT (client) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['prompt_tokens']} | {r['method']} | {r['transport']} | "
                  f"{fmt(r['kv_mb_per_request'])} | {fmt(r['transfer_ms_decode_side'], 2)} | "
                  f"{fmt(r['gb_per_s'], 2)} | {fmt(r['queue_ms'], 2)} | {fmt(r['prefill_ms'])} | "
                  f"{fmt(r['kv_transfer_ms'], 2)} | {fmt(r['decode_queue_ms'], 2)} | "
                  f"{fmt(r['ttft_ms'])} | {fmt(r['client_mean_ttft_ms'])} |")
    with open(os.path.join(a.out, "disagg_gpu.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
