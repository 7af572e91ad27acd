#ifndef CLAA_SERVER_KV_FETCH_H_
#define CLAA_SERVER_KV_FETCH_H_

// The decode worker's side of the gRPC KV transport: pulls a ticket's cache from its prefill
// worker into host memory (an ImportedKv), checking every chunk against the ticket's layout and
// the local model, and giving up at the lease deadline rather than waiting forever.
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "claa/internal/v1/worker.grpc.pb.h"
#include "engine/model/config.h"
#include "scheduler/handoff.h"

namespace claa {

// One channel per peer address, shared by all requests (gRPC multiplexes calls on it).
class ChannelCache {
 public:
  std::shared_ptr<grpc::Channel> Get(const std::string& address);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

// Fetches `ticket` from ticket.source(). The result carries no logits (the caller adds them).
// FailedPrecondition when the layout does not match `config`; Unavailable / DeadlineExceeded /
// NotFound (lease gone) from the transport, with the peer named.
absl::StatusOr<ImportedKv> FetchKv(ChannelCache& channels, const internal::v1::KvTicket& ticket,
                                   const ModelConfig& config);

}  // namespace claa

#endif  // CLAA_SERVER_KV_FETCH_H_
