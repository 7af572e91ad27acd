#ifndef CLAA_SERVER_KV_LINKS_H_
#define CLAA_SERVER_KV_LINKS_H_

// The NCCL transport of the KV handoff between disaggregated worker processes (DESIGN.md §4),
// on GpuModel's KV links (engine/gpu/gpu_model.h). The decode worker drives it:
//  1. Per prefill worker it talks to, it keeps one link: it makes an ncclUniqueId, calls that
//     worker's OpenKvLink with it and joins the communicator as rank 1 while the prefill worker
//     joins as rank 0 (the id travels over the internal gRPC API).
//  2. Per ticket it calls SendKv and posts the matching receive; transfers on one link run one
//     at a time (a per-link mutex here; the prefill worker only sends when asked).
// Every wait is bounded by the ticket's lease deadline: a prefill worker that dies or never
// sends makes the receive abort its communicator (the link is re-opened on the next transfer),
// and the caller falls back to the gRPC fetch or fails the request. The received cache stays
// on the decode GPU (ImportedKv::device_stage) until the scheduler admits the request.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "claa/internal/v1/worker.grpc.pb.h"
#include "engine/gpu/gpu_model.h"
#include "engine/model/config.h"
#include "engine/runtime/kv_cache.h"
#include "scheduler/handoff.h"
#include "server/kv_fetch.h"

namespace claa {

// --kv_transport: how a decode worker pulls prefilled caches.
enum class KvTransport { kAuto, kGrpc, kNccl };
absl::StatusOr<KvTransport> ParseKvTransport(const std::string& name);

// The prefill worker's ends of the links decode workers opened to it.
class KvLinkSenders {
 public:
  // `model` must outlive this; at most max_links links are kept (the oldest goes first).
  explicit KvLinkSenders(gpu::GpuModel* model, size_t max_links = 64)
      : model_(model), max_links_(max_links) {}

  // Joins the link as rank 0; replaces the peer's older links.
  absl::Status Open(const std::string& nccl_id, const std::string& link_id,
                    const std::string& peer_id, absl::Time deadline,
                    const std::function<bool()>& cancelled);
  // Sends kv's cache over link_id. FailedPrecondition: no such link. A failed send drops it.
  absl::StatusOr<uint64_t> Send(const std::string& link_id, const SequenceKv& kv,
                                absl::Time deadline, const std::function<bool()>& cancelled);
  int size();

 private:
  struct Link {
    std::string peer_id;
    uint64_t serial = 0;
    std::unique_ptr<gpu::GpuKvLink> link;
  };
  gpu::GpuModel* model_;
  const size_t max_links_;
  std::mutex mu_;
  uint64_t next_serial_ = 0;
  std::map<std::string, std::shared_ptr<Link>> links_;
};

// The decode worker's ends: one link per prefill worker address.
class KvLinkReceivers {
 public:
  // `model` and `channels` must outlive this.
  KvLinkReceivers(gpu::GpuModel* model, ChannelCache* channels);

  // Receives ticket's cache from ticket.source() over NCCL (opening the link first when there
  // is none or it broke), by the ticket's lease deadline. The result holds device_stage and no
  // logits. FailedPrecondition: the layout does not match `config`; Unavailable /
  // DeadlineExceeded: the transfer failed (the caller may still try the gRPC fetch).
  absl::StatusOr<ImportedKv> Receive(const internal::v1::KvTicket& ticket,
                                     const ModelConfig& config);
  // False for a while (kRetryAfter) after a link to `source` could not be opened (say both
  // workers share one GPU, which NCCL refuses), so that not every request pays for the try.
  bool Usable(const std::string& source);
  static constexpr absl::Duration kRetryAfter = absl::Seconds(30);

 private:
  struct Peer {
    std::mutex mu;  // one transfer (or link opening) at a time with this prefill worker
    std::string link_id;
    std::unique_ptr<gpu::GpuKvLink> link;
    absl::Time retry_after = absl::InfinitePast();  // guarded by KvLinkReceivers::mu_
  };
  std::shared_ptr<Peer> PeerFor(const std::string& source);
  // Opens peer's link to `source`; the caller holds peer.mu.
  absl::Status OpenLocked(Peer& peer, const std::string& source, absl::Time deadline);

  gpu::GpuModel* model_;
  ChannelCache* channels_;
  const std::string peer_id_;  // this process, as the prefill workers know it
  std::mutex mu_;
  uint64_t next_link_ = 0;
  std::map<std::string, std::shared_ptr<Peer>> peers_;  // by prefill worker address
};

}  // namespace claa

#endif  // CLAA_SERVER_KV_LINKS_H_
