#ifndef CLAA_SERVER_METRICS_H_
#define CLAA_SERVER_METRICS_H_

// Prometheus metrics of the serving path, named as vLLM's (DESIGN.md §4) under a claa_ prefix so
// existing TTFT dashboards carry over. Exposed over HTTP by prometheus-cpp's Exposer.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "scheduler/scheduler_observer.h"

namespace claa {

class ServerMetrics : public SchedulerObserver {
 public:
  // role labels the latency histograms ("unified" for a server that prefills and decodes).
  explicit ServerMetrics(const std::string& model_name, const std::string& role = "unified");

  // Serves /metrics on host:port (port 0 picks a free one). Returns the bound port.
  absl::StatusOr<int> StartExposer(const std::string& host, int port);

  // SchedulerObserver
  void OnScheduled(double queue_seconds) override;
  void OnPrefillDone(double prefill_seconds, PruningMethod method) override;
  void OnFirstToken(double ttft_seconds, PruningMethod method) override;
  void OnToken(double inter_token_seconds) override;
  void OnFinished(FinishReason reason, const RequestUsage& usage, const RequestTiming& timing,
                  PruningMethod method) override;
  void OnFailed(absl::StatusCode code) override;
  void OnPreempted() override;
  void OnQueueState(int running, int waiting, double kv_usage) override;

  // Requests refused before scheduling (bad input, full queue), by gRPC status code.
  void OnRejected(absl::StatusCode code);

  // Disaggregated serving. A KV cache moved between workers over `transport` ("grpc" or
  // "nccl"; decode worker: received; prefill worker: sent with seconds < 0, which counts the
  // bytes only; router: the transfer time the decode worker reported).
  void OnKvTransfer(double seconds, uint64_t bytes, const std::string& transport);
  // Time a handed-off request waited at the decode worker before its first token.
  void OnDecodeQueue(double seconds);
  // Prefill worker: KV caches waiting under a lease for a decode worker.
  void SetLeasedTickets(int count);
  void OnHandoff(const RequestUsage& usage, PruningMethod method) override;

  std::shared_ptr<prometheus::Registry> registry() { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // The histogram of `family` for this server and `method` (created on first use).
  prometheus::Histogram& ByMethod(prometheus::Family<prometheus::Histogram>* family,
                                  const prometheus::Histogram::BucketBoundaries& buckets,
                                  PruningMethod method);

  std::string model_name_;
  std::string role_;
  prometheus::Family<prometheus::Histogram>* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Family<prometheus::Histogram>* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Family<prometheus::Histogram>* prefill_;
  prometheus::Family<prometheus::Histogram>* kept_ratio_;
  // Labelled {model_name, role, transport}: "grpc" (host-staged) or "nccl".
  prometheus::Family<prometheus::Histogram>* kv_transfer_;
  prometheus::Family<prometheus::Counter>* kv_transfer_bytes_;
  prometheus::Histogram* decode_queue_;
  prometheus::Gauge* leased_tickets_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* preemptions_;
  prometheus::Family<prometheus::Counter>* success_;
  prometheus::Family<prometheus::Counter>* failure_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* kv_usage_;
};

}  // namespace claa

#endif  // CLAA_SERVER_METRICS_H_
