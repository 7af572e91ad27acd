#include "server/prefill_worker_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/runtime/kv_slots.h"
#include "server/request_convert.h"
#include "server/stream_relay.h"

namespace claa {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
// KvChunk payloads stay near 1 MiB, far below gRPC's 4 MiB message limit.
constexpr size_t kChunkBytes = size_t{1} << 20;

}  // namespace

PrefillWorkerService::PrefillWorkerService(LoadedModel* model, Scheduler* scheduler,
                                           KvLeaseTable* leases, std::string self_address,
                                           ServerMetrics* metrics, absl::Duration fetch_pin_wait,
                                           KvLinkSenders* links)
    : model_(model),
      scheduler_(scheduler),
      leases_(leases),
      self_address_(std::move(self_address)),
      metrics_(metrics),
      fetch_pin_wait_(fetch_pin_wait),
      links_(links) {}

void PrefillWorkerService::set_self_address(const std::string& address) {
  std::lock_guard<std::mutex> lock(address_mu_);
  self_address_ = address;
}

std::string PrefillWorkerService::self_address() {
  std::lock_guard<std::mutex> lock(address_mu_);
  return self_address_;
}

grpc::Status PrefillWorkerService::Prefill(grpc::ServerContext* context,
                                           const internal::v1::PrefillRequest* request,
                                           internal::v1::PrefillResponse* response) {
  // The router resolved every option; the worker's defaults do not apply.
  absl::StatusOr<GenerationRequest> converted =
      PrepareRequest(request->request(), *model_->tokenizer, model_->config,
                     model_->max_context_length, PruningConfig(), "prefill");
  if (!converted.ok()) return ToGrpcStatus(converted.status());
  const std::string id = converted->request_id;
  auto stream = scheduler_->Submit(*std::move(converted));
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  RequestEvent event;
  for (;;) {
    if ((*stream)->Next(&event, kPollInterval)) break;
    if (context->IsCancelled()) {
      scheduler_->Cancel(id);
      return grpc::Status(grpc::StatusCode::CANCELLED, "prefill cancelled by the router");
    }
  }
  if (event.kind == RequestEvent::Kind::kError) return ToGrpcStatus(event.error);
  if (event.kind != RequestEvent::Kind::kHandoff) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "prefill ended without a handoff");
  }
  if (context->IsCancelled()) {  // nobody will present the ticket
    leases_->Release(event.handoff_ticket);
    return grpc::Status(grpc::StatusCode::CANCELLED, "prefill cancelled by the router");
  }
  auto pin = leases_->Acquire(event.handoff_ticket);
  if (!pin.ok()) return ToGrpcStatus(pin.status());
  const SequenceKv& kv = (*pin)->handoff().kv;
  const ModelConfig& c = model_->config;
  internal::v1::KvTicket* ticket = response->mutable_ticket();
  ticket->set_ticket_id(event.handoff_ticket);
  ticket->set_request_id(id);
  ticket->set_source(self_address());
  internal::v1::KvLayout* layout = ticket->mutable_layout();
  layout->set_num_layers(c.num_layers);
  size_t slots = 0;
  for (int len : kv.layer_lengths) {
    layout->add_layer_lengths(len);
    slots += len;
  }
  layout->set_num_kv_heads(c.num_kv_heads);
  layout->set_head_dim(c.head_dim);
  layout->set_dtype("f32");
  layout->set_num_positions(kv.num_positions);
  layout->set_source_tp(model_->runner->tp_size());
  ticket->set_keep_ratio((*pin)->handoff().keep_ratio);
  ticket->set_prompt_tokens(event.usage.prompt_tokens);
  ticket->set_kept_prompt_tokens(event.usage.kept_prompt_tokens);
  ticket->set_lease_deadline_unix_ms(absl::ToUnixMillis(leases_->Deadline(event.handoff_ticket)));
  ticket->set_bytes(KvBytes(c, slots));
  ticket->set_nccl(links_ != nullptr);
  response->mutable_last_logits()->Assign(event.last_logits.begin(), event.last_logits.end());
  response->set_queue_seconds(event.timing.queue_seconds);
  response->set_prefill_seconds(event.timing.prefill_seconds);
  if (metrics_) metrics_->SetLeasedTickets(leases_->size());
  return grpc::Status::OK;  // the pin drops here; the lease runs on
}

grpc::Status PrefillWorkerService::FetchKv(grpc::ServerContext* context,
                                           const internal::v1::FetchKvRequest* request,
                                           grpc::ServerWriter<internal::v1::KvChunk>* writer) {
  auto pin = leases_->Acquire(request->ticket_id(), fetch_pin_wait_);
  if (!pin.ok()) return ToGrpcStatus(pin.status());
  const SequenceKv& kv = (*pin)->handoff().kv;
  const ModelConfig& c = model_->config;
  const size_t row = size_t(c.num_kv_heads) * c.head_dim;
  const int per_chunk = int(std::max<size_t>(1, kChunkBytes / (2 * row * sizeof(float))));
  std::vector<float> k, v;
  uint64_t bytes = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    for (int first = 0; first < kv.layer_lengths[l]; first += per_chunk) {
      if (context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "KV fetch cancelled");
      }
      const int n = std::min(per_chunk, kv.layer_lengths[l] - first);
      k.resize(row * n);
      v.resize(row * n);
      absl::Status read = ReadKvSlots(*model_->runner, kv, l, first, n, k.data(), v.data());
      if (!read.ok()) return ToGrpcStatus(read);
      internal::v1::KvChunk chunk;
      chunk.set_layer(l);
      chunk.set_first_slot(first);
      chunk.set_num_slots(n);
      chunk.set_k(k.data(), k.size() * sizeof(float));
      chunk.set_v(v.data(), v.size() * sizeof(float));
      if (!writer->Write(chunk)) {
        // The lease stays: the router may retry on another decode worker until it runs out.
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the decode worker stopped reading");
      }
      bytes += 2 * k.size() * sizeof(float);
    }
  }
  (*pin)->Finish();
  if (metrics_) {
    metrics_->OnKvTransfer(-1.0, bytes, "grpc");
    metrics_->SetLeasedTickets(leases_->size());
  }
  return grpc::Status::OK;
}

grpc::Status PrefillWorkerService::ReleaseKv(grpc::ServerContext* context,
                                             const internal::v1::ReleaseKvRequest* request,
                                             internal::v1::ReleaseKvResponse* response) {
  response->set_released(leases_->Release(request->ticket_id()));
  if (metrics_) metrics_->SetLeasedTickets(leases_->size());
  return grpc::Status::OK;
}

grpc::Status PrefillWorkerService::GetLoad(grpc::ServerContext* context,
                                           const internal::v1::LoadRequest* request,
                                           internal::v1::WorkerLoad* response) {
  BlockManager& blocks = model_->runner->block_manager();
  response->set_role("prefill");
  response->set_running(scheduler_->num_running());
  response->set_waiting(scheduler_->num_waiting());
  response->set_queued_prompt_tokens(scheduler_->queued_prompt_tokens());
  response->set_free_kv_blocks(blocks.num_free());
  response->set_total_kv_blocks(blocks.num_blocks());
  response->set_leased_tickets(leases_->size());
  return grpc::Status::OK;
}

grpc::Status PrefillWorkerService::OpenKvLink(grpc::ServerContext* context,
                                              const internal::v1::OpenKvLinkRequest* request,
                                              internal::v1::OpenKvLinkResponse* response) {
  if (links_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this prefill worker sends KV caches over gRPC only (CPU, tp > 1 or "
                        "--kv_transport=grpc)");
  }
  // The decode worker's deadline bounds the join; without one, the lease length does.
  absl::Time deadline = absl::FromChrono(context->deadline());
  deadline = std::min(deadline, absl::Now() + leases_->lease());
  absl::Status opened = links_->Open(request->nccl_id(), request->link_id(), request->peer_id(),
                                     deadline, [context] { return context->IsCancelled(); });
  return ToGrpcStatus(opened);
}

grpc::Status PrefillWorkerService::SendKv(grpc::ServerContext* context,
                                          const internal::v1::SendKvRequest* request,
                                          internal::v1::SendKvResponse* response) {
  if (links_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this prefill worker sends KV caches over gRPC only");
  }
  auto pin = leases_->Acquire(request->ticket_id(), fetch_pin_wait_);
  if (!pin.ok()) return ToGrpcStatus(pin.status());
  const absl::Time deadline = std::min(absl::FromChrono(context->deadline()),
                                       leases_->Deadline(request->ticket_id()));
  absl::StatusOr<uint64_t> sent =
      links_->Send(request->link_id(), (*pin)->handoff().kv, deadline,
                   [context] { return context->IsCancelled(); });
  // A failed send keeps the lease: the decode worker may still fetch over gRPC.
  if (!sent.ok()) return ToGrpcStatus(sent.status());
  (*pin)->Finish();
  response->set_bytes(*sent);
  if (metrics_) {
    metrics_->OnKvTransfer(-1.0, *sent, "nccl");  // the decode side times transfers
    metrics_->SetLeasedTickets(leases_->size());
  }
  return grpc::Status::OK;
}

}  // namespace claa
