#include "server/router_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/raw_request.h"
#include "server/request_convert.h"
#include "server/stream_relay.h"

namespace claa {
namespace {

double Seconds(absl::Time from, absl::Time to) { return absl::ToDoubleSeconds(to - from); }

FinishReason FromProto(v1::FinishReason r) {
  switch (r) {
    case v1::STOP: return FinishReason::kStop;
    case v1::LENGTH: return FinishReason::kLength;
    case v1::EOS: return FinishReason::kEos;
    case v1::ABORT: return FinishReason::kAbort;
    default: return FinishReason::kNone;
  }
}

}  // namespace

RouterService::RouterService(LoadedModel* model, PruningConfig default_pruning,
                             WorkerPool* prefill, WorkerPool* decode, ServerMetrics* metrics,
                             RouterTimeouts timeouts)
    : model_(model),
      default_pruning_(default_pruning),
      prefill_(prefill),
      decode_(decode),
      metrics_(metrics),
      timeouts_(timeouts) {
  // Generate parses its own request, so that invalid UTF-8 gets INVALID_ARGUMENT naming the field
  // (raw_request.h explains why).
  MarkMethodStreamed(MethodIndex(v1::Generation::service_full_name(), "Generate"),
                     ParsingServerStreamingHandler<v1::GenerateRequest, v1::GenerateResponse>(
                         [this](grpc::ServerContext* context, const v1::GenerateRequest& request,
                                const Write& write) { return Serve(context, request, write); },
                         [this](const absl::Status& status) { return Reject(status); }));
}

grpc::Status RouterService::Reject(const absl::Status& status) {
  if (metrics_) metrics_->OnRejected(status.code());
  return ToGrpcStatus(status);
}

void RouterService::ReportRunning() {
  if (metrics_ == nullptr) return;
  int running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running = static_cast<int>(active_.size());
  }
  metrics_->OnQueueState(running, 0, 0.0);
}

grpc::Status RouterService::Generate(grpc::ServerContext* context,
                                     const v1::GenerateRequest* request,
                                     grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return Serve(context, *request,
               [writer](const v1::GenerateResponse& r) { return writer->Write(r); });
}

grpc::Status RouterService::Serve(grpc::ServerContext* context,
                                  const v1::GenerateRequest& request, const Write& write) {
  const absl::Time arrival = absl::Now();
  absl::StatusOr<GenerationRequest> prepared =
      PrepareRequest(request, *model_->tokenizer, model_->config, model_->max_context_length,
                     default_pruning_, absl::StrCat("req-", next_id_.fetch_add(1)));
  if (!prepared.ok()) return Reject(prepared.status());
  const std::string id = prepared->request_id;
  const PruningMethod method = prepared->pruning.method;
  auto active = std::make_shared<Active>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!active_.emplace(id, active).second) {
      return Reject(absl::AlreadyExistsError(
          absl::StrCat("request_id: \"", id, "\" is already running")));
    }
  }
  ReportRunning();
  struct Unregister {
    RouterService* self;
    std::string id;
    ~Unregister() {
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->active_.erase(id);
      }
      self->ReportRunning();
    }
  } unregister{this, id};

  // --- Prefill, on another worker if one is down. ---
  internal::v1::PrefillRequest prefill_request;
  *prefill_request.mutable_request() = ToWorkerRequest(request, *prepared);
  internal::v1::PrefillResponse prefilled;
  WorkerPool::Worker* prefill_worker = nullptr;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<WorkerPool::Worker*> w =
        prefill_->Pick(static_cast<int64_t>(prepared->prompt_ids.size()));
    if (!w.ok()) return Reject(w.status());
    auto call = grpc::ClientContext::FromServerContext(*context);
    grpc::Status s = (*w)->prefill->Prefill(call.get(), prefill_request, &prefilled);
    if (s.ok()) {
      prefill_worker = *w;
      break;
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE || attempt + 1 >= prefill_->size()) {
      if (metrics_) metrics_->OnRejected(static_cast<absl::StatusCode>(s.error_code()));
      return grpc::Status(s.error_code(), s.error_code() == grpc::StatusCode::UNAVAILABLE
                                              ? absl::StrCat("prefill worker ", (*w)->address,
                                                             ": ", s.error_message())
                                              : s.error_message());
    }
    prefill_->MarkUnhealthy(*w, s.error_message());
  }
  const internal::v1::KvTicket& ticket = prefilled.ticket();
  if (metrics_) {
    metrics_->OnScheduled(prefilled.queue_seconds());
    metrics_->OnPrefillDone(prefilled.prefill_seconds(), method);
  }
  auto release_ticket = [&] {
    grpc::ClientContext release_context;
    release_context.set_deadline(absl::ToChronoTime(absl::Now() + timeouts_.release_kv));
    internal::v1::ReleaseKvRequest release;
    release.set_ticket_id(ticket.ticket_id());
    internal::v1::ReleaseKvResponse ignored;
    prefill_worker->prefill->ReleaseKv(&release_context, release, &ignored);
  };

  auto finish_aborted = [&] {
    release_ticket();
    v1::GenerateResponse response;
    response.set_request_id(id);
    v1::Complete* complete = response.mutable_complete();
    complete->set_finish_reason(v1::ABORT);
    complete->mutable_usage()->set_prompt_tokens(ticket.prompt_tokens());
    complete->mutable_usage()->set_kept_prompt_tokens(ticket.kept_prompt_tokens());
    complete->mutable_timing()->set_e2e_seconds(Seconds(arrival, absl::Now()));
    write(response);
    return grpc::Status::OK;
  };

  // --- Decode: hand over the ticket and relay the stream. A decode worker that fails before
  // it said anything (down, or its fetch failed) is replaced by another while the lease lasts.
  internal::v1::DecodeRequest decode_request;
  *decode_request.mutable_request() = prefill_request.request();
  *decode_request.mutable_ticket() = ticket;
  *decode_request.mutable_last_logits() = prefilled.last_logits();
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<WorkerPool::Worker*> decode_worker = decode_->Pick(0);
    if (!decode_worker.ok()) {
      release_ticket();
      return Reject(decode_worker.status());
    }
    {
      std::lock_guard<std::mutex> lock(active->mu);
      if (active->aborted) return finish_aborted();
      active->decode = *decode_worker;
    }
    bool heard = false;
    grpc::Status status = RelayDecode(context, write, *decode_worker, decode_request, id, method,
                                      arrival, prefilled, &heard);
    if (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED) return status;
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled by the client");
    }
    const bool retry = !heard && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
                       attempt + 1 < decode_->size();
    if (!heard && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      decode_->MarkUnhealthy(*decode_worker, status.error_message());
    }
    if (retry) continue;
    release_ticket();  // nobody holds the cache any more (a no-op when it was fetched)
    if (metrics_) metrics_->OnFailed(static_cast<absl::StatusCode>(status.error_code()));
    return grpc::Status(status.error_code(),
                        absl::StrCat("decode worker ", (*decode_worker)->address,
                                     heard ? " failed mid-stream: " : ": ",
                                     status.error_message()));
  }
}

grpc::Status RouterService::RelayDecode(grpc::ServerContext* context, const Write& write,
                                        WorkerPool::Worker* worker,
                                        const internal::v1::DecodeRequest& decode_request,
                                        const std::string& id, PruningMethod method,
                                        absl::Time arrival,
                                        const internal::v1::PrefillResponse& prefilled,
                                        bool* heard) {
  auto call = grpc::ClientContext::FromServerContext(*context);
  auto reader = worker->decode->Decode(call.get(), decode_request);
  internal::v1::DecodeEvent event;
  internal::v1::HandoffTiming handoff;
  bool got_first = false, done = false;
  absl::Time last_token = arrival;
  while (reader->Read(&event)) {
    *heard = true;
    if (event.has_handoff()) {
      handoff = event.handoff();
      if (metrics_) {
        metrics_->OnKvTransfer(handoff.kv_transfer_seconds(), 0,
                               handoff.transport().empty() ? "grpc" : handoff.transport());
        metrics_->OnDecodeQueue(handoff.decode_queue_seconds());
      }
      continue;
    }
    v1::GenerateResponse response = event.response();
    const absl::Time now = absl::Now();
    if (response.has_chunk()) {
      if (!got_first) {
        got_first = true;
        if (metrics_) metrics_->OnFirstToken(Seconds(arrival, now), method);
      } else if (metrics_) {
        metrics_->OnToken(Seconds(last_token, now));
      }
      last_token = now;
      if (!write(response)) {
        call->TryCancel();  // the client went away: the decode worker frees the request
        reader->Finish();
        return grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading");
      }
    } else if (response.has_complete()) {
      // The router's clock: the client's view of queue, TTFT and end to end, and the parts.
      v1::Timing* t = response.mutable_complete()->mutable_timing();
      t->set_queue_seconds(prefilled.queue_seconds());
      t->set_prefill_seconds(prefilled.queue_seconds() + prefilled.prefill_seconds());
      t->set_kv_transfer_seconds(handoff.kv_transfer_seconds());
      t->set_decode_queue_seconds(handoff.decode_queue_seconds());
      t->set_ttft_seconds(got_first ? Seconds(arrival, last_token) : 0.0);
      t->set_e2e_seconds(Seconds(arrival, now));
      if (metrics_) {
        const v1::Usage& u = response.complete().usage();
        RequestUsage usage{int(u.prompt_tokens()), int(u.completion_tokens()),
                           int(u.kept_prompt_tokens())};
        RequestTiming timing;
        timing.queue_seconds = t->queue_seconds();
        timing.ttft_seconds = t->ttft_seconds();
        timing.e2e_seconds = t->e2e_seconds();
        metrics_->OnFinished(FromProto(response.complete().finish_reason()), usage, timing,
                             method);
      }
      write(response);
      done = true;
    } else if (response.has_error()) {
      write(response);
      done = true;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return status;
  if (!done) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the decode stream ended without completing");
  }
  return grpc::Status::OK;
}

grpc::Status RouterService::Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) {
  if (request->request_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id: must not be empty");
  }
  std::shared_ptr<Active> active;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(request->request_id());
    if (it == active_.end()) {
      response->set_found(false);
      return grpc::Status::OK;
    }
    active = it->second;
  }
  WorkerPool::Worker* decode;
  {
    std::lock_guard<std::mutex> lock(active->mu);
    active->aborted = true;
    decode = active->decode;
  }
  response->set_found(true);
  if (decode != nullptr) {
    // The decode worker ends the stream with ABORT; the router relays it.
    grpc::ClientContext call;
    call.set_deadline(absl::ToChronoTime(absl::Now() + timeouts_.abort));
    v1::AbortResponse ignored;
    grpc::Status s = decode->decode->Abort(&call, *request, &ignored);
    if (!s.ok()) return s;
  }
  return grpc::Status::OK;
}

grpc::Status RouterService::GetModelInfo(grpc::ServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) {
  FillModelInfo(*model_, "router", response);
  return grpc::Status::OK;
}

}  // namespace claa
