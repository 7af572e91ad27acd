#include "server/stream_relay.h"

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

v1::GenerateResponse ToResponse(const std::string& request_id, const RequestEvent& event) {
  v1::GenerateResponse response;
  response.set_request_id(request_id);
  switch (event.kind) {
    case RequestEvent::Kind::kChunk: {
      v1::Chunk* chunk = response.mutable_chunk();
      chunk->mutable_token_ids()->Add(event.token_ids.begin(), event.token_ids.end());
      chunk->set_text(event.text);
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
      complete->mutable_timing()->set_prefill_seconds(event.timing.prefill_seconds);
      break;
    }
    case RequestEvent::Kind::kError:
      response.mutable_error()->set_code(static_cast<int>(event.error.code()));
      response.mutable_error()->set_message(std::string(event.error.message()));
      break;
    case RequestEvent::Kind::kHandoff:
      break;
  }
  return response;
}

grpc::Status RelayRequestStream(grpc::ServerContext* context, RequestStream& stream,
                                const std::string& id, Scheduler* scheduler,
                                const std::function<bool(const v1::GenerateResponse&)>& write,
                                const std::function<void()>& before_first_chunk) {
  RequestEvent event;
  bool first = true;
  for (;;) {
    if (!stream.Next(&event, kPollInterval)) {
      if (context->IsCancelled()) {
        scheduler->Cancel(id);
        return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled by the client");
      }
      continue;
    }
    switch (event.kind) {
      case RequestEvent::Kind::kChunk:
        if (first && before_first_chunk) before_first_chunk();
        first = false;
        if (!write(ToResponse(id, event))) {
          scheduler->Cancel(id);  // the client went away mid-stream
          return grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading");
        }
        break;
      case RequestEvent::Kind::kComplete:
        write(ToResponse(id, event));
        return grpc::Status::OK;
      case RequestEvent::Kind::kError:
        write(ToResponse(id, event));
        return ToGrpcStatus(event.error);
      case RequestEvent::Kind::kHandoff:
        return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected handoff on a decode stream");
    }
  }
}

}  // namespace claa
