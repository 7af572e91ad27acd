#include "server/kv_links.h"

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace claa {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::chrono::system_clock::time_point ToChrono(absl::Time t) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(absl::ToUnixMillis(t)));
}

std::string RandomPeerId() {
  std::random_device rd;
  return absl::StrFormat("decode-%08x%08x", rd(), rd());
}

}  // namespace

absl::StatusOr<KvTransport> ParseKvTransport(const std::string& name) {
  if (name == "auto") return KvTransport::kAuto;
  if (name == "grpc") return KvTransport::kGrpc;
  if (name == "nccl") return KvTransport::kNccl;
  return absl::InvalidArgumentError("--kv_transport must be auto, grpc or nccl");
}

absl::Status KvLinkSenders::Open(const std::string& nccl_id, const std::string& link_id,
                                 const std::string& peer_id, absl::Time deadline,
                                 const std::function<bool()>& cancelled) {
  if (link_id.empty() || peer_id.empty()) {
    return absl::InvalidArgumentError("OpenKvLink needs link_id and peer_id");
  }
  // Joining blocks until the decode worker joins too; no lock is held meanwhile.
  absl::StatusOr<std::unique_ptr<gpu::GpuKvLink>> link =
      model_->OpenKvLink(nccl_id, /*rank=*/0, deadline, cancelled);
  if (!link.ok()) return link.status();
  auto entry = std::make_shared<Link>();
  entry->peer_id = peer_id;
  entry->link = *std::move(link);
  std::vector<std::shared_ptr<Link>> dropped;  // destroyed (aborted) outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    entry->serial = next_serial_++;
    for (auto it = links_.begin(); it != links_.end();) {
      if (it->second->peer_id == peer_id) {  // the peer gave that link up
        dropped.push_back(it->second);
        it = links_.erase(it);
      } else {
        ++it;
      }
    }
    while (links_.size() >= max_links_) {
      auto oldest = links_.begin();
      for (auto it = links_.begin(); it != links_.end(); ++it) {
        if (it->second->serial < oldest->second->serial) oldest = it;
      }
      dropped.push_back(oldest->second);
      links_.erase(oldest);
    }
    links_[link_id] = entry;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> KvLinkSenders::Send(const std::string& link_id, const SequenceKv& kv,
                                             absl::Time deadline,
                                             const std::function<bool()>& cancelled) {
  std::shared_ptr<Link> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = links_.find(link_id);
    if (it == links_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no KV link ", link_id, " here (the decode worker re-opens it)"));
    }
    entry = it->second;
  }
  absl::StatusOr<size_t> sent = entry->link->Send(kv, deadline, cancelled);
  if (!sent.ok() || entry->link->broken()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = links_.find(link_id);
    if (it != links_.end() && it->second == entry) links_.erase(it);
  }
  if (!sent.ok()) return sent.status();
  return uint64_t(*sent);
}

int KvLinkSenders::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return int(links_.size());
}

KvLinkReceivers::KvLinkReceivers(gpu::GpuModel* model, ChannelCache* channels)
    : model_(model), channels_(channels), peer_id_(RandomPeerId()) {}

absl::Status KvLinkReceivers::OpenLocked(Peer& peer, const std::string& source,
                                         absl::Time deadline) {
  peer.link.reset();  // aborts a broken one
  absl::StatusOr<std::string> id = model_->NewKvLinkId();
  if (!id.ok()) return id.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    peer.link_id = absl::StrCat(peer_id_, "/", next_link_++);
  }
  internal::v1::OpenKvLinkRequest request;
  request.set_nccl_id(*id);
  request.set_link_id(peer.link_id);
  request.set_peer_id(peer_id_);
  grpc::ClientContext context;
  context.set_deadline(ToChrono(deadline));
  grpc::Status rpc;
  std::atomic<bool> rpc_failed{false};
  // Both ends join at once: the prefill worker inside its OpenKvLink handler, this one here.
  std::thread call([&] {
    internal::v1::OpenKvLinkResponse response;
    rpc = internal::v1::PrefillWorker::NewStub(channels_->Get(source))
              ->OpenKvLink(&context, request, &response);
    if (!rpc.ok()) rpc_failed = true;
  });
  absl::StatusOr<std::unique_ptr<gpu::GpuKvLink>> link = model_->OpenKvLink(
      *id, /*rank=*/1, deadline, [&] { return rpc_failed.load(); });
  if (!link.ok()) context.TryCancel();
  call.join();
  if (!rpc.ok()) return FromGrpc(rpc, absl::StrCat("opening a KV link to ", source));
  if (!link.ok()) return link.status();
  peer.link = *std::move(link);
  return absl::OkStatus();
}

std::shared_ptr<KvLinkReceivers::Peer> KvLinkReceivers::PeerFor(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = peers_[source];
  if (slot == nullptr) slot = std::make_shared<Peer>();
  return slot;
}

bool KvLinkReceivers::Usable(const std::string& source) {
  std::shared_ptr<Peer> peer = PeerFor(source);
  std::lock_guard<std::mutex> lock(mu_);
  return absl::Now() >= peer->retry_after;
}

absl::StatusOr<ImportedKv> KvLinkReceivers::Receive(const internal::v1::KvTicket& ticket,
                                                    const ModelConfig& config) {
  if (absl::Status s = CheckKvLayout(ticket, config); !s.ok()) return s;
  const absl::Time deadline = absl::FromUnixMillis(ticket.lease_deadline_unix_ms());
  std::shared_ptr<Peer> peer = PeerFor(ticket.source());
  std::lock_guard<std::mutex> lock(peer->mu);
  if (peer->link == nullptr || peer->link->broken()) {
    if (absl::Status s = OpenLocked(*peer, ticket.source(), deadline); !s.ok()) {
      std::lock_guard<std::mutex> peers_lock(mu_);
      peer->retry_after = absl::Now() + kRetryAfter;
      return s;
    }
  }
  std::vector<int> lengths(ticket.layout().layer_lengths().begin(),
                           ticket.layout().layer_lengths().end());
  internal::v1::SendKvRequest request;
  request.set_ticket_id(ticket.ticket_id());
  request.set_link_id(peer->link_id);
  grpc::ClientContext context;
  context.set_deadline(ToChrono(deadline));
  grpc::Status rpc;
  std::atomic<bool> rpc_failed{false};
  std::thread call([&] {
    internal::v1::SendKvResponse response;
    rpc = internal::v1::PrefillWorker::NewStub(channels_->Get(ticket.source()))
              ->SendKv(&context, request, &response);
    if (!rpc.ok()) rpc_failed = true;
  });
  // The receive ends early when the prefill worker answered with an error: it will not send.
  absl::StatusOr<std::unique_ptr<gpu::GpuKvStage>> stage =
      peer->link->Recv(lengths, deadline, [&] { return rpc_failed.load(); });
  if (!stage.ok()) context.TryCancel();
  call.join();
  if (!stage.ok()) {
    peer->link.reset();  // aborted: the next transfer opens a new one
    if (!rpc.ok()) {
      return FromGrpc(rpc, absl::StrCat("NCCL KV transfer from prefill worker ", ticket.source()));
    }
    return absl::Status(stage.status().code(),
                        absl::StrCat("NCCL KV transfer from prefill worker ", ticket.source(),
                                     ": ", stage.status().message()));
  }
  // The cache arrived whole (the receive completed); a late error of the call itself (say, the
  // answer lost) leaves the prefill worker's lease to run out, nothing more.
  ImportedKv out;
  out.layer_lengths = std::move(lengths);
  out.num_positions = int(ticket.layout().num_positions());
  out.kept_prompt_tokens = int(ticket.kept_prompt_tokens());
  out.device_stage = *std::move(stage);
  return out;
}

}  // namespace claa
