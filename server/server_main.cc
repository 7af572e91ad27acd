// claa-server: the gRPC serving front end. With no arguments it serves the built-in demo model
// (random weights, byte-level tokenizer) on 127.0.0.1:50051 with metrics on :9464.
//
// Roles (--role): all (default; router, prefill and decode in one process, one continuous
// batch), router (public API in front of --prefill_workers and --decode_workers), prefill and
// decode (the internal worker services of claa/internal/v1/worker.proto).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/flags_usage.h"
#include "absl/strings/str_cat.h"
#include "engine/generate/loaded_model.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "scheduler/scheduler.h"
#include "absl/strings/str_split.h"
#include "scheduler/kv_lease_table.h"
#include "server/decode_worker_service.h"
#include "server/kv_links.h"
#include "server/generation_service.h"
#include "server/metrics.h"
#include "server/prefill_service.h"
#include "server/prefill_worker_service.h"
#include "server/router_service.h"
#include "server/security/model_root.h"
#include "server/security/server_security.h"
#include "server/worker_pool.h"

ABSL_FLAG(std::string, role, "all",
          "all: serve everything in one process. router: the public API, forwarding to "
          "--prefill_workers and --decode_workers. prefill / decode: an internal worker.");
ABSL_FLAG(std::string, prefill_workers, "",
          "router: comma-separated host:port of prefill workers.");
ABSL_FLAG(std::string, decode_workers, "",
          "router: comma-separated host:port of decode workers.");
ABSL_FLAG(std::string, advertise_address, "",
          "prefill: host:port decode workers fetch KV caches from (default --host:bound port).");
ABSL_FLAG(std::string, kv_transport, "auto",
          "prefill / decode: how prefilled KV caches move. auto: GPU to GPU over NCCL when both "
          "workers run on one GPU each (--device=cuda, --tp=1), else host-staged over gRPC; a "
          "failed NCCL transfer falls back to gRPC. nccl: NCCL only (the worker must run on one "
          "GPU; a failed transfer fails the request, which the router retries elsewhere). grpc: "
          "never NCCL.");
ABSL_FLAG(int, kv_lease_seconds, 30,
          "prefill: a prefilled KV cache nobody fetched is freed after this many seconds.");
// Deadlines between router and workers. The defaults suit workers on one network; slow builds
// (the sanitizer test runs) raise them, together with --kv_lease_seconds.
ABSL_FLAG(int, kv_fetch_wait_ms, 5000,
          "prefill: a KV fetch of a ticket that another fetch still holds (the router retrying a "
          "cut transfer on another decode worker) waits this long for it, then fails.");
ABSL_FLAG(int, health_probe_timeout_ms, 1000,
          "router: deadline of each worker health probe (GetLoad, five times a second); a worker "
          "that does not answer in time leaves the rotation until it answers again.");
ABSL_FLAG(int, kv_release_timeout_ms, 2000,
          "router: deadline of the call that frees a prefilled KV cache no decode worker will "
          "fetch (abort, failed decode); if it passes, the lease frees it (--kv_lease_seconds).");
ABSL_FLAG(int, abort_timeout_ms, 5000,
          "router: deadline of an Abort forwarded to the decode worker running the request.");
ABSL_FLAG(std::string, model, "",
          "Hugging Face model directory (config.json, *.safetensors, tokenizer.json). Empty: "
          "the built-in demo model (random weights; its text is not meaningful).");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address the gRPC server binds to (0.0.0.0 for all interfaces).");
ABSL_FLAG(int, port, 50051, "gRPC port; 0 picks a free port (printed at start-up).");
ABSL_FLAG(int, metrics_port, 9464,
          "Prometheus /metrics HTTP port on --host; 0 picks a free port, -1 disables metrics.");
ABSL_FLAG(int, tp, 1,
          "Tensor-parallel ranks: CPU threads, or with --device=cuda GPUs --gpu_device.. "
          "(NCCL between them).");
ABSL_FLAG(std::string, device, "auto",
          "Where the model runs: cpu; cuda (the CUDA backend libclaa_cuda_backend.so, loaded "
          "with dlopen, bf16 on the GPU; start-up fails without it or a GPU); auto (cuda when "
          "the library and a GPU are there, else cpu). Prefill and decode workers on GPUs hand their "
          "KV caches over with NCCL (see --kv_transport), others through host memory (gRPC).");
ABSL_FLAG(int, gpu_device, 0, "First CUDA device of the model's GPUs (--device=cuda/auto).");
ABSL_FLAG(int, kv_cache_mb, 512,
          "KV cache budget in MiB (fp32, all ranks). It bounds concurrent tokens and, for "
          "long-context models, the served context length. On GPUs the bf16 pools hold the same "
          "number of tokens in half the memory.");
ABSL_FLAG(int, block_size, 16, "Tokens per paged KV cache block.");
ABSL_FLAG(int, max_waiting, 256,
          "Requests queued for admission; beyond it Generate returns RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, pruning_method, "full",
          "Prompt pruning for requests that do not choose one: full (none), claa, fastkv or "
          "gemfilter. Layers and window follow the paper's settings scaled to the model depth.");
ABSL_FLAG(double, keep_ratio, 0.2,
          "Fraction of the prompt a pruned prefill keeps when the request does not say, (0, 1].");
ABSL_FLAG(int, max_running, 64, "Requests decoded together in one batched step.");
ABSL_FLAG(int, max_prefill_tokens, 4096,
          "Prompt tokens prefilled in one step; a longer prompt runs alone.");
ABSL_FLAG(bool, prefill_rpcs, true,
          "--role=all: serve claa.v1.Prefill (Score, Classify, Embed) on a second copy of the "
          "weights, so prefill-only requests never share the generation runner.");
ABSL_FLAG(int, prefill_kv_cache_mb, 64,
          "KV cache of the prefill-only runner in MiB (all ranks); bounds the longest prompt "
          "Score / Classify / Embed accept.");
ABSL_FLAG(std::string, attn_cache_dir, "",
          "AttnCache directory (attention maps reused by similar prefill-only requests, kept "
          "across restarts). Empty: no cache.");
ABSL_FLAG(int, attn_cache_max_mb, 1024,
          "Bound on the AttnCache store in MiB; least recently used entries are evicted.");
ABSL_FLAG(int, attn_cache_gpu_mb, 2048,
          "On GPUs: device memory per GPU in MiB that keeps AttnCache hit maps resident between "
          "requests (a hit whose maps are not resident copies them from the store first).");
ABSL_FLAG(double, attn_cache_threshold, 0.995,
          "AttnCache reuses an entry when 1 - L2 distance of the lookup features >= this.");
ABSL_FLAG(std::string, attn_cache_projector, "",
          "AttnCache lookup feature: a Siamese MLP file trained for this model "
          "(claa-bench-attncache --mode=mlp writes one). Empty: a fixed random projection.");

// Security (README "Security", docs/deploy.md). Every part is off by default.
ABSL_FLAG(std::string, tls_cert_file, "",
          "--role=all|router: PEM certificate chain of the public port; with --tls_key_file the "
          "port speaks TLS only. Empty: plaintext.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, auth_token_file, "",
          "--role=all|router: file holding a bearer token (surrounding whitespace trimmed). Every "
          "public call (Generation, Prefill, reflection) must then carry the metadata "
          "'authorization: Bearer <token>', else UNAUTHENTICATED; grpc.health.v1.Health stays "
          "open for probes. Use with TLS: without it the token crosses the network in clear.");
ABSL_FLAG(std::string, internal_tls_cert_file, "",
          "Internal mutual TLS, with --internal_tls_key_file and --internal_tls_ca_file (all "
          "three or none). --role=prefill|decode: the worker's port presents this certificate "
          "and accepts only clients whose certificate --internal_tls_ca_file signed (calls "
          "without one fail in the handshake, health checks included). --role=router and the "
          "decode worker's KV fetches: the client certificate presented to workers, whose "
          "certificates must chain to --internal_tls_ca_file.");
ABSL_FLAG(std::string, internal_tls_key_file, "", "PEM private key of --internal_tls_cert_file.");
ABSL_FLAG(std::string, internal_tls_ca_file, "",
          "PEM CA certificate that signs every internal certificate (use a CA of its own: any "
          "certificate it signed may call the workers).");
ABSL_FLAG(std::string, internal_tls_server_name, "",
          "Name a worker's certificate must carry, instead of the host part of its address "
          "(e.g. one certificate shared by all workers). Empty: the address's host.");
ABSL_FLAG(std::string, model_root, "",
          "When set, --model, --attn_cache_dir and --attn_cache_projector (and the files directly "
          "inside --model) must resolve, symlinks and '..' followed, inside this directory, else "
          "start-up fails. Empty: no restriction.");

namespace {

int Fail(const std::string& what) {
  std::cerr << "claa-server: " << what << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  claa::ShowFlagsOfFileInHelp("server/server_main.cc");
  absl::SetProgramUsageMessage(
      "CLAA LLM serving server (gRPC claa.v1.Generation, grpc.health.v1, reflection).\n"
      "Usage: claa-server [--model DIR] [--host H] [--port P] [--metrics_port M] [--tp N]\n"
      "       claa-server --role=prefill|decode [...]   internal workers\n"
      "       claa-server --role=router --prefill_workers=H:P,... --decode_workers=H:P,...\n"
      "With no --model it serves a built-in tiny model with random weights so that the\n"
      "server starts anywhere; pass --model to serve a real Hugging Face Llama, Mistral or\n"
      "Qwen2 directory.\n"
      "Security (all off by default; README \"Security\"): --tls_cert_file/--tls_key_file (TLS\n"
      "on the public port), --auth_token_file (bearer token on the public API; health checks\n"
      "stay open), --internal_tls_cert_file/--internal_tls_key_file/--internal_tls_ca_file\n"
      "(mutual TLS between router and workers), --model_root (confines model paths). The\n"
      "metrics port is always plaintext HTTP without authentication.\n"
      "Metrics (GET /metrics on --metrics_port; docs/metrics.md explains each):\n"
      "  histograms: claa_time_to_first_token_seconds, claa_inter_token_latency_seconds,\n"
      "    claa_e2e_request_latency_seconds, claa_request_queue_time_seconds,\n"
      "    claa_request_prefill_time_seconds, claa_prompt_kept_ratio, claa_kv_transfer_seconds,\n"
      "    claa_decode_queue_time_seconds, claa_prefill_only_request_seconds\n"
      "  counters: claa_prompt_tokens_total, claa_generation_tokens_total,\n"
      "    claa_request_success_total, claa_request_failure_total, claa_num_preemptions_total,\n"
      "    claa_kv_transfer_bytes_total, claa_attn_cache_lookups_total,\n"
      "    claa_attn_cache_hits_total, claa_attn_cache_evictions_total\n"
      "  gauges: claa_num_requests_running, claa_num_requests_waiting, claa_kv_cache_usage_perc,\n"
      "    claa_kv_leased_tickets, claa_attn_cache_store_bytes");
  absl::ParseCommandLine(argc, argv);
  // Block SIGINT/SIGTERM before any thread starts (threads inherit the mask), so that main can
  // wait for them with sigwait and shut down outside a signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string role = absl::GetFlag(FLAGS_role);
  if (role != "all" && role != "router" && role != "prefill" && role != "decode") {
    return Fail("--role must be all, router, prefill or decode");
  }
  // Checked before the (possibly long) model load, so a bad flag fails at once.
  absl::StatusOr<claa::security::ServerSecurity> security =
      claa::security::ConfigureServerSecurity(
          {.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
           .tls_key_file = absl::GetFlag(FLAGS_tls_key_file),
           .auth_token_file = absl::GetFlag(FLAGS_auth_token_file),
           .internal_tls_cert_file = absl::GetFlag(FLAGS_internal_tls_cert_file),
           .internal_tls_key_file = absl::GetFlag(FLAGS_internal_tls_key_file),
           .internal_tls_ca_file = absl::GetFlag(FLAGS_internal_tls_ca_file),
           .internal_tls_server_name = absl::GetFlag(FLAGS_internal_tls_server_name)},
          role);
  if (!security.ok()) return Fail(std::string(security.status().message()));
  for (const std::string& w : security->warnings) {
    std::cerr << "claa-server: warning: " << w << std::endl;
  }
  claa::security::ModelPaths paths;
  paths.model_dir = absl::GetFlag(FLAGS_model);
  paths.attn_cache_dir = absl::GetFlag(FLAGS_attn_cache_dir);
  paths.attn_cache_projector = absl::GetFlag(FLAGS_attn_cache_projector);
  if (const std::string root = absl::GetFlag(FLAGS_model_root); !root.empty()) {
    absl::Status confined = claa::security::ConfineModelPaths(root, paths);
    if (!confined.ok()) return Fail(std::string(confined.message()));
  }
  claa::ModelLoadOptions load;
  load.load_weights = role != "router";  // the router tokenizes; it runs no model
  load.model_dir = paths.model_dir;
  load.tp_size = absl::GetFlag(FLAGS_tp);
  load.kv_cache_bytes = int64_t{absl::GetFlag(FLAGS_kv_cache_mb)} << 20;
  load.block_size = absl::GetFlag(FLAGS_block_size);
  load.device = absl::GetFlag(FLAGS_device);
  load.gpu_device = absl::GetFlag(FLAGS_gpu_device);
  if (load.device != "cpu" && load.device != "cuda" && load.device != "auto") {
    return Fail("--device must be cpu, cuda or auto");
  }
  if (load.gpu_device < 0) return Fail("--gpu_device must be >= 0");
  if (load.tp_size < 1) return Fail("--tp must be >= 1");
  if (load.block_size < 1) return Fail("--block_size must be >= 1");
  if (absl::GetFlag(FLAGS_kv_cache_mb) < 1) return Fail("--kv_cache_mb must be >= 1");
  absl::StatusOr<claa::KvTransport> transport =
      claa::ParseKvTransport(absl::GetFlag(FLAGS_kv_transport));
  if (!transport.ok()) return Fail(std::string(transport.status().message()));
  std::cerr << "claa-server: loading "
            << (load.model_dir.empty() ? "the built-in demo model (random weights)"
                                       : load.model_dir)
            << " (tp=" << load.tp_size << ")" << std::endl;
  absl::StatusOr<std::unique_ptr<claa::LoadedModel>> model = claa::LoadModel(load);
  if (!model.ok()) return Fail(std::string(model.status().ToString()));
  if ((*model)->runner != nullptr) {
    std::cerr << "claa-server: model on " << (*model)->device_description << std::endl;
  }
  if (!(*model)->device_note.empty()) {
    std::cerr << "claa-server: " << (*model)->device_note << std::endl;
  }

  absl::StatusOr<claa::PruningMethod> method =
      claa::ParsePruningMethod(absl::GetFlag(FLAGS_pruning_method));
  if (!method.ok() || *method == claa::PruningMethod::kOracle) {
    return Fail("--pruning_method must be full, claa, fastkv or gemfilter");
  }
  const claa::PruningConfig default_pruning = claa::DefaultPruningConfig(
      *method, (*model)->config.num_layers, absl::GetFlag(FLAGS_keep_ratio));
  if (absl::Status s = claa::ValidatePruningConfig(default_pruning, (*model)->config.num_layers);
      !s.ok()) {
    return Fail(absl::StrCat("--keep_ratio: ", s.message()));
  }

  claa::ServerMetrics metrics((*model)->name, role == "all" ? "unified" : role);
  const std::string host = absl::GetFlag(FLAGS_host);
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    absl::StatusOr<int> mport = metrics.StartExposer(host, absl::GetFlag(FLAGS_metrics_port));
    if (!mport.ok()) return Fail(std::string(mport.status().message()));
    std::cout << "claa-server: metrics on http://" << host << ":" << *mport << "/metrics"
              << std::endl;
  }

  claa::SchedulerOptions sched;
  sched.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  sched.max_running = absl::GetFlag(FLAGS_max_running);
  sched.max_prefill_tokens = absl::GetFlag(FLAGS_max_prefill_tokens);
  if (sched.max_waiting < 1 || sched.max_running < 1 || sched.max_prefill_tokens < 1) {
    return Fail("--max_waiting, --max_running and --max_prefill_tokens must be >= 1");
  }

  // What each role serves; the unused ones stay empty.
  std::atomic<claa::Scheduler*> wake_on_free{nullptr};
  std::atomic<claa::KvLeaseTable*> lease_table{nullptr};
  std::unique_ptr<claa::KvLeaseTable> leases;
  std::unique_ptr<claa::Scheduler> scheduler;
  std::unique_ptr<claa::ChannelCache> channels;
  std::unique_ptr<claa::WorkerPool> prefill_pool, decode_pool;
  std::unique_ptr<grpc::Service> service;
  claa::PrefillWorkerService* prefill_service = nullptr;
  std::unique_ptr<claa::KvLinkSenders> kv_links;
  // The NCCL links run on single-GPU models; anything else keeps the gRPC transport.
  const bool nccl_capable = (*model)->runner != nullptr && (*model)->runner->on_gpu() &&
                            (*model)->runner->tp_size() == 1;
  if ((role == "prefill" || role == "decode") && *transport == claa::KvTransport::kNccl &&
      !nccl_capable) {
    return Fail("--kv_transport=nccl needs the worker's model on one GPU (--device=cuda, --tp=1)");
  }
  if (role == "prefill" || role == "decode") {
    std::cerr << "claa-server: KV handoff "
              << (nccl_capable && *transport != claa::KvTransport::kGrpc
                      ? (*transport == claa::KvTransport::kNccl
                             ? "over NCCL only"
                             : "over NCCL where the other worker offers it, else gRPC")
                      : "over gRPC (host-staged)")
              << std::endl;
  }
  if (role == "prefill") {
    if (absl::GetFlag(FLAGS_kv_lease_seconds) < 1) return Fail("--kv_lease_seconds must be >= 1");
    if (absl::GetFlag(FLAGS_kv_fetch_wait_ms) < 0) return Fail("--kv_fetch_wait_ms must be >= 0");
    // Freed leases wake the scheduler (its admission may be waiting for those blocks). The
    // callback runs on the reaper and handler threads, so it reads the table through an atomic
    // (as wake_on_free), never through `leases`, which main writes while it resets it.
    leases = std::make_unique<claa::KvLeaseTable>(
        &(*model)->runner->block_manager(), absl::Seconds(absl::GetFlag(FLAGS_kv_lease_seconds)),
        [&wake_on_free, &metrics, &lease_table] {
          if (claa::Scheduler* s = wake_on_free.load()) {
            s->Wake();
            s->ReportState();  // the KV usage gauge drops while the scheduler may be idle
          }
          if (claa::KvLeaseTable* t = lease_table.load()) metrics.SetLeasedTickets(t->size());
        });
    lease_table = leases.get();
    sched.handoff_sink = leases.get();
    scheduler = std::make_unique<claa::Scheduler>(model->get(), sched, &metrics);
    wake_on_free = scheduler.get();
    if (nccl_capable && *transport != claa::KvTransport::kGrpc) {
      kv_links = std::make_unique<claa::KvLinkSenders>(&(*model)->runner->gpu_model());
    }
    auto s = std::make_unique<claa::PrefillWorkerService>(
        model->get(), scheduler.get(), leases.get(), "", &metrics,
        absl::Milliseconds(absl::GetFlag(FLAGS_kv_fetch_wait_ms)), kv_links.get());
    prefill_service = s.get();
    service = std::move(s);
  } else if (role == "decode") {
    scheduler = std::make_unique<claa::Scheduler>(model->get(), sched, &metrics);
    service = std::make_unique<claa::DecodeWorkerService>(
        model->get(), scheduler.get(), &metrics, security->internal_client.credentials,
        security->internal_client.server_name, *transport);
  } else if (role == "router") {
    auto split = [](const std::string& list) {
      std::vector<std::string> out;
      for (absl::string_view a : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
        out.emplace_back(a);
      }
      return out;
    };
    std::vector<std::string> prefill = split(absl::GetFlag(FLAGS_prefill_workers));
    std::vector<std::string> decode = split(absl::GetFlag(FLAGS_decode_workers));
    if (prefill.empty() || decode.empty()) {
      return Fail("--role=router needs --prefill_workers and --decode_workers");
    }
    const int probe_ms = absl::GetFlag(FLAGS_health_probe_timeout_ms);
    claa::RouterTimeouts timeouts;
    timeouts.release_kv = absl::Milliseconds(absl::GetFlag(FLAGS_kv_release_timeout_ms));
    timeouts.abort = absl::Milliseconds(absl::GetFlag(FLAGS_abort_timeout_ms));
    if (probe_ms < 1 || timeouts.release_kv < absl::Milliseconds(1) ||
        timeouts.abort < absl::Milliseconds(1)) {
      return Fail("--health_probe_timeout_ms, --kv_release_timeout_ms and --abort_timeout_ms "
                  "must be >= 1");
    }
    channels = std::make_unique<claa::ChannelCache>(security->internal_client.credentials,
                                                    security->internal_client.server_name);
    prefill_pool = std::make_unique<claa::WorkerPool>(
        claa::WorkerPool::Kind::kPrefill, prefill, channels.get(), absl::Milliseconds(probe_ms));
    decode_pool = std::make_unique<claa::WorkerPool>(
        claa::WorkerPool::Kind::kDecode, decode, channels.get(), absl::Milliseconds(probe_ms));
    // Serve only once every worker was asked (a down one is retried in the background).
    prefill_pool->ProbeAll();
    decode_pool->ProbeAll();
    std::cerr << "claa-server: router: " << prefill_pool->healthy_count() << "/"
              << prefill_pool->size() << " prefill and " << decode_pool->healthy_count() << "/"
              << decode_pool->size() << " decode workers healthy" << std::endl;
    service = std::make_unique<claa::RouterService>(model->get(), default_pruning,
                                                    prefill_pool.get(), decode_pool.get(),
                                                    &metrics, timeouts);
  } else {
    scheduler = std::make_unique<claa::Scheduler>(model->get(), sched, &metrics);
    service = std::make_unique<claa::GenerationService>(model->get(), scheduler.get(), &metrics,
                                                        default_pruning);
  }

  // Prefill-only RPCs (server/prefill_service.h): a runner of their own, optional AttnCache.
  std::unique_ptr<claa::PrefillServing> prefill_only;
  if (role == "all" && absl::GetFlag(FLAGS_prefill_rpcs)) {
    if (absl::GetFlag(FLAGS_prefill_kv_cache_mb) < 1 ||
        absl::GetFlag(FLAGS_attn_cache_max_mb) < 1 ||
        absl::GetFlag(FLAGS_attn_cache_gpu_mb) < 0) {
      return Fail("--prefill_kv_cache_mb and --attn_cache_max_mb must be >= 1, "
                  "--attn_cache_gpu_mb >= 0");
    }
    claa::PrefillServingOptions po;
    po.cache_dir = paths.attn_cache_dir;
    po.cache_max_bytes = int64_t{absl::GetFlag(FLAGS_attn_cache_max_mb)} << 20;
    po.cache_threshold = absl::GetFlag(FLAGS_attn_cache_threshold);
    po.cache_projector = paths.attn_cache_projector;
    po.kv_cache_bytes = int64_t{absl::GetFlag(FLAGS_prefill_kv_cache_mb)} << 20;
    po.gpu_map_bytes = int64_t{absl::GetFlag(FLAGS_attn_cache_gpu_mb)} << 20;
    auto created = claa::PrefillServing::Create(**model, po, metrics.registry().get());
    if (!created.ok()) return Fail(absl::StrCat("prefill RPCs: ", created.status().message()));
    prefill_only = *std::move(created);
    for (const auto& r : prefill_only->refused) {
      std::cerr << "claa-server: " << r.error << std::endl;
    }
    if (prefill_only->cache) {
      std::cout << "claa-server: attn cache " << po.cache_dir << ": "
                << prefill_only->cache->entries() << " entries, "
                << prefill_only->cache->bytes() << " bytes, " << prefill_only->refused.size()
                << " files refused" << std::endl;
    }
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_port)),
                           security->port_credentials, &bound_port);
  // KV chunks and last-token logits of large vocabularies exceed the 4 MiB default.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(service.get());
  if (prefill_only) builder.RegisterService(prefill_only->service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::StrCat("cannot listen on ", host, ":", absl::GetFlag(FLAGS_port)));
  }
  if (prefill_service != nullptr) {
    const std::string advertised = absl::GetFlag(FLAGS_advertise_address);
    prefill_service->set_self_address(advertised.empty() ? absl::StrCat(host, ":", bound_port)
                                                         : advertised);
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  const claa::ModelConfig& c = (*model)->config;
  std::cout << "claa-server: " << role << " serving " << (*model)->name
            << ((*model)->builtin ? " (built-in demo model, random weights)" : "") << " ["
            << c.num_layers << " layers, hidden " << c.hidden_size << ", vocab " << c.vocab_size
            << ", context " << (*model)->max_context_length << "]" << std::endl;
  std::cout << "claa-server: " << security->summary << std::endl;
  std::cout << "claa-server: listening on " << host << ":" << bound_port << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cout << "claa-server: shutting down" << std::endl;
  server->GetHealthCheckService()->SetServingStatus(false);
  if (scheduler) scheduler->Shutdown();  // every open stream gets UNAVAILABLE
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  wake_on_free = nullptr;
  lease_table = nullptr;
  leases.reset();  // stops the reaper before the scheduler it wakes goes away
  return 0;
}
