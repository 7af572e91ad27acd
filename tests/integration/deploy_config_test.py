#!/usr/bin/python3
"""Checks the operator-facing files under deploy/ and docker/ without starting servers.

--part promtool: `promtool check config` on deploy/prometheus/prometheus.yml (which also checks
  the rule files it names), `promtool check rules` and `promtool test rules` on the alert rules
  and their unit tests. Exits 77 (CTest's skip code here) when promtool is absent.
--part static: the Grafana dashboard (valid JSON, unique panel ids, no overlapping panels, every
  query filtered by $model_name and naming only metrics server/metrics.cc defines or the two
  planned ones), the alert rules' metric names, and docker/Dockerfile (two stages on CUDA
  devel/runtime images, the README's build command, non-root user, health check, ports and
  flags that claa-server really has).
Prints 'N passed, N failed'.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import yaml

from py_harness import Checks

SKIP = 77
# Histograms the dashboard may chart before the server defines them (added this cycle).
PLANNED_HISTOGRAMS = {"claa_prompt_kept_ratio"}


def defined_metrics(metrics_cc):
    """Series names server/metrics.cc can export: counters and gauges as named, histograms
    with their _bucket/_sum/_count series. Returns (series, names of unknown kind)."""
    with open(metrics_cc) as f:
        text = f.read()
    # Local helpers such as `auto histogram = [&](...) { return &prometheus::BuildHistogram()`.
    helpers = dict(re.findall(
        r"auto\s+(\w+)\s*=\s*\[&\]\([^)]*\)\s*\{\s*return\s*&prometheus::Build(\w+)\(\)",
        text))
    kinds = {}
    for kind, name in re.findall(r'Build(\w+)\(\)\s*\.Name\(\s*"(claa_[a-z0-9_]+)"', text):
        kinds[name] = kind
    for helper, name in re.findall(r'\b(\w+)\(\s*"(claa_[a-z0-9_]+)"', text):
        if helper in helpers:
            kinds[name] = helpers[helper]
    unknown = set(re.findall(r'"(claa_[a-z0-9_]+)"', text)) - set(kinds)
    series = set()
    for name, kind in list(kinds.items()) + [(h, "Histogram") for h in PLANNED_HISTOGRAMS]:
        if kind == "Histogram":
            series.update({name + "_bucket", name + "_sum", name + "_count"})
        else:
            series.add(name)
    return series, unknown


def metric_names(expr, known=()):
    """claa_* metric names an expression selects. A {__name__=~"re"} selector counts as the
    known names its regex matches, or as the regex itself when it matches none."""
    names = set()
    for regex in re.findall(r'__name__=~"([^"]*)"', expr):
        matched = {k for k in known if re.fullmatch(regex, k)}
        names |= matched or {regex}
    expr = re.sub(r'__name__=~"[^"]*"', "", expr)
    return names | set(re.findall(r"\b(claa_[a-z0-9_]+)", expr))


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def check_promtool(check, src):
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not found: install the Debian package `prometheus` "
              "(docker/install-deps.sh installs it) to run this test")
        return SKIP
    prom_dir = os.path.join(src, "deploy", "prometheus")
    for what, cmd in (
            ("promtool check config prometheus.yml",
             [promtool, "check", "config", os.path.join(prom_dir, "prometheus.yml")]),
            ("promtool check rules alerts.yml",
             [promtool, "check", "rules", os.path.join(prom_dir, "alerts.yml")]),
            ("promtool test rules alerts_test.yml",
             [promtool, "test", "rules", os.path.join(prom_dir, "alerts_test.yml")])):
        rc, out = run(cmd)
        check(what, rc == 0, "\n" + out)
    # The config must load the rules: a rule_files glob that matches nothing is not an error.
    rc, out = run([promtool, "check", "config", os.path.join(prom_dir, "prometheus.yml")])
    check("prometheus.yml loads alerts.yml", "1 rule files found" in out, out)
    return None


def check_docs(check, src, known):
    """docs/metrics.md documents every metric of server/metrics.cc and no other."""
    with open(os.path.join(src, "docs", "metrics.md")) as f:
        doc = f.read()
    base = {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count"))
            and not n.endswith("_total") else n for n in known}
    missing = sorted(n for n in base if f"`{n}`" not in doc)
    check("docs/metrics.md documents every metric", not missing, str(missing))
    mentioned = set(re.findall(r"`(claa_[a-z0-9_]+)`", doc))
    extra = sorted(m for m in mentioned if m not in base and m not in known)
    check("docs/metrics.md names no undefined metric", not extra, str(extra))


def check_dashboard(check, src, known):
    path = os.path.join(src, "deploy", "grafana", "claa-dashboard.json")
    with open(path) as f:
        dash = json.load(f)
    check("dashboard has a uid and a title", dash.get("uid") and dash.get("title"))
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    check("dashboard has datasource and model_name variables",
          variables.get("datasource", {}).get("type") == "datasource" and
          variables.get("datasource", {}).get("query") == "prometheus" and
          "model_name" in variables)
    panels = []

    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels", []))

    walk(dash["panels"])
    ids = [p["id"] for p in panels]
    check("panel ids are unique", len(ids) == len(set(ids)))
    cells, overlaps = {}, []
    for p in panels:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            overlaps.append(f"{p['title']} wider than the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    overlaps.append(f"{p['title']} overlaps {cells[(x, y)]}")
                cells[(x, y)] = p["title"]
    check("panels do not overlap", not overlaps, "; ".join(sorted(set(overlaps))[:5]))
    exprs, problems = [], []
    for p in panels:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{p['title']}: datasource is not ${{datasource}}")
        for t in p.get("targets", []):
            expr = t["expr"]
            exprs.append(expr)
            unknown = metric_names(expr) - known
            if unknown:
                problems.append(f"{p['title']}: unknown metrics {sorted(unknown)}")
            if '$model_name' not in expr:
                problems.append(f"{p['title']}: {expr} ignores $model_name")
    check("every panel query uses the datasource variable, $model_name and known metrics",
          not problems, "\n  " + "\n  ".join(problems))
    joined = "\n".join(exprs)
    for q in ("0.5", "0.9", "0.99"):
        check(f"TTFT p{q} by role and method",
              re.search(r"histogram_quantile\(" + re.escape(q) + r", sum by \(le, role, method\) "
                        r"\(rate\(claa_time_to_first_token_seconds_bucket", joined) is not None)
    for metric in ("claa_request_queue_time_seconds", "claa_request_prefill_time_seconds",
                   "claa_prompt_tokens_total", "claa_generation_tokens_total",
                   "claa_request_success_total", "claa_num_requests_running",
                   "claa_num_requests_waiting", "claa_kv_cache_usage_perc",
                   "claa_prompt_kept_ratio", "claa_request_failure_total"):
        check(f"dashboard charts {metric}", metric in joined)
    check("failures are broken down by code", "sum by (code)" in joined)


def check_alerts(check, src, known):
    with open(os.path.join(src, "deploy", "prometheus", "alerts.yml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    unknown = {r["alert"]: sorted(metric_names(r["expr"], known) - known) for r in rules
               if metric_names(r["expr"], known) - known}
    check("alert rules name only known metrics", not unknown, str(unknown))
    joined = "\n".join(r["expr"] for r in rules)
    for metric in ("claa_time_to_first_token_seconds_bucket", "claa_num_requests_waiting",
                   "claa_kv_cache_usage_perc", "claa_request_failure_total"):
        check(f"an alert watches {metric}", metric in joined)
    check("every alert has a severity and a summary",
          all(r.get("labels", {}).get("severity") and r.get("annotations", {}).get("summary")
              for r in rules))


def dockerfile_stages(path):
    """[(from line, [(instruction, argument)])] with line continuations joined."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, args = [], {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = " ".join(rest.split())
        if instr == "FROM":
            stages.append((rest, []))
        elif stages:
            stages[-1][1].append((instr, rest))
        elif instr == "ARG":
            name, _, value = rest.partition("=")
            args[name] = value
    return args, stages


def readme_build_commands(readme):
    """The README's first command, split at '&&': what the Docker build must run."""
    with open(readme) as f:
        block = re.search(r"```bash\n(.*?)\n", f.read()).group(1)
    return [" ".join(c.split()) for c in block.split("&&")]


def server_flags(server):
    rc, out = run([server, "--helpfull"])
    return set(re.findall(r"--([a-z_]+)", out))


def check_dockerfile(check, src, server):
    docker = os.path.join(src, "docker")
    args, stages = dockerfile_stages(os.path.join(docker, "Dockerfile"))
    check("two stages", len(stages) == 2, str([s[0] for s in stages]))
    if len(stages) != 2:
        return
    (build_from, build), (run_from, final) = stages
    check("build stage is FROM ${BUILD_IMAGE} AS build", build_from == "${BUILD_IMAGE} AS build")
    check("runtime stage is FROM ${RUNTIME_IMAGE}", run_from.startswith("${RUNTIME_IMAGE}"))
    bi, ri = args.get("BUILD_IMAGE", ""), args.get("RUNTIME_IMAGE", "")
    check("default images: CUDA devel and the matching CUDA runtime",
          bi.startswith("nvidia/cuda:") and "-devel-" in bi and
          ri == bi.replace("-devel-", "-runtime-"), f"{bi} / {ri}")
    runs = [" ".join(a.split()) for i, a in build if i == "RUN"]
    missing = [c for c in readme_build_commands(os.path.join(src, "README.md"))
               if not any(c in r for r in runs)]
    check("the build stage runs the README's first command", not missing, str(missing))
    users = [a for i, a in final if i == "USER"]
    check("the image runs as a non-root user",
          users and users[-1].split(":")[0] not in ("0", "root"), str(users))
    health = [a for i, a in final if i == "HEALTHCHECK"]
    check("the image has a health check", len(health) == 1 and "CMD" in health[0])
    if health:
        copied = " ".join(a for i, a in final if i == "COPY")
        check("the health check's script is copied from docker/healthcheck.py",
              "docker/healthcheck.py" in copied and
              os.path.exists(os.path.join(docker, "healthcheck.py")))
    exposed = set(" ".join(a for i, a in final if i == "EXPOSE").split())
    check("EXPOSE 50051 9464", exposed == {"50051", "9464"}, str(exposed))
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    argv = json.loads(entry[-1]) if entry else []
    check("ENTRYPOINT runs claa-server on 0.0.0.0",
          argv and argv[0].endswith("claa-server") and "--host=0.0.0.0" in argv, str(argv))
    flags = server_flags(server)
    unknown = [a for a in argv[1:] if a.startswith("--") and a[2:].split("=")[0] not in flags]
    check("ENTRYPOINT flags are claa-server flags", flags and not unknown, str(unknown))
    ports = {a.split("=")[1] for a in argv if a.startswith(("--port=", "--metrics_port="))}
    check("ENTRYPOINT ports are the exposed ones", ports == exposed, str(ports))
    env = " ".join(a for i, a in final if i == "ENV")
    check("the health check probes the gRPC port", "CLAA_GRPC_PORT=50051" in env)
    for instr, arg in build + final:
        if instr == "COPY" and "--from=" not in arg:
            for source in shlex.split(arg)[:-1]:
                if source != ".":
                    check(f"COPY source {source} exists", os.path.exists(os.path.join(src, source)))
        if instr == "RUN" and "docker/runtime-packages.sh" in arg:
            check("docker/runtime-packages.sh exists",
                  os.path.exists(os.path.join(docker, "runtime-packages.sh")))
    with open(os.path.join(docker, "Dockerfile.dockerignore")) as f:
        ignored = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    check("the build context leaves out build trees and .git",
          {"build", "build-*", ".git"} <= ignored, str(ignored))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("promtool", "static"), required=True)
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--server", help="claa-server binary (static part: its real flags)")
    args = parser.parse_args()
    src = os.path.abspath(args.source_dir)
    check = Checks()
    if args.part == "promtool":
        if check_promtool(check, src) == SKIP:
            return SKIP
    else:
        known, unparsed = set(), set()
        for source in ("metrics.cc", "attn_cache_metrics.cc"):
            k, u = defined_metrics(os.path.join(src, "server", source))
            known |= k
            unparsed |= u
        check("every claa_ name in server/*metrics.cc is a counter, gauge or histogram",
              not unparsed, str(sorted(unparsed)))
        if args.server:
            rc, out = run([args.server, "--help"])
            base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in known}
            unlisted = sorted(n for n in base if n not in out)
            check("claa-server --help lists every metric", not unlisted, str(unlisted))
        check("server/metrics.cc defines the TTFT histogram",
              "claa_time_to_first_token_seconds_bucket" in known, str(sorted(known)))
        check_docs(check, src, known)
        check_dashboard(check, src, known)
        check_alerts(check, src, known)
        check_dockerfile(check, src, args.server)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
