#ifndef CLAA_SERVER_ROUTER_SERVICE_H_
#define CLAA_SERVER_ROUTER_SERVICE_H_

// claa-server --role=router: the public claa.v1.Generation service in front of prefill and
// decode workers. Per request: tokenize and resolve options, prefill on the least loaded
// prefill worker (retrying another if one is down), hand the KV ticket and last logits to the
// decode worker with the most free KV blocks, and relay its stream. TTFT is measured here and
// split into prefill, KV transfer and decode queue (DESIGN.md §4).
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/time/time.h"
#include "claa/v1/claa.grpc.pb.h"
#include "engine/generate/loaded_model.h"
#include "server/metrics.h"
#include "server/worker_pool.h"

namespace claa {

// Deadlines of the router's short calls to workers (claa-server --kv_release_timeout_ms,
// --abort_timeout_ms). Generous for a worker on the same network; slower builds (sanitizers)
// raise them.
struct RouterTimeouts {
  // ReleaseKv: frees a prefilled cache no decode worker will fetch. If it times out, the lease
  // still frees the cache when it runs out (--kv_lease_seconds).
  absl::Duration release_kv = absl::Seconds(2);
  // Abort, forwarded to the decode worker that runs the request.
  absl::Duration abort = absl::Seconds(5);
};

class RouterService final : public v1::Generation::Service {
 public:
  // model: config and tokenizer (no weights needed). All pointers must outlive the service;
  // metrics may be null.
  RouterService(LoadedModel* model, PruningConfig default_pruning, WorkerPool* prefill,
                WorkerPool* decode, ServerMetrics* metrics,
                RouterTimeouts timeouts = RouterTimeouts());

  // Registered servers never call this: Generate's request arrives as bytes (raw_request.h) and
  // goes to Serve. Kept for direct callers.
  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  // A request between admission and completion, for Abort.
  struct Active {
    std::mutex mu;
    bool aborted = false;
    WorkerPool::Worker* decode = nullptr;  // set once decoding started
  };
  using Write = std::function<bool(const v1::GenerateResponse&)>;
  grpc::Status Serve(grpc::ServerContext* context, const v1::GenerateRequest& request,
                     const Write& write);
  grpc::Status Reject(const absl::Status& status);
  // Streams one decode attempt to the client. *heard: the worker sent anything at all (after
  // that a failure cannot be retried elsewhere: the cache is gone or tokens were streamed).
  grpc::Status RelayDecode(grpc::ServerContext* context, const Write& write,
                           WorkerPool::Worker* worker,
                           const internal::v1::DecodeRequest& decode_request,
                           const std::string& id, PruningMethod method, absl::Time arrival,
                           const internal::v1::PrefillResponse& prefilled, bool* heard);
  void ReportRunning();

  LoadedModel* model_;
  PruningConfig default_pruning_;
  WorkerPool* prefill_;
  WorkerPool* decode_;
  ServerMetrics* metrics_;
  const RouterTimeouts timeouts_;
  std::atomic<uint64_t> next_id_{0};
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Active>> active_;
};

}  // namespace claa

#endif  // CLAA_SERVER_ROUTER_SERVICE_H_
