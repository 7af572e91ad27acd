#ifndef CLAA_SERVER_GENERATION_SERVICE_H_
#define CLAA_SERVER_GENERATION_SERVICE_H_

// The public claa.v1.Generation gRPC service over a Scheduler. Each Generate call submits one
// request and relays its RequestStream; call cancellation and deadlines cancel the request.
#include <atomic>
#include <functional>
#include <string>

#include "claa/v1/claa.grpc.pb.h"
#include "engine/generate/loaded_model.h"
#include "scheduler/scheduler.h"
#include "server/metrics.h"

namespace claa {

class GenerationService final : public v1::Generation::Service {
 public:
  // All pointers must outlive the service; metrics may be null. default_pruning applies to
  // requests without pruning options and fills the fields they leave unset.
  GenerationService(LoadedModel* model, Scheduler* scheduler, ServerMetrics* metrics,
                    PruningConfig default_pruning = PruningConfig());

  // Registered servers never call this: Generate's request arrives as bytes (raw_request.h) and
  // goes to Serve. Kept for direct callers.
  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  grpc::Status Serve(grpc::ServerContext* context, const v1::GenerateRequest& request,
                     const std::function<bool(const v1::GenerateResponse&)>& write);
  grpc::Status Reject(const absl::Status& status);

  LoadedModel* model_;
  Scheduler* scheduler_;
  ServerMetrics* metrics_;
  PruningConfig default_pruning_;
  std::atomic<uint64_t> next_id_{0};
};

}  // namespace claa

#endif  // CLAA_SERVER_GENERATION_SERVICE_H_
