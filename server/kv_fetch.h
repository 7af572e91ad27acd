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
#include "grpcpp/security/credentials.h"
#include "scheduler/handoff.h"

namespace claa {

// One channel per peer address, shared by all requests (gRPC multiplexes calls on it).
class ChannelCache {
 public:
  // `credentials` null: plaintext. With internal mutual TLS they carry this process's client
  // certificate and the CA workers' certificates must chain to; `tls_server_name`, if set, is
  // the name checked in those certificates instead of each address's host.
  explicit ChannelCache(std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
                        std::string tls_server_name = "")
      : credentials_(std::move(credentials)), tls_server_name_(std::move(tls_server_name)) {}

  std::shared_ptr<grpc::Channel> Get(const std::string& address);

 private:
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const std::string tls_server_name_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

// FailedPrecondition when the ticket's layout does not match `config` (the decode worker's
// model): the same check for both transports.
absl::Status CheckKvLayout(const internal::v1::KvTicket& ticket, const ModelConfig& config);

// Fetches `ticket` from ticket.source(). The result carries no logits (the caller adds them).
// FailedPrecondition when the layout does not match `config`; Unavailable / DeadlineExceeded /
// NotFound (lease gone) from the transport, with the peer named.
absl::StatusOr<ImportedKv> FetchKv(ChannelCache& channels, const internal::v1::KvTicket& ticket,
                                   const ModelConfig& config);

}  // namespace claa

#endif  // CLAA_SERVER_KV_FETCH_H_
