#include "server/kv_fetch.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace claa {

std::shared_ptr<grpc::Channel> ChannelCache::Get(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& channel = channels_[address];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // A worker that starts (or restarts) late must rejoin within seconds, not after gRPC's
    // default reconnect backoff of up to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    if (!tls_server_name_.empty()) args.SetSslTargetNameOverride(tls_server_name_);
    channel = grpc::CreateCustomChannel(
        address, credentials_ ? credentials_ : grpc::InsecureChannelCredentials(), args);
  }
  return channel;
}

absl::Status CheckKvLayout(const internal::v1::KvTicket& ticket, const ModelConfig& config) {
  const internal::v1::KvLayout& layout = ticket.layout();
  if (int(layout.num_layers()) != config.num_layers ||
      layout.layer_lengths_size() != config.num_layers ||
      int(layout.num_kv_heads()) != config.num_kv_heads ||
      int(layout.head_dim()) != config.head_dim || layout.dtype() != "f32") {
    return absl::FailedPreconditionError(absl::StrCat(
        "KV ticket ", ticket.ticket_id(), " has layout ", layout.num_layers(), " layers x ",
        layout.num_kv_heads(), " KV heads x ", layout.head_dim(), " (", layout.dtype(),
        "); this decode worker's model has ", config.num_layers, " x ", config.num_kv_heads,
        " x ", config.head_dim, " (f32)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImportedKv> FetchKv(ChannelCache& channels, const internal::v1::KvTicket& ticket,
                                   const ModelConfig& config) {
  if (absl::Status s = CheckKvLayout(ticket, config); !s.ok()) return s;
  const internal::v1::KvLayout& layout = ticket.layout();
  const size_t row = size_t(config.num_kv_heads) * config.head_dim;
  ImportedKv out;
  out.num_positions = int(layout.num_positions());
  out.kept_prompt_tokens = int(ticket.kept_prompt_tokens());
  for (int l = 0; l < config.num_layers; ++l) {
    const int len = int(layout.layer_lengths(l));
    out.layer_lengths.push_back(len);
    out.k.emplace_back(row * len);
    out.v.emplace_back(row * len);
  }
  std::vector<std::vector<bool>> seen(config.num_layers);  // per-slot coverage check
  for (int l = 0; l < config.num_layers; ++l) seen[l].assign(out.layer_lengths[l], false);

  auto stub = internal::v1::PrefillWorker::NewStub(channels.Get(ticket.source()));
  grpc::ClientContext context;
  // The lease ends then: past it the prefill worker may already have freed the cache.
  const auto deadline = std::chrono::system_clock::time_point(
      std::chrono::milliseconds(ticket.lease_deadline_unix_ms()));
  context.set_deadline(deadline);
  internal::v1::FetchKvRequest request;
  request.set_ticket_id(ticket.ticket_id());
  auto reader = stub->FetchKv(&context, request);
  internal::v1::KvChunk chunk;
  while (reader->Read(&chunk)) {
    const int l = int(chunk.layer());
    const size_t n = chunk.num_slots();
    if (l < 0 || l >= config.num_layers ||
        size_t(chunk.first_slot()) + n > size_t(out.layer_lengths[l]) ||
        chunk.k().size() != n * row * sizeof(float) || chunk.v().size() != n * row * sizeof(float)) {
      context.TryCancel();
      return absl::DataLossError(absl::StrCat("malformed KV chunk from ", ticket.source(),
                                              " (layer ", l, ", slots ", chunk.first_slot(), "+",
                                              n, ")"));
    }
    std::memcpy(&out.k[l][size_t(chunk.first_slot()) * row], chunk.k().data(), chunk.k().size());
    std::memcpy(&out.v[l][size_t(chunk.first_slot()) * row], chunk.v().data(), chunk.v().size());
    for (size_t s = 0; s < n; ++s) seen[l][chunk.first_slot() + s] = true;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("fetching the KV cache from prefill worker ", ticket.source(),
                                     ": ", status.error_message()));
  }
  for (int l = 0; l < config.num_layers; ++l) {
    for (bool b : seen[l]) {
      if (!b) {
        return absl::DataLossError(absl::StrCat("prefill worker ", ticket.source(),
                                                " sent an incomplete KV cache (layer ", l, ")"));
      }
    }
  }
  return out;
}

}  // namespace claa
