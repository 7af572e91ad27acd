#ifndef CLAA_SERVER_PREFILL_WORKER_SERVICE_H_
#define CLAA_SERVER_PREFILL_WORKER_SERVICE_H_

// claa-server --role=prefill: prefills prompts (batched by a prefill-only Scheduler, pruned as
// each request says), keeps each compact KV cache in a KvLeaseTable, answers with a ticket and
// streams the cache to whichever decode worker presents it.
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "claa/internal/v1/worker.grpc.pb.h"
#include "engine/generate/loaded_model.h"
#include "scheduler/kv_lease_table.h"
#include "scheduler/scheduler.h"
#include "server/kv_links.h"
#include "server/metrics.h"

namespace claa {

class PrefillWorkerService final : public internal::v1::PrefillWorker::Service {
 public:
  // self_address: host:port decode workers fetch from (written into tickets). All pointers
  // must outlive the service; metrics may be null. fetch_pin_wait: how long a FetchKv of a
  // ticket that another fetch still holds waits for it (claa-server --kv_fetch_wait_ms): after
  // a transfer is cut, the router retries on another decode worker, possibly before the cut
  // fetch's handler has ended. links: the NCCL transport's ends (null: tickets say gRPC only,
  // OpenKvLink / SendKv answer FAILED_PRECONDITION).
  PrefillWorkerService(LoadedModel* model, Scheduler* scheduler, KvLeaseTable* leases,
                       std::string self_address, ServerMetrics* metrics,
                       absl::Duration fetch_pin_wait = absl::Seconds(5),
                       KvLinkSenders* links = nullptr);

  grpc::Status Prefill(grpc::ServerContext* context, const internal::v1::PrefillRequest* request,
                       internal::v1::PrefillResponse* response) override;
  grpc::Status FetchKv(grpc::ServerContext* context, const internal::v1::FetchKvRequest* request,
                       grpc::ServerWriter<internal::v1::KvChunk>* writer) override;
  grpc::Status ReleaseKv(grpc::ServerContext* context,
                         const internal::v1::ReleaseKvRequest* request,
                         internal::v1::ReleaseKvResponse* response) override;
  grpc::Status GetLoad(grpc::ServerContext* context, const internal::v1::LoadRequest* request,
                       internal::v1::WorkerLoad* response) override;
  grpc::Status OpenKvLink(grpc::ServerContext* context,
                          const internal::v1::OpenKvLinkRequest* request,
                          internal::v1::OpenKvLinkResponse* response) override;
  grpc::Status SendKv(grpc::ServerContext* context, const internal::v1::SendKvRequest* request,
                      internal::v1::SendKvResponse* response) override;

  // The address is known only once the server has bound its port.
  void set_self_address(const std::string& address);

 private:
  std::string self_address();
  LoadedModel* model_;
  Scheduler* scheduler_;
  KvLeaseTable* leases_;
  std::mutex address_mu_;
  std::string self_address_;
  ServerMetrics* metrics_;
  const absl::Duration fetch_pin_wait_;
  KvLinkSenders* links_;
};

}  // namespace claa

#endif  // CLAA_SERVER_PREFILL_WORKER_SERVICE_H_
