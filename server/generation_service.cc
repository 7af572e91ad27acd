#include "server/generation_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/raw_request.h"
#include "server/request_convert.h"
#include "server/stream_relay.h"

namespace claa {
GenerationService::GenerationService(LoadedModel* model, Scheduler* scheduler,
                                     ServerMetrics* metrics, PruningConfig default_pruning)
    : model_(model),
      scheduler_(scheduler),
      metrics_(metrics),
      default_pruning_(default_pruning) {
  // Generate parses its own request, so that invalid UTF-8 gets INVALID_ARGUMENT naming the field
  // (raw_request.h explains why).
  MarkMethodStreamed(
      MethodIndex(v1::Generation::service_full_name(), "Generate"),
      ParsingServerStreamingHandler<v1::GenerateRequest, v1::GenerateResponse>(
          [this](grpc::ServerContext* context, const v1::GenerateRequest& request,
                 const std::function<bool(const v1::GenerateResponse&)>& write) {
            return Serve(context, request, write);
          },
          [this](const absl::Status& status) { return Reject(status); }));
}

grpc::Status GenerationService::Reject(const absl::Status& status) {
  if (metrics_) metrics_->OnRejected(status.code());
  return ToGrpcStatus(status);
}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return Serve(context, *request,
               [writer](const v1::GenerateResponse& r) { return writer->Write(r); });
}

grpc::Status GenerationService::Serve(
    grpc::ServerContext* context, const v1::GenerateRequest& request,
    const std::function<bool(const v1::GenerateResponse&)>& write) {
  absl::StatusOr<GenerationRequest> converted =
      PrepareRequest(request, *model_->tokenizer, model_->config, model_->max_context_length,
                     default_pruning_, absl::StrCat("req-", next_id_.fetch_add(1)));
  if (!converted.ok()) return Reject(converted.status());
  const std::string id = converted->request_id;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = scheduler_->Submit(*std::move(converted));
  if (!stream.ok()) return Reject(stream.status());

  return RelayRequestStream(context, **stream, id, scheduler_, write);
}

grpc::Status GenerationService::Abort(grpc::ServerContext* context,
                                      const v1::AbortRequest* request,
                                      v1::AbortResponse* response) {
  if (request->request_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id: must not be empty");
  }
  response->set_found(scheduler_->Abort(request->request_id()));
  return grpc::Status::OK;
}

grpc::Status GenerationService::GetModelInfo(grpc::ServerContext* context,
                                             const v1::GetModelInfoRequest* request,
                                             v1::ModelInfo* response) {
  FillModelInfo(*model_, "cpu", response);
  return grpc::Status::OK;
}

}  // namespace claa
