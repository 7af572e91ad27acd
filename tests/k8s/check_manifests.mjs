// Checks the Kubernetes manifests of deploy/k8s (CTest k8s_manifests, through run_test.sh).
//
// For the base and every overlay under deploy/k8s/overlays:
//  1. render it with `kubectl kustomize`;
//  2. validate every object against the Kubernetes API schema with kubernetes-models
//     (Model.validate(): types, required fields, enums, formats; the PodMonitor with
//     @kubernetes-models/prometheus-operator), and reject fields the schema does not define
//     (the API server's strict field validation): the schema validators are run on a Proxy
//     that records which properties they look at;
//  3. cross-check against the server itself: the container argv (docker/Dockerfile's
//     ENTRYPOINT + args, $(VAR) expanded as the kubelet does) uses only flags that
//     `claa-server --help` lists, with values of the right type and valid roles; ports, probes,
//     Services, the PodMonitor and the router's worker lists agree with --port/--metrics_port;
//     the worker lists name exactly the pods the StatefulSets/autoscalers can create;
//     prefill pods advertise their own stable DNS name; GPUs equal --tp; and more (below);
//  4. start the rendered router, prefill and decode commands (the real claa-server binary,
//     on loopback: --host/--port/--advertise_address/worker lists rewritten, an absent model
//     directory replaced by the built-in model, the KV cache capped) and send requests through
//     the router with claa-loadgen; the HPA metric must be on the workers' /metrics.
//
// Usage: node check_manifests.mjs --source_dir=DIR --modules_dir=DIR --kubectl=PATH
//          --server=PATH [--loadgen=PATH] [--work_dir=DIR]
// Prints one line per check and 'N passed, N failed'; exits 1 on any failure.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = a.match(/^--([a-z_]+)=(.*)$/s);
    if (!m) throw new Error(`bad argument ${a}`);
    return [m[1], m[2]];
  }),
);
for (const required of ["source_dir", "modules_dir", "kubectl", "server"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
const SRC = path.resolve(args.source_dir);
const K8S = path.join(SRC, "deploy", "k8s");
const WORK = path.resolve(args.work_dir ?? fs.mkdtempSync("/tmp/claa-k8s-"));
fs.mkdirSync(WORK, { recursive: true });
const requireFromModules = createRequire(path.join(path.resolve(args.modules_dir), "package.json"));
const YAML = requireFromModules("yaml");

// ---------------------------------------------------------------------------------------
// Check counting (the 'N passed, N failed' line CI reads, as tests/integration/py_harness.py).
let passed = 0;
let failed = 0;
function check(name, cond, detail = "") {
  if (cond) {
    passed += 1;
    console.log(`[ PASS ] ${name}`);
  } else {
    failed += 1;
    console.log(`[ FAIL ] ${name}${detail ? ` ${detail}` : ""}`);
  }
  return Boolean(cond);
}
const info = (msg) => console.log(`[ INFO ] ${msg}`);

// ---------------------------------------------------------------------------------------
// The server's real flags: `claa-server --help` (flags of server/server_main.cc).
function serverFlags(server) {
  const r = spawnSync(server, ["--help"], { encoding: "utf8" });
  const text = `${r.stdout}${r.stderr}`;
  const flags = new Map();
  // Entries look like "    --port (gRPC port; ...);\n      default: 50051;".
  for (const m of text.matchAll(/^ {4}--([a-z0-9_]+) \(([\s\S]*?)\);\s+default: ([\s\S]*?);$/gm)) {
    const [, name, desc, dflt] = m;
    let type = "string";
    if (/^(true|false)$/.test(dflt)) type = "bool";
    else if (/^-?\d+$/.test(dflt)) type = "int";
    else if (/^-?\d*\.\d+(e-?\d+)?$/.test(dflt)) type = "double";
    flags.set(name, { type, default: dflt.replace(/^"(.*)"$/, "$1"), desc: desc.replace(/\s+/g, " ") });
  }
  return flags;
}

function roleValues(flags) {
  // "--role (all: serve ... router: the public API, ... prefill / decode: an internal worker.)"
  const desc = flags.get("role")?.desc ?? "";
  const roles = new Set();
  for (const m of desc.matchAll(/(?:^|\. )([a-z]+(?: \/ [a-z]+)*):/g)) {
    for (const r of m[1].split(" / ")) roles.add(r);
  }
  return roles;
}

// ---------------------------------------------------------------------------------------
// docker/Dockerfile: the runtime stage's ENTRYPOINT, USER and EXPOSE.
function dockerfileRuntime(file) {
  const text = fs.readFileSync(file, "utf8").replace(/\\\n/g, " ");
  let stage = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [instr, ...rest] = line.split(/\s+/);
    const arg = rest.join(" ");
    if (instr.toUpperCase() === "FROM") stage = { entrypoint: null, cmd: null, user: null, expose: [] };
    else if (!stage) continue;
    else if (instr.toUpperCase() === "ENTRYPOINT") stage.entrypoint = JSON.parse(arg);
    else if (instr.toUpperCase() === "CMD") stage.cmd = JSON.parse(arg);
    else if (instr.toUpperCase() === "USER") stage.user = arg;
    else if (instr.toUpperCase() === "EXPOSE") stage.expose.push(...rest);
  }
  return stage; // the last stage is the image
}

// ---------------------------------------------------------------------------------------
// Schema validation with kubernetes-models.
function modelClass(apiVersion, kind) {
  const pkg = apiVersion === "monitoring.coreos.com/v1" ? "@kubernetes-models/prometheus-operator" : "kubernetes-models";
  const mod = requireFromModules(`${pkg}/${apiVersion}/${kind}`);
  return mod[kind];
}

// Runs the schema validator on a Proxy of `obj` and returns the paths of properties the schema
// does not define. The compiled validators read every property their schema declares
// (`data.foo === undefined`), and enumerate the keys of maps (additionalProperties); an object
// whose keys were neither read nor enumerated is free-form (not described by the schema).
function validateStrict(Cls, obj) {
  const records = new Map();
  const proxies = new WeakMap();
  const wrap = (value, where) => {
    if (value === null || typeof value !== "object") return value;
    if (proxies.has(value)) return proxies.get(value);
    const rec = { where, value, read: new Set(), enumerated: false };
    records.set(value, rec);
    const proxy = new Proxy(value, {
      get(t, k, r) {
        const v = Reflect.get(t, k, r);
        if (typeof k !== "string") return v;
        rec.read.add(k);
        return Object.prototype.hasOwnProperty.call(t, k) ? wrap(v, `${where}/${k}`) : v;
      },
      has(t, k) {
        if (typeof k === "string") rec.read.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  let error = null;
  try {
    Cls.prototype.validate.call(wrap(structuredClone(obj), ""));
  } catch (e) {
    error = e.message;
  }
  const unknown = [];
  const freeForm = [];
  for (const r of records.values()) {
    if (Array.isArray(r.value) || r.enumerated) continue;
    const keys = Object.keys(r.value);
    if (r.read.size === 0) {
      if (keys.length) freeForm.push(r.where);
      continue;
    }
    for (const k of keys) if (!r.read.has(k)) unknown.push(`${r.where}/${k}`);
  }
  return { error, unknown, freeForm };
}

function checkSchemas(label, objects) {
  for (const o of objects) {
    const id = `${label}: ${o.kind}/${o.metadata?.name}`;
    let Cls = null;
    try {
      Cls = modelClass(o.apiVersion, o.kind);
    } catch (e) {
      check(`${id}: ${o.apiVersion} ${o.kind} has a schema in kubernetes-models`, false, e.message);
      continue;
    }
    let error = null;
    try {
      new Cls(o).validate();
    } catch (e) {
      error = e.message;
    }
    check(`${id} validates against the ${o.apiVersion} schema`, error === null, error ?? "");
    const strict = validateStrict(Cls, o);
    check(`${id} has no fields outside the schema`, strict.unknown.length === 0, strict.unknown.join(", "));
    if (strict.freeForm.length) info(`${id}: free-form (not schema-checked): ${strict.freeForm.join(", ")}`);
  }
}

// ---------------------------------------------------------------------------------------
// Helpers over a rendering.
const selects = (selector, labels) =>
  selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const workloads = (objs) => objs.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
const podLabels = (w) => w.spec.template.metadata?.labels ?? {};
const isClaa = (c) => /(^|\/)claa-server(:[^/]*)?(@.*)?$/.test(c.image ?? "");

function parseQuantity(q) {
  if (q === undefined || q === null) return null;
  const m = String(q).match(/^([0-9.]+)([a-zA-Z]*)$/);
  if (!m) return NaN;
  const units = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return units[m[2]] === undefined ? NaN : Number(m[1]) * units[m[2]];
}

// The kubelet's $(VAR) expansion: defined variables are replaced, $$ escapes, others stay.
function expand(s, env) {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name) =>
    all === "$$" ? "$" : env.has(name) ? env.get(name) : all,
  );
}

// The container's environment as the kubelet builds it (envFrom, then env); fieldRefs get the
// sample pod's values.
function containerEnv(c, objs, pod, problems) {
  const env = new Map();
  const configMap = (name) => objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === name);
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) {
      const cm = configMap(from.configMapRef.name);
      if (!cm) problems.push(`envFrom ConfigMap ${from.configMapRef.name} is not in the rendering`);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env.set(`${from.prefix ?? ""}${k}`, v);
    } else {
      problems.push(`envFrom other than a ConfigMap: ${JSON.stringify(from)}`);
    }
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env.set(e.name, expand(e.value, env));
    else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const v = configMap(ref.name)?.data?.[ref.key];
      if (v === undefined) problems.push(`env ${e.name}: ConfigMap ${ref.name} has no key ${ref.key}`);
      else env.set(e.name, v);
    } else if (e.valueFrom?.fieldRef) {
      const field = e.valueFrom.fieldRef.fieldPath;
      if (field === "metadata.name") env.set(e.name, pod.name);
      else if (field === "metadata.namespace") env.set(e.name, pod.namespace);
      else env.set(e.name, `<${field}>`);
    } else {
      env.set(e.name, "<unresolved>");
    }
  }
  return env;
}

// argv -> [{name, value}] for "--name=value" / "--name"; anything else is reported.
function parseFlags(argv, problems) {
  const out = [];
  for (const a of argv) {
    const m = a.match(/^--([a-z0-9_]+)(?:=(.*))?$/s);
    if (!m) problems.push(`argument ${JSON.stringify(a)} is not --flag or --flag=value`);
    else out.push({ name: m[1], value: m[2] });
  }
  return out;
}

function typeOk(flag, value) {
  switch (flag.type) {
    case "bool":
      return value === undefined || /^(true|false|1|0)$/.test(value);
    case "int":
      return value !== undefined && /^-?\d+$/.test(value);
    case "double":
      return value !== undefined && value !== "" && Number.isFinite(Number(value));
    default:
      return value !== undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Static cross-checks of one rendering. Returns the per-role server commands for the smoke run.
function checkRendering(label, objs, ctx) {
  const { flags, roles, image } = ctx;
  const namespace = "claa-test";
  // Overlays whose directory name says "gpu" must give workers nvidia.com/gpu = --tp; all
  // others (base, cpu) must request no GPU and enough CPU for --tp threads.
  const expectGpu = /gpu/.test(label);
  const byKind = (k) => objs.filter((o) => o.kind === k);
  const ws = workloads(objs);
  const hpas = byKind("HorizontalPodAutoscaler");
  const services = byKind("Service");

  const kinds = new Set(objs.map((o) => o.kind));
  for (const k of ["Deployment", "StatefulSet", "Service", "ConfigMap", "PodMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget"]) {
    check(`${label}: renders a ${k}`, kinds.has(k));
  }
  const names = objs.map((o) => `${o.kind}/${o.metadata.name}`);
  check(`${label}: object names are unique`, new Set(names).size === names.length);

  for (const w of ws) {
    check(`${label}: ${w.kind}/${w.metadata.name}: selector matches its pod template`,
      selects(w.spec.selector?.matchLabels, podLabels(w)) && !w.spec.selector?.matchExpressions);
  }

  // Per claa container: effective argv and flags.
  const servers = []; // {w, c, role, flags: Map, argv, env}
  for (const w of ws) {
    const sample = w.kind === "StatefulSet" ? `${w.metadata.name}-0` : `${w.metadata.name}-5d8f7c9b4-x2k9q`;
    for (const c of w.spec.template.spec.containers) {
      if (!isClaa(c)) continue;
      const id = `${label}: ${w.kind}/${w.metadata.name}`;
      const problems = [];
      const env = containerEnv(c, objs, { name: sample, namespace }, problems);
      const entry = c.command ?? image.entrypoint;
      const raw = [...entry.slice(1), ...(c.args ?? [])];
      if (!c.command && image.cmd) info(`${id}: the image's CMD is replaced by args`);
      const argv = raw.map((a) => expand(a, env));
      const unresolved = argv.filter((a) => /\$\([A-Za-z_]/.test(a));
      check(`${id}: every $(VAR) in args is defined (env, envFrom ConfigMap keys, downward API)`,
        problems.length === 0 && unresolved.length === 0, [...problems, ...unresolved].join("; "));
      check(`${id}: runs claa-server (the image ENTRYPOINT, args appended)`,
        path.basename(entry[0]) === "claa-server", JSON.stringify(entry));
      const parsed = parseFlags(argv, problems);
      const unknown = parsed.filter((f) => !flags.has(f.name)).map((f) => `--${f.name}`);
      check(`${id}: every flag is a flag of claa-server --help`, unknown.length === 0 && problems.length === 0,
        [...unknown, ...problems].join(", "));
      const badType = parsed.filter((f) => flags.has(f.name) && !typeOk(flags.get(f.name), f.value))
        .map((f) => `--${f.name}=${f.value} (${flags.get(f.name).type})`);
      check(`${id}: flag values have the flags' types`, badType.length === 0, badType.join(", "));
      const values = new Map(); // last occurrence wins, as in absl
      for (const f of parsed) values.set(f.name, f.value ?? "true");
      const get = (n) => (values.has(n) ? values.get(n) : flags.get(n)?.default);
      const role = get("role");
      check(`${id}: --role=${role} is one of claa-server's roles (${[...roles].join(", ")})`, roles.has(role));
      const component = podLabels(w)["app.kubernetes.io/component"];
      check(`${id}: --role matches the component label (${component})`, role === component);
      servers.push({ w, c, role, values, get, argv, env, id, sample });
    }
  }
  const byRole = (r) => servers.filter((s) => s.role === r);
  for (const r of ["router", "prefill", "decode"]) check(`${label}: exactly one ${r} workload`, byRole(r).length === 1);
  check(`${label}: routers run as a Deployment`, byRole("router").every((s) => s.w.kind === "Deployment"));
  check(`${label}: prefill and decode workers run as StatefulSets (stable per-pod names)`,
    [...byRole("prefill"), ...byRole("decode")].every((s) => s.w.kind === "StatefulSet"));

  for (const s of servers) {
    const { c, w, id, get } = s;
    const spec = w.spec.template.spec;
    const port = Number(get("port"));
    const metricsPort = Number(get("metrics_port"));
    check(`${id}: --host=${get("host")} binds every interface (probes and Services reach the pod IP)`,
      ["0.0.0.0", "::", "[::]"].includes(get("host")));
    check(`${id}: --port is fixed (${port})`, port >= 1 && port <= 65535);
    check(`${id}: --metrics_port is fixed (${metricsPort})`, metricsPort >= 1 && metricsPort <= 65535);
    const cport = (n) => (c.ports ?? []).find((p) => p.name === n)?.containerPort;
    check(`${id}: containerPort grpc = --port`, cport("grpc") === port, `${cport("grpc")} vs ${port}`);
    check(`${id}: containerPort metrics = --metrics_port`, cport("metrics") === metricsPort, `${cport("metrics")} vs ${metricsPort}`);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const p = c[probe];
      check(`${id}: ${probe} is a gRPC health probe (grpc.health.v1) on --port`,
        p?.grpc && p.grpc.port === port && !p.exec && !p.httpGet && !p.tcpSocket && (p.grpc.service ?? "") === "",
        JSON.stringify(p));
    }
    // Model, volumes, sizes.
    const model = get("model");
    if (model) {
      const mounts = (c.volumeMounts ?? []).filter((m) => model === m.mountPath || model.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
      const vol = mounts.length && (spec.volumes ?? []).find((v) => v.name === mounts[0].name);
      check(`${id}: --model=${model} is on a mounted volume`, mounts.length > 0 && vol, JSON.stringify(c.volumeMounts));
      check(`${id}: the model volume is not an emptyDir`, vol && !vol.emptyDir, JSON.stringify(vol));
    }
    for (const m of c.volumeMounts ?? []) {
      check(`${id}: volumeMount ${m.name} has a volume`, (spec.volumes ?? []).some((v) => v.name === m.name));
    }
    // Security: the image's user.
    const uid = Number(String(ctx.image.user ?? "").split(":")[0]);
    const runAs = c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
    check(`${id}: runs as the image's non-root user ${uid}`,
      runAs === uid && (c.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot) === true);
    check(`${id}: read-only root filesystem with a writable /tmp`,
      c.securityContext?.readOnlyRootFilesystem === true && (c.volumeMounts ?? []).some((m) => m.mountPath === "/tmp"));
    // Resources.
    const gpuLimit = c.resources?.limits?.["nvidia.com/gpu"];
    const gpuRequest = c.resources?.requests?.["nvidia.com/gpu"];
    const tp = Number(get("tp"));
    if (s.role === "router") {
      check(`${id}: the router requests no GPU`, gpuLimit === undefined && gpuRequest === undefined);
    } else {
      const memLimit = parseQuantity(c.resources?.limits?.memory);
      const kvBytes = Number(get("kv_cache_mb")) * 1024 ** 2;
      check(`${id}: memory limit (${c.resources?.limits?.memory}) exceeds --kv_cache_mb=${get("kv_cache_mb")}`,
        memLimit > kvBytes);
      if (expectGpu) {
        check(`${id}: nvidia.com/gpu = --tp (${tp})`, Number(gpuLimit) === tp && Number(gpuRequest ?? gpuLimit) === tp,
          `limit ${gpuLimit}, request ${gpuRequest}`);
        const envNames = new Map((c.env ?? []).map((e) => [e.name, e.value]));
        check(`${id}: NCCL_NVLS_ENABLE=0`, envNames.get("NCCL_NVLS_ENABLE") === "0");
        check(`${id}: tolerates the nvidia.com/gpu taint`, (spec.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu"));
        check(`${id}: is placed on a GPU node`, Object.keys(spec.nodeSelector ?? {}).some((k) => k.startsWith("nvidia.com/")) || spec.affinity);
        const shm = (c.volumeMounts ?? []).find((m) => m.mountPath === "/dev/shm");
        check(`${id}: /dev/shm is a memory-backed emptyDir (NCCL)`,
          shm && (spec.volumes ?? []).find((v) => v.name === shm.name)?.emptyDir?.medium === "Memory");
      } else {
        check(`${id}: CPU-only: no nvidia.com/gpu`, gpuLimit === undefined && gpuRequest === undefined);
        check(`${id}: CPU request (${c.resources?.requests?.cpu}) covers --tp=${tp} threads`,
          parseQuantity(c.resources?.requests?.cpu) >= tp);
      }
    }
  }
  const models = new Set(servers.map((s) => s.get("model")));
  check(`${label}: router, prefill and decode serve the same --model`, models.size === 1, [...models].join(", "));
  const blockSizes = new Set(byRole("prefill").concat(byRole("decode")).map((s) => s.get("block_size")));
  check(`${label}: prefill and decode use the same --block_size`, blockSizes.size === 1, [...blockSizes].join(", "));

  // Services: selectors, target ports, headless worker Services.
  for (const svc of services) {
    const id = `${label}: Service/${svc.metadata.name}`;
    const selected = servers.filter((s) => selects(svc.spec.selector, podLabels(s.w)));
    check(`${id}: selects claa-server pods`, selected.length > 0);
    for (const p of svc.spec.ports ?? []) {
      const ok = selected.every((s) => {
        const cp = (s.c.ports ?? []).find((x) => (typeof p.targetPort === "string" ? x.name === p.targetPort : x.containerPort === (p.targetPort ?? p.port)));
        return cp && (p.name !== "grpc" || cp.containerPort === Number(s.get("port")));
      });
      check(`${id}: port ${p.name} targets a container port (grpc = --port)`, ok);
    }
  }
  const replicasOf = (w) => {
    const hpa = hpas.find((h) => h.spec.scaleTargetRef.kind === w.kind && h.spec.scaleTargetRef.name === w.metadata.name);
    return { hpa, max: hpa ? hpa.spec.maxReplicas : (w.spec.replicas ?? 1) };
  };
  for (const role of ["prefill", "decode"]) {
    for (const s of byRole(role)) {
      const svc = services.find((x) => x.metadata.name === s.w.spec.serviceName);
      check(`${s.id}: serviceName ${s.w.spec.serviceName} is a headless Service selecting its pods`,
        svc && svc.spec.clusterIP === "None" && selects(svc.spec.selector, podLabels(s.w)));
      check(`${s.id}: its headless Service publishes not-ready pods (names resolve while models load)`,
        svc?.spec.publishNotReadyAddresses === true);
    }
  }

  // The router's worker lists: <sts>-<i>.<service>[.<namespace>.svc[.cluster.local]]:<port>,
  // i = 0 .. maxReplicas-1 of the StatefulSet's autoscaler (or its replicas without one).
  for (const r of byRole("router")) {
    for (const [flag, role] of [["prefill_workers", "prefill"], ["decode_workers", "decode"]]) {
      const target = byRole(role)[0];
      if (!target) continue;
      const list = (r.get(flag) ?? "").split(",").map((x) => x.trim()).filter(Boolean);
      const { max, hpa } = replicasOf(target.w);
      const sts = target.w.metadata.name;
      const svc = target.w.spec.serviceName;
      const port = target.get("port");
      const want = [...Array(max).keys()].map((i) => `${sts}-${i}.${svc}`);
      const got = list.map((a) => {
        const m = a.match(/^([^:]+):(\d+)$/);
        if (!m || m[2] !== port) return `bad:${a}`;
        return m[1].replace(new RegExp(`\\.(${namespace}|\\$\\(NAMESPACE\\))\\.svc(\\.cluster\\.local)?$`), "");
      });
      check(`${r.id}: --${flag} names ${sts}-0..${max - 1} (${hpa ? "the HPA's maxReplicas" : "replicas"}) at ${svc}:${port}`,
        JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(list)}, want ${JSON.stringify(want.map((h) => `${h}:${port}`))}`);
    }
  }
  // Prefill workers advertise their own stable name.
  for (const p of byRole("prefill")) {
    const want = `${p.sample}.${p.w.spec.serviceName}.${namespace}.svc:${p.get("port")}`;
    const raw = (p.c.args ?? []).find((a) => a.startsWith("--advertise_address="));
    check(`${p.id}: --advertise_address is the pod's own DNS name ($(POD_NAME).${p.w.spec.serviceName}.$(NAMESPACE).svc:port)`,
      p.get("advertise_address") === want && /\$\(\w+\)/.test(raw ?? ""), `${p.get("advertise_address")} vs ${want}`);
  }
  // Pruning defaults: resolved by the router, so they must be set there.
  for (const r of byRole("router")) {
    const ratio = Number(r.get("keep_ratio"));
    check(`${r.id}: --keep_ratio in (0, 1]`, ratio > 0 && ratio <= 1);
  }

  // Autoscalers.
  const adapter = YAML.parse(fs.readFileSync(path.join(K8S, "prometheus-adapter", "values.yaml"), "utf8"));
  const adapterMetrics = new Set((adapter.rules?.custom ?? []).map((r) => r.name?.as));
  for (const h of hpas) {
    const id = `${label}: HorizontalPodAutoscaler/${h.metadata.name}`;
    const target = ws.find((w) => w.kind === h.spec.scaleTargetRef.kind && w.metadata.name === h.spec.scaleTargetRef.name);
    check(`${id}: scales an existing workload`, target && h.spec.scaleTargetRef.apiVersion === "apps/v1");
    const metrics = (h.spec.metrics ?? []).map((m) => m.pods?.metric?.name ?? m.external?.metric?.name);
    check(`${id}: scales on claa_num_requests_waiting (Pods or External metric)`, metrics.includes("claa_num_requests_waiting"));
    check(`${id}: prometheus-adapter/values.yaml serves its metrics`, metrics.every((m) => adapterMetrics.has(m)), [...adapterMetrics].join(","));
    if (target) {
      const rep = target.spec.replicas ?? 1;
      check(`${id}: minReplicas <= replicas (${rep}) <= maxReplicas`, (h.spec.minReplicas ?? 1) <= rep && rep <= h.spec.maxReplicas);
    }
  }
  // Disruption budgets.
  for (const pdb of byKind("PodDisruptionBudget")) {
    const id = `${label}: PodDisruptionBudget/${pdb.metadata.name}`;
    const target = ws.filter((w) => selects(pdb.spec.selector?.matchLabels, podLabels(w)));
    check(`${id}: selects exactly one workload`, target.length === 1);
    if (target.length === 1 && pdb.spec.minAvailable !== undefined) {
      check(`${id}: minAvailable (${pdb.spec.minAvailable}) < replicas (${target[0].spec.replicas}), so a drain can proceed`,
        Number(pdb.spec.minAvailable) < (target[0].spec.replicas ?? 1));
    }
  }
  for (const s of servers) {
    check(`${s.id}: has a PodDisruptionBudget`,
      byKind("PodDisruptionBudget").some((p) => selects(p.spec.selector?.matchLabels, podLabels(s.w))));
  }
  // PodMonitor: every server's metrics port, job name as deploy/prometheus/alerts.yml expects.
  const alerts = fs.readFileSync(path.join(SRC, "deploy", "prometheus", "alerts.yml"), "utf8");
  const alertJob = alerts.match(/up\{job="([^"]+)"\}/)?.[1];
  for (const pm of byKind("PodMonitor")) {
    const id = `${label}: PodMonitor/${pm.metadata.name}`;
    const selected = servers.filter((s) => selects(pm.spec.selector?.matchLabels, podLabels(s.w)));
    check(`${id}: selects the router, prefill and decode pods`, selected.length === servers.length && servers.length > 0);
    for (const ep of pm.spec.podMetricsEndpoints ?? []) {
      check(`${id}: endpoint ${ep.port} is --metrics_port on every selected pod, path /metrics`,
        (ep.path ?? "/metrics") === "/metrics" &&
          selected.every((s) => (s.c.ports ?? []).find((p) => p.name === ep.port)?.containerPort === Number(s.get("metrics_port"))));
    }
    const jobs = new Set(selected.map((s) => podLabels(s.w)[pm.spec.jobLabel]));
    check(`${id}: job label = "${alertJob}" (deploy/prometheus/alerts.yml)`, jobs.size === 1 && jobs.has(alertJob), [...jobs].join(","));
  }
  // ConfigMap keys are all used.
  for (const cm of byKind("ConfigMap")) {
    const used = new Set(servers.flatMap((s) => [...(s.c.args ?? []), ...(s.c.env ?? []).map((e) => e.value ?? "")]
      .flatMap((a) => [...a.matchAll(/\$\(([A-Za-z0-9_]+)\)/g)].map((m) => m[1]))));
    const unused = Object.keys(cm.data ?? {}).filter((k) => !used.has(k));
    check(`${label}: ConfigMap/${cm.metadata.name}: every key is passed to claa-server`, unused.length === 0, unused.join(", "));
  }
  for (const s of servers) {
    check(`${s.id}: image is claa-server (${s.c.image})`, isClaa(s.c));
  }
  return servers;
}

// ---------------------------------------------------------------------------------------
// Smoke run: the rendered commands on loopback.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function startServer(binary, argv, logFile) {
  const proc = spawn(binary, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const log = fs.createWriteStream(logFile);
  let text = "";
  const waiters = [];
  const settle = (w, ok) => {
    const i = waiters.indexOf(w);
    if (i < 0) return;
    waiters.splice(i, 1);
    clearTimeout(w.timer);
    w.resolve(ok);
  };
  const onData = (d) => {
    text += d.toString();
    log.write(d);
    for (const w of [...waiters]) if (w.re.test(text)) settle(w, true);
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  // "close": the process exited and its stdout/stderr are drained (its last words are in the log).
  const exited = new Promise((resolve) => proc.on("close", (code, signal) => resolve({ code, signal })));
  exited.then(() => {
    log.end();
    for (const w of [...waiters]) settle(w, false);
  });
  return {
    proc,
    exited,
    log: () => text,
    waitFor(re, ms) {
      if (re.test(text)) return Promise.resolve(true);
      return new Promise((resolve) => {
        const w = { re, resolve, timer: null };
        waiters.push(w);
        w.timer = setTimeout(() => settle(w, false), ms);
      });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 15000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

async function smoke(label, servers, ctx) {
  const dir = path.join(WORK, label.replace(/[^a-z0-9-]/gi, "_"));
  fs.mkdirSync(dir, { recursive: true });
  const role = (r) => servers.find((s) => s.role === r);
  const [prefill, decode, router] = [role("prefill"), role("decode"), role("router")];
  if (!prefill || !decode || !router) return;
  const KV_CAP_MB = 256;
  const local = async (s, extra) => {
    const port = await freePort();
    const mport = await freePort();
    const overrides = ["--host=127.0.0.1", `--port=${port}`, `--metrics_port=${mport}`, ...extra(port)];
    const notes = [];
    const model = s.get("model");
    if (model && !fs.existsSync(model)) {
      overrides.push("--model=");
      notes.push(`--model=${model} absent here: built-in model`);
    }
    if (s.role !== "router" && Number(s.get("kv_cache_mb")) > KV_CAP_MB) {
      overrides.push(`--kv_cache_mb=${KV_CAP_MB}`);
      notes.push(`--kv_cache_mb=${s.get("kv_cache_mb")} capped to ${KV_CAP_MB}`);
    }
    return { argv: [...s.argv.slice(0), ...overrides], port, mport, notes };
  };
  const p = await local(prefill, (port) => [`--advertise_address=127.0.0.1:${port}`]);
  const d = await local(decode, () => []);
  const procs = [];
  try {
    for (const [name, x] of [["prefill", p], ["decode", d]]) {
      info(`${label}: ${name}: claa-server ${x.argv.join(" ")}${x.notes.length ? `  (${x.notes.join("; ")})` : ""}`);
    }
    const ps = startServer(ctx.server, p.argv, path.join(dir, "prefill.log"));
    const ds = startServer(ctx.server, d.argv, path.join(dir, "decode.log"));
    procs.push(ps, ds);
    const [pUp, dUp] = await Promise.all([ps.waitFor(/listening on/, 60000), ds.waitFor(/listening on/, 60000)]);
    check(`${label}: the rendered prefill command starts`, pUp, `\n${ps.log()}`);
    check(`${label}: the rendered decode command starts`, dUp, `\n${ds.log()}`);
    if (!pUp || !dUp) return;
    const r = await local(router, () => [`--prefill_workers=127.0.0.1:${p.port}`, `--decode_workers=127.0.0.1:${d.port}`]);
    info(`${label}: router: claa-server ${r.argv.join(" ")}${r.notes.length ? `  (${r.notes.join("; ")})` : ""}`);
    const rs = startServer(ctx.server, r.argv, path.join(dir, "router.log"));
    procs.push(rs);
    const rUp = await rs.waitFor(/listening on/, 60000);
    check(`${label}: the rendered router command starts`, rUp, `\n${rs.log()}`);
    if (!rUp) return;
    check(`${label}: the router finds its prefill and decode workers healthy`,
      /router: 1\/1 prefill and 1\/1 decode workers healthy/.test(rs.log()), `\n${rs.log()}`);
    if (ctx.loadgen) {
      const json = path.join(dir, "loadgen.json");
      const lg = spawnSync(ctx.loadgen, [`--target=127.0.0.1:${r.port}`, "--num_prompts=4", "--max_concurrency=2",
        "--random_input_len=64", "--random_output_len=4", `--result_json=${json}`, "--timeout_s=60", "--connect_timeout_s=10"],
      { encoding: "utf8", timeout: 90000 });
      let result = {};
      try {
        result = JSON.parse(fs.readFileSync(json, "utf8"));
      } catch {
        // reported below
      }
      check(`${label}: claa-loadgen completes 4/4 requests through router -> prefill -> decode`,
        lg.status === 0 && result.completed === 4 && result.failed === 0,
        `rc ${lg.status}, completed ${result.completed}, failed ${result.failed}, failures ${JSON.stringify(result.failure_reasons)}\n${lg.stdout}${lg.stderr}`);
    }
    for (const [name, x] of [["prefill", p], ["decode", d], ["router", r]]) {
      let body = "";
      try {
        body = await (await fetch(`http://127.0.0.1:${x.mport}/metrics`)).text();
      } catch (e) {
        body = String(e);
      }
      check(`${label}: ${name} serves /metrics on --metrics_port with claa_num_requests_waiting (the HPA metric)`,
        /^claa_num_requests_waiting\{/m.test(body), body.slice(0, 300));
      if (ctx.loadgen) {
        check(`${label}: ${name} metrics carry role="${name}" after the requests`, body.includes(`role="${name}"`));
      }
    }
  } finally {
    const results = await Promise.all(procs.map((x) => x.stop()));
    check(`${label}: every server exits 0 on SIGTERM`, results.every((x) => x.code === 0), JSON.stringify(results));
  }
}

// ---------------------------------------------------------------------------------------
async function main() {
  const flags = serverFlags(args.server);
  check(`claa-server --help lists its flags (${flags.size})`, flags.has("port") && flags.has("role") && flags.has("metrics_port"));
  const roles = roleValues(flags);
  check(`--role's help names the roles (${[...roles].join(", ")})`, ["router", "prefill", "decode"].every((r) => roles.has(r)));
  const image = dockerfileRuntime(path.join(SRC, "docker", "Dockerfile"));
  check("docker/Dockerfile has a JSON-form ENTRYPOINT running claa-server",
    Array.isArray(image?.entrypoint) && path.basename(image.entrypoint[0]) === "claa-server");
  const entryFlags = parseFlags(image.entrypoint.slice(1), []);
  check("the ENTRYPOINT's flags are claa-server flags", entryFlags.every((f) => flags.has(f.name)));
  for (const f of entryFlags.filter((x) => ["port", "metrics_port"].includes(x.name))) {
    check(`the image EXPOSEs --${f.name}=${f.value}`, image.expose.includes(f.value));
  }
  const ctx = { flags, roles, image, server: args.server, loadgen: args.loadgen };

  const dirs = [path.join(K8S, "base")];
  const overlaysDir = path.join(K8S, "overlays");
  for (const d of fs.readdirSync(overlaysDir).sort()) {
    if (fs.existsSync(path.join(overlaysDir, d, "kustomization.yaml"))) dirs.push(path.join(overlaysDir, d));
  }
  check("overlays cpu and gpu-single-node exist", ["cpu", "gpu-single-node"].every((o) => dirs.includes(path.join(overlaysDir, o))));
  for (const dir of dirs) {
    const label = path.relative(K8S, dir);
    const r = spawnSync(args.kubectl, ["kustomize", dir], { encoding: "utf8", maxBuffer: 64 << 20 });
    if (!check(`${label}: kubectl kustomize renders`, r.status === 0, r.stderr)) continue;
    fs.writeFileSync(path.join(WORK, `${label.replace(/\//g, "_")}.yaml`), r.stdout);
    const objs = YAML.parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean);
    info(`${label}: ${objs.length} objects: ${objs.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);
    checkSchemas(label, objs);
    const servers = checkRendering(label, objs, ctx);
    await smoke(label, servers, ctx);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((e) => {
  console.log(`[ FAIL ] ${e.stack}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exitCode = 1;
});
