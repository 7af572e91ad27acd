#include "server/decode_worker_service.h"

#include <iostream>

#include "absl/time/clock.h"
#include "server/request_convert.h"
#include "server/stream_relay.h"

namespace claa {

DecodeWorkerService::DecodeWorkerService(
    LoadedModel* model, Scheduler* scheduler, ServerMetrics* metrics,
    std::shared_ptr<grpc::ChannelCredentials> fetch_credentials, std::string tls_server_name,
    KvTransport transport)
    : model_(model),
      scheduler_(scheduler),
      metrics_(metrics),
      channels_(std::move(fetch_credentials), std::move(tls_server_name)),
      transport_(transport) {
  ModelRunner* runner = model_->runner.get();
  if (transport_ != KvTransport::kGrpc && runner != nullptr && runner->on_gpu() &&
      runner->tp_size() == 1) {
    links_ = std::make_unique<KvLinkReceivers>(&runner->gpu_model(), &channels_);
  }
}

grpc::Status DecodeWorkerService::Decode(grpc::ServerContext* context,
                                         const internal::v1::DecodeRequest* request,
                                         grpc::ServerWriter<internal::v1::DecodeEvent>* writer) {
  absl::StatusOr<GenerationRequest> converted =
      PrepareRequest(request->request(), *model_->tokenizer, model_->config,
                     model_->max_context_length, PruningConfig(), "decode");
  if (!converted.ok()) return ToGrpcStatus(converted.status());
  if (request->last_logits_size() != model_->config.vocab_size) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "last_logits: wrong vocabulary size");
  }
  const absl::Time fetch_start = absl::Now();
  std::string transport = "grpc";
  absl::StatusOr<ImportedKv> imported = absl::UnavailableError("no transport tried");
  // kNccl tries every time; kAuto skips a prefill worker whose link recently failed to open.
  if (links_ != nullptr && request->ticket().nccl() &&
      (transport_ == KvTransport::kNccl || links_->Usable(request->ticket().source()))) {
    transport = "nccl";
    imported = links_->Receive(request->ticket(), model_->config);
    if (!imported.ok() && transport_ == KvTransport::kAuto) {  // the lease is still there
      std::cerr << "claa-server: " << imported.status().message()
                << "; fetching over gRPC instead" << std::endl;
      transport = "grpc";
    }
  }
  if (transport == "grpc") {
    imported = FetchKv(channels_, request->ticket(), model_->config);
  }
  if (!imported.ok()) {
    // Whatever the transport said, the request cannot go on here: the router decides.
    return grpc::Status(imported.status().code() == absl::StatusCode::kFailedPrecondition
                            ? grpc::StatusCode::FAILED_PRECONDITION
                            : grpc::StatusCode::UNAVAILABLE,
                        std::string(imported.status().message()));
  }
  const double transfer_seconds = absl::ToDoubleSeconds(absl::Now() - fetch_start);
  const uint64_t bytes = imported->device_stage != nullptr ? imported->device_stage->bytes()
                                                           : request->ticket().bytes();
  if (metrics_) metrics_->OnKvTransfer(transfer_seconds, bytes, transport);
  imported->last_logits.assign(request->last_logits().begin(), request->last_logits().end());

  const std::string id = converted->request_id;
  const absl::Time submitted = absl::Now();
  auto stream = scheduler_->SubmitImported(*std::move(converted), *std::move(imported));
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  auto write = [writer](const v1::GenerateResponse& r) {
    internal::v1::DecodeEvent event;
    *event.mutable_response() = r;
    return writer->Write(event);
  };
  auto handoff_timing = [&] {
    const double queue = absl::ToDoubleSeconds(absl::Now() - submitted);
    if (metrics_) metrics_->OnDecodeQueue(queue);
    internal::v1::DecodeEvent event;
    event.mutable_handoff()->set_kv_transfer_seconds(transfer_seconds);
    event.mutable_handoff()->set_kv_bytes(bytes);
    event.mutable_handoff()->set_decode_queue_seconds(queue);
    event.mutable_handoff()->set_transport(transport);
    writer->Write(event);
  };
  return RelayRequestStream(context, **stream, id, scheduler_, write, handoff_timing);
}

grpc::Status DecodeWorkerService::Abort(grpc::ServerContext* context,
                                        const v1::AbortRequest* request,
                                        v1::AbortResponse* response) {
  response->set_found(scheduler_->Abort(request->request_id()));
  return grpc::Status::OK;
}

grpc::Status DecodeWorkerService::GetLoad(grpc::ServerContext* context,
                                          const internal::v1::LoadRequest* request,
                                          internal::v1::WorkerLoad* response) {
  BlockManager& blocks = model_->runner->block_manager();
  response->set_role("decode");
  response->set_running(scheduler_->num_running());
  response->set_waiting(scheduler_->num_waiting());
  response->set_free_kv_blocks(blocks.num_free());
  response->set_total_kv_blocks(blocks.num_blocks());
  return grpc::Status::OK;
}

}  // namespace claa
