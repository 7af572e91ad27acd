#include "server/generation_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/request_convert.h"

namespace claa {
namespace {

// How often a streaming handler wakes to notice a cancelled call or a passed deadline.
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

GenerationService::GenerationService(LoadedModel* model, Scheduler* scheduler,
                                     ServerMetrics* metrics, PruningConfig default_pruning)
    : model_(model),
      scheduler_(scheduler),
      metrics_(metrics),
      default_pruning_(default_pruning) {}

grpc::Status GenerationService::Reject(const absl::Status& status) {
  if (metrics_) metrics_->OnRejected(status.code());
  return ToGrpcStatus(status);
}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  absl::StatusOr<GenerationRequest> converted = ConvertGenerateRequest(
      *request, *model_->tokenizer, absl::StrCat("req-", next_id_.fetch_add(1)));
  if (!converted.ok()) return Reject(converted.status());
  absl::StatusOr<PruningConfig> pruning =
      ConvertPruningOptions(request->pruning(), default_pruning_, model_->config.num_layers);
  if (!pruning.ok()) return Reject(pruning.status());
  converted->pruning = *pruning;
  // An unset max_tokens means "up to 16, as far as the context allows", never an error.
  if (!request->sampling().has_max_tokens()) {
    const int room = model_->max_context_length - static_cast<int>(converted->prompt_ids.size());
    converted->max_tokens = std::max(1, std::min(kDefaultMaxTokens, room));
  }
  const std::string id = converted->request_id;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = scheduler_->Submit(*std::move(converted));
  if (!stream.ok()) return Reject(stream.status());

  RequestEvent event;
  for (;;) {
    if (!(*stream)->Next(&event, kPollInterval)) {
      if (context->IsCancelled()) {
        scheduler_->Cancel(id);
        return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled by the client");
      }
      continue;
    }
    v1::GenerateResponse response;
    response.set_request_id(id);
    switch (event.kind) {
      case RequestEvent::Kind::kChunk: {
        v1::Chunk* chunk = response.mutable_chunk();
        chunk->mutable_token_ids()->Add(event.token_ids.begin(), event.token_ids.end());
        chunk->set_text(event.text);
        if (!writer->Write(response)) {
          scheduler_->Cancel(id);  // the client went away mid-stream
          return grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading");
        }
        break;
      }
      case RequestEvent::Kind::kComplete: {
        v1::Complete* complete = response.mutable_complete();
        complete->set_finish_reason(ToProto(event.finish));
        complete->set_stop_reason(event.stop_reason);
        complete->mutable_usage()->set_prompt_tokens(event.usage.prompt_tokens);
        complete->mutable_usage()->set_completion_tokens(event.usage.completion_tokens);
        complete->mutable_usage()->set_kept_prompt_tokens(event.usage.kept_prompt_tokens);
        complete->mutable_timing()->set_queue_seconds(event.timing.queue_seconds);
        complete->mutable_timing()->set_ttft_seconds(event.timing.ttft_seconds);
        complete->mutable_timing()->set_e2e_seconds(event.timing.e2e_seconds);
        writer->Write(response);
        return grpc::Status::OK;
      }
      case RequestEvent::Kind::kError: {
        response.mutable_error()->set_code(static_cast<int>(event.error.code()));
        response.mutable_error()->set_message(std::string(event.error.message()));
        writer->Write(response);
        return ToGrpcStatus(event.error);
      }
    }
  }
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
  const ModelConfig& c = model_->config;
  response->set_model_name(model_->name);
  response->set_architecture(c.architecture);
  response->set_builtin(model_->builtin);
  response->set_vocab_size(c.vocab_size);
  response->set_max_context_length(model_->max_context_length);
  response->set_num_layers(c.num_layers);
  response->set_hidden_size(c.hidden_size);
  response->set_num_heads(c.num_heads);
  response->set_num_kv_heads(c.num_kv_heads);
  response->set_tp_size(model_->runner->tp_size());
  if (model_->bos_token_id) response->set_bos_token_id(*model_->bos_token_id);
  for (int32_t id : model_->eos_token_ids) response->add_eos_token_ids(id);
  response->set_backend("cpu");
  return grpc::Status::OK;
}

}  // namespace claa
