#include "server/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace claa {
namespace {

// vLLM's buckets, so dashboards and SLO alerts written for vLLM read the same.
const prometheus::Histogram::BucketBoundaries kTtftBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const prometheus::Histogram::BucketBoundaries kItlBuckets = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0};
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
// Kept prompt fraction: the paper's keep rates 0.1 / 0.2 / 0.4 fall on bucket edges.
const prometheus::Histogram::BucketBoundaries kKeptRatioBuckets = {
    0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.99, 1.0};

}  // namespace

ServerMetrics::ServerMetrics(const std::string& model_name, const std::string& role)
    : registry_(std::make_shared<prometheus::Registry>()), model_name_(model_name), role_(role) {
  const prometheus::Labels labels = {{"model_name", model_name}};
  const prometheus::Labels role_labels = {{"model_name", model_name}, {"role", role}};
  auto histogram = [&](const char* name, const char* help,
                       const prometheus::Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_).Add(labels,
                                                                                         buckets);
  };
  auto family = [&](const char* name, const char* help) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
  };
  // Labelled {model_name, role, method}: TTFT by pruning method is what CLAA is judged on.
  ttft_ = family("claa_time_to_first_token_seconds",
                 "Time from request arrival to its first generated token.");
  e2e_ = family("claa_e2e_request_latency_seconds",
                "Time from request arrival to its completion.");
  prefill_ = family("claa_request_prefill_time_seconds",
                    "Duration of the step that prefilled a request's prompt.");
  kept_ratio_ = family("claa_prompt_kept_ratio",
                       "Fraction of each request's prompt tokens kept by pruning (1 = none).");
  itl_ = histogram("claa_inter_token_latency_seconds", "Time between consecutive tokens.",
                   kItlBuckets);
  queue_ = histogram("claa_request_queue_time_seconds",
                     "Time a request waited before its first scheduling.", kRequestBuckets);
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add(labels);
  };
  prompt_tokens_ = counter("claa_prompt_tokens_total", "Prompt tokens of finished requests.");
  generation_tokens_ = counter("claa_generation_tokens_total", "Generated tokens.");
  preemptions_ = counter("claa_num_preemptions_total",
                         "Requests preempted (recomputed later) because KV blocks ran out.");
  success_ = &prometheus::BuildCounter()
                  .Name("claa_request_success_total")
                  .Help("Finished requests by finish reason.")
                  .Register(*registry_);
  failure_ = &prometheus::BuildCounter()
                  .Name("claa_request_failure_total")
                  .Help("Requests that ended with an error or were refused, by gRPC code.")
                  .Register(*registry_);
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add(labels);
  };
  kv_transfer_ = &prometheus::BuildHistogram()
                      .Name("claa_kv_transfer_seconds")
                      .Help("Time to move a prefilled KV cache from a prefill to a decode worker, "
                            "by transport (grpc: host-staged, nccl: GPU to GPU).")
                      .Register(*registry_);
  kv_transfer_bytes_ = &prometheus::BuildCounter()
                            .Name("claa_kv_transfer_bytes_total")
                            .Help("KV cache bytes sent (prefill role) or received (decode role), "
                                  "by transport (grpc: fp32, nccl: bf16).")
                            .Register(*registry_);
  // The host-staged transport's series exist from the start (at zero), as the other metrics'
  // do, so dashboards and alerts find the metric before the first handoff.
  {
    prometheus::Labels grpc = role_labels;
    grpc["transport"] = "grpc";
    kv_transfer_->Add(grpc, kTtftBuckets);
    kv_transfer_bytes_->Add(grpc);
  }
  decode_queue_ = &prometheus::BuildHistogram()
                       .Name("claa_decode_queue_time_seconds")
                       .Help("Time a handed-off request waited at the decode worker for KV "
                             "blocks before its first token.")
                       .Register(*registry_)
                       .Add(role_labels, kTtftBuckets);
  leased_tickets_ = &prometheus::BuildGauge()
                         .Name("claa_kv_leased_tickets")
                         .Help("Prefilled KV caches waiting under a lease for a decode worker.")
                         .Register(*registry_)
                         .Add(role_labels);
  running_ = gauge("claa_num_requests_running", "Requests in the decode batch.");
  waiting_ = gauge("claa_num_requests_waiting", "Requests waiting for admission.");
  kv_usage_ = gauge("claa_kv_cache_usage_perc", "Fraction of KV cache blocks in use (0-1).");
}

absl::StatusOr<int> ServerMetrics::StartExposer(const std::string& host, int port) {
  // prometheus-cpp reports bind failures by throwing; keep that inside this module.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(absl::StrCat(host, ":", port), 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", host, ":", port, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? port : ports.front();
}

void ServerMetrics::OnScheduled(double s) { queue_->Observe(s); }
prometheus::Histogram& ServerMetrics::ByMethod(
    prometheus::Family<prometheus::Histogram>* family,
    const prometheus::Histogram::BucketBoundaries& buckets, PruningMethod method) {
  // Family::Add returns the existing child for known labels (it is thread-safe).
  return family->Add(
      {{"model_name", model_name_}, {"role", role_}, {"method", PruningMethodName(method)}},
      buckets);
}

void ServerMetrics::OnPrefillDone(double s, PruningMethod method) {
  ByMethod(prefill_, kRequestBuckets, method).Observe(s);
}
void ServerMetrics::OnFirstToken(double s, PruningMethod method) {
  ByMethod(ttft_, kTtftBuckets, method).Observe(s);
}
void ServerMetrics::OnToken(double s) { itl_->Observe(s); }

void ServerMetrics::OnFinished(FinishReason reason, const RequestUsage& usage,
                               const RequestTiming& timing, PruningMethod method) {
  success_->Add({{"model_name", model_name_}, {"finished_reason", FinishReasonName(reason)}})
      .Increment();
  prompt_tokens_->Increment(usage.prompt_tokens);
  generation_tokens_->Increment(usage.completion_tokens);
  ByMethod(e2e_, kRequestBuckets, method).Observe(timing.e2e_seconds);
  if (usage.prompt_tokens > 0) {
    ByMethod(kept_ratio_, kKeptRatioBuckets, method)
        .Observe(double(usage.kept_prompt_tokens) / usage.prompt_tokens);
  }
}

void ServerMetrics::OnFailed(absl::StatusCode code) { OnRejected(code); }

void ServerMetrics::OnRejected(absl::StatusCode code) {
  failure_->Add({{"model_name", model_name_}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
}

void ServerMetrics::OnPreempted() { preemptions_->Increment(); }

void ServerMetrics::OnKvTransfer(double seconds, uint64_t bytes, const std::string& transport) {
  const prometheus::Labels labels = {
      {"model_name", model_name_}, {"role", role_}, {"transport", transport}};
  if (seconds >= 0) kv_transfer_->Add(labels, kTtftBuckets).Observe(seconds);
  kv_transfer_bytes_->Add(labels).Increment(double(bytes));
}

void ServerMetrics::OnDecodeQueue(double seconds) { decode_queue_->Observe(seconds); }

void ServerMetrics::SetLeasedTickets(int count) { leased_tickets_->Set(count); }

void ServerMetrics::OnHandoff(const RequestUsage& usage, PruningMethod method) {
  prompt_tokens_->Increment(usage.prompt_tokens);
  if (usage.prompt_tokens > 0) {
    ByMethod(kept_ratio_, kKeptRatioBuckets, method)
        .Observe(double(usage.kept_prompt_tokens) / usage.prompt_tokens);
  }
}

void ServerMetrics::OnQueueState(int running, int waiting, double kv_usage) {
  running_->Set(running);
  waiting_->Set(waiting);
  kv_usage_->Set(kv_usage);
}

}  // namespace claa
