// claa-server: the gRPC serving front end. With no arguments it serves the built-in demo model
// (random weights, byte-level tokenizer) on 127.0.0.1:50051 with metrics on :9464.
#include <pthread.h>
#include <signal.h>

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
#include "server/generation_service.h"
#include "server/metrics.h"

ABSL_FLAG(std::string, model, "",
          "Hugging Face model directory (config.json, *.safetensors, tokenizer.json). Empty: "
          "the built-in demo model (random weights; its text is not meaningful).");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address the gRPC server binds to (0.0.0.0 for all interfaces).");
ABSL_FLAG(int, port, 50051, "gRPC port; 0 picks a free port (printed at start-up).");
ABSL_FLAG(int, metrics_port, 9464,
          "Prometheus /metrics HTTP port on --host; 0 picks a free port, -1 disables metrics.");
ABSL_FLAG(int, tp, 1, "Tensor-parallel ranks (CPU threads, one per rank).");
ABSL_FLAG(int, kv_cache_mb, 512,
          "KV cache budget in MiB (fp32, all ranks). It bounds concurrent tokens and, for "
          "long-context models, the served context length.");
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
      "With no --model it serves a built-in tiny model with random weights so that the\n"
      "server starts anywhere; pass --model to serve a real Hugging Face Llama, Mistral or\n"
      "Qwen2 directory.");
  absl::ParseCommandLine(argc, argv);
  // Block SIGINT/SIGTERM before any thread starts (threads inherit the mask), so that main can
  // wait for them with sigwait and shut down outside a signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  claa::ModelLoadOptions load;
  load.model_dir = absl::GetFlag(FLAGS_model);
  load.tp_size = absl::GetFlag(FLAGS_tp);
  load.kv_cache_bytes = int64_t{absl::GetFlag(FLAGS_kv_cache_mb)} << 20;
  load.block_size = absl::GetFlag(FLAGS_block_size);
  if (load.tp_size < 1) return Fail("--tp must be >= 1");
  if (load.block_size < 1) return Fail("--block_size must be >= 1");
  if (absl::GetFlag(FLAGS_kv_cache_mb) < 1) return Fail("--kv_cache_mb must be >= 1");
  std::cerr << "claa-server: loading "
            << (load.model_dir.empty() ? "the built-in demo model (random weights)"
                                       : load.model_dir)
            << " (tp=" << load.tp_size << ")" << std::endl;
  absl::StatusOr<std::unique_ptr<claa::LoadedModel>> model = claa::LoadModel(load);
  if (!model.ok()) return Fail(std::string(model.status().ToString()));

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

  claa::ServerMetrics metrics((*model)->name);
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
  claa::Scheduler scheduler(model->get(), sched, &metrics);
  claa::GenerationService service(model->get(), &scheduler, &metrics, default_pruning);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_port)),
                           grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::StrCat("cannot listen on ", host, ":", absl::GetFlag(FLAGS_port)));
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  const claa::ModelConfig& c = (*model)->config;
  std::cout << "claa-server: serving " << (*model)->name
            << ((*model)->builtin ? " (built-in demo model, random weights)" : "") << " ["
            << c.num_layers << " layers, hidden " << c.hidden_size << ", vocab " << c.vocab_size
            << ", context " << (*model)->max_context_length << "]" << std::endl;
  std::cout << "claa-server: listening on " << host << ":" << bound_port << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cout << "claa-server: shutting down" << std::endl;
  server->GetHealthCheckService()->SetServingStatus(false);
  scheduler.Shutdown();  // every open stream gets UNAVAILABLE
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
