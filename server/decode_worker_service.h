#ifndef CLAA_SERVER_DECODE_WORKER_SERVICE_H_
#define CLAA_SERVER_DECODE_WORKER_SERVICE_H_

// claa-server --role=decode: takes a request with a KV ticket, pulls the compact cache from the
// prefill worker (over NCCL GPU to GPU where both ends can, else host-staged over gRPC), and
// decodes it in its continuous batch, streaming tokens to the router.
#include <memory>

#include "claa/internal/v1/worker.grpc.pb.h"
#include "engine/generate/loaded_model.h"
#include "scheduler/scheduler.h"
#include "server/kv_fetch.h"
#include "server/kv_links.h"
#include "server/metrics.h"

namespace claa {

class DecodeWorkerService final : public internal::v1::DecodeWorker::Service {
 public:
  // All pointers must outlive the service; metrics may be null. `fetch_credentials` and
  // `tls_server_name` secure the KV fetches from prefill workers (see ChannelCache).
  // transport: kAuto uses NCCL when the ticket offers it and this model runs on one GPU, and
  // falls back to the gRPC fetch if the NCCL transfer fails; kNccl does not fall back (the
  // request fails with UNAVAILABLE); kGrpc never uses NCCL. The caller checks that kNccl is
  // possible here (one GPU).
  DecodeWorkerService(LoadedModel* model, Scheduler* scheduler, ServerMetrics* metrics,
                      std::shared_ptr<grpc::ChannelCredentials> fetch_credentials = nullptr,
                      std::string tls_server_name = "",
                      KvTransport transport = KvTransport::kGrpc);

  grpc::Status Decode(grpc::ServerContext* context, const internal::v1::DecodeRequest* request,
                      grpc::ServerWriter<internal::v1::DecodeEvent>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status GetLoad(grpc::ServerContext* context, const internal::v1::LoadRequest* request,
                       internal::v1::WorkerLoad* response) override;

 private:
  LoadedModel* model_;
  Scheduler* scheduler_;
  ServerMetrics* metrics_;
  ChannelCache channels_;
  const KvTransport transport_;
  std::unique_ptr<KvLinkReceivers> links_;  // null: gRPC only
};

}  // namespace claa

#endif  // CLAA_SERVER_DECODE_WORKER_SERVICE_H_
