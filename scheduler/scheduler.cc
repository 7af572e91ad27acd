#include "scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/runtime/kv_slots.h"
#include "engine/util/status_macros.h"

namespace claa {

struct Scheduler::Entry {
  std::unique_ptr<GenerationSequence> seq;
  std::shared_ptr<RequestStream> stream;
  absl::Time arrival;
  absl::Time scheduled;  // first admission
  absl::Time first_token;
  absl::Time last_token;
  bool was_scheduled = false;
  bool got_first_token = false;
  bool silent = false;  // cancelled: the client is gone, stream nothing
  bool done = false;
  uint64_t admission = 0;  // order of first admission; newest is preempted first
  // Set until ApplyImports writes the cache in (then the first token is sampled from it).
  std::unique_ptr<ImportedKv> imported;

  // KV slots this entry needs reserved before its next step.
  int SlotsNeeded() const {
    return imported ? imported->max_layer_length() + 1 : seq->TotalAfterForward();
  }

  const std::string& id() const { return seq->request().request_id; }
};

namespace {

double Seconds(absl::Time from, absl::Time to) { return absl::ToDoubleSeconds(to - from); }

int BlocksFor(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

}  // namespace

Scheduler::Scheduler(LoadedModel* model, SchedulerOptions options, SchedulerObserver* observer)
    : model_(model), options_(options), observer_(observer), seed_rng_(std::random_device{}()) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

Scheduler::~Scheduler() { Shutdown(); }

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Submit(GenerationRequest request) {
  return Enqueue(std::move(request), nullptr);
}

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::SubmitImported(GenerationRequest request,
                                                                         ImportedKv imported) {
  const ModelConfig& c = model_->config;
  const size_t row = size_t(c.num_kv_heads) * c.head_dim;
  const bool on_device = imported.device_stage != nullptr;
  const size_t host_layers = on_device ? 0 : size_t(c.num_layers);
  if (int(imported.layer_lengths.size()) != c.num_layers || imported.k.size() != host_layers ||
      imported.v.size() != host_layers) {
    return absl::InvalidArgumentError(absl::StrCat("imported KV has ", imported.layer_lengths.size(),
                                                   " layers, the model ", c.num_layers));
  }
  if (on_device && imported.device_stage->layer_lengths() != imported.layer_lengths) {
    return absl::InvalidArgumentError("imported KV: the device stage's lengths differ");
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (imported.layer_lengths[l] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("imported KV layer ", l, " has length ",
                                                     imported.layer_lengths[l]));
    }
    if (on_device) continue;
    const size_t want = size_t(imported.layer_lengths[l]) * row;
    if (imported.k[l].size() != want || imported.v[l].size() != want) {
      return absl::InvalidArgumentError(absl::StrCat("imported KV layer ", l, " holds ",
                                                     imported.k[l].size(), " floats, expected ",
                                                     want));
    }
  }
  if (int(imported.last_logits.size()) != c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("imported logits have ",
                                                   imported.last_logits.size(),
                                                   " values, the vocabulary ", c.vocab_size));
  }
  if (imported.num_positions < 1 ||
      imported.num_positions + request.max_tokens > model_->max_context_length ||
      imported.max_layer_length() + request.max_tokens > model_->max_context_length) {
    return absl::InvalidArgumentError("imported KV does not leave room for max_tokens");
  }
  return Enqueue(std::move(request), std::make_unique<ImportedKv>(std::move(imported)));
}

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Enqueue(
    GenerationRequest request, std::unique_ptr<ImportedKv> imported) {
  CLAA_RETURN_IF_ERROR(ValidateGenerationRequest(request, model_->config.vocab_size,
                                                 model_->max_context_length,
                                                 model_->config.num_layers));
  if (imported && options_.handoff_sink != nullptr) {
    return absl::FailedPreconditionError("a prefill-only scheduler does not decode");
  }
  auto entry = std::make_unique<Entry>();
  entry->imported = std::move(imported);
  entry->arrival = absl::Now();
  entry->stream = std::make_shared<RequestStream>();
  std::shared_ptr<RequestStream> stream = entry->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    if (by_id_.count(request.request_id) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("request_id: \"", request.request_id, "\" is already running"));
    }
    if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request queue is full (", options_.max_waiting, " waiting); retry later"));
    }
    const uint64_t seed = seed_rng_();
    entry->seq = std::make_unique<GenerationSequence>(std::move(request), model_->tokenizer.get(),
                                                      model_->eos_token_ids,
                                                      model_->max_context_length,
                                                      model_->config.num_layers, seed);
    by_id_[entry->id()] = entry.get();
    if (!entry->imported) queued_prompt_tokens_ += entry->seq->num_prompt_tokens();
    waiting_.push_back(std::move(entry));
    num_waiting_ = static_cast<int>(waiting_.size());
  }
  cv_.notify_one();
  return stream;
}

bool Scheduler::Abort(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_id_.count(request_id) == 0) return false;
    pending_aborts_.emplace_back(request_id, true);
  }
  cv_.notify_one();
  return true;
}

void Scheduler::Cancel(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_id_.count(request_id) == 0) return;
    pending_aborts_.emplace_back(request_id, false);
  }
  cv_.notify_one();
}

void Scheduler::Wake() { cv_.notify_one(); }

void Scheduler::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Scheduler::WorkerLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] {
        return stopping_ || !waiting_.empty() || !running_.empty() || !pending_aborts_.empty();
      });
      if (stopping_) break;
      ReapLocked();
      AdmitLocked();
    }
    ReportQueueState();
    ApplyImports();
    if (!Step()) {
      // Nothing could run (e.g. every block is leased to a pending KV handoff): wait for a
      // Wake() or a short timeout instead of spinning.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }
  // Shutting down: every request still here gets a terminal status.
  const absl::Status gone = absl::UnavailableError("server is shutting down");
  for (auto& e : running_) FailEntry(e.get(), gone);
  running_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& e : waiting_) FailEntry(e.get(), gone);
  waiting_.clear();
  by_id_.clear();
  num_running_ = 0;
  num_waiting_ = 0;
  queued_prompt_tokens_ = 0;
}

void Scheduler::ReapLocked() {
  for (const auto& [id, stream_abort] : pending_aborts_) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) continue;
    Entry* e = it->second;
    e->silent = !stream_abort;
    FinishEntry(e, FinishReason::kAbort, e->seq->Finish(FinishReason::kAbort), "");
  }
  pending_aborts_.clear();
  // Finished entries leave both queues here, under the lock that guards by_id_.
  auto gone = [this](const std::unique_ptr<Entry>& e) {
    if (!e->done) return false;
    by_id_.erase(e->id());
    return true;
  };
  for (const auto& e : waiting_) {
    if (e->done && !e->imported && !e->was_scheduled) {
      queued_prompt_tokens_ -= e->seq->num_prompt_tokens();
    }
  }
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), gone), waiting_.end());
  running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
  num_waiting_ = static_cast<int>(waiting_.size());
  num_running_ = static_cast<int>(running_.size());
}

void Scheduler::AdmitLocked() {
  BlockManager& blocks = model_->runner->block_manager();
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
    Entry* e = waiting_.front().get();
    const int need = BlocksFor(e->SlotsNeeded(), blocks.block_size());
    if (need > blocks.num_free()) break;  // FCFS: later requests do not jump the queue
    if (!ReserveTokens(blocks, e->seq->kv(), e->SlotsNeeded()).ok()) break;
    if (!e->was_scheduled) {
      if (!e->imported) queued_prompt_tokens_ -= e->seq->num_prompt_tokens();
      e->was_scheduled = true;
      e->scheduled = absl::Now();
      e->admission = next_admission_++;
      if (observer_) observer_->OnScheduled(Seconds(e->arrival, e->scheduled));
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  num_waiting_ = static_cast<int>(waiting_.size());
  num_running_ = static_cast<int>(running_.size());
}

bool Scheduler::Step() {
  if (running_.empty()) return false;
  BlockManager& blocks = model_->runner->block_manager();
  std::vector<Entry*> order;
  for (auto& e : running_) {
    if (!e->done) order.push_back(e.get());  // e.g. finished by its imported first token
  }
  std::sort(order.begin(), order.end(),
            [](const Entry* a, const Entry* b) { return a->admission < b->admission; });

  // Every running request needs room for the tokens it is about to feed; the newest yield.
  for (size_t i = 0; i < order.size();) {
    Entry* e = order[i];
    if (ReserveTokens(blocks, e->seq->kv(), e->SlotsNeeded()).ok()) {
      ++i;
      continue;
    }
    if (order.size() == 1) {
      FailEntry(e, absl::ResourceExhaustedError("KV cache exhausted by a single request"));
      order.clear();
      break;
    }
    Entry* victim = order.back();
    order.pop_back();
    Preempt(victim);
  }

  // Decodes always run; prompts join under the prefill token budget (at least one).
  std::vector<Entry*> batch;
  std::vector<ForwardItem> items;
  int prefill_tokens = 0;
  bool has_prefill = false;
  for (Entry* e : order) {
    const int n = static_cast<int>(e->seq->PendingTokens().size());
    const bool is_prefill = e->seq->start_pos() == 0 || n > 1;
    if (is_prefill) {
      if (has_prefill && prefill_tokens + n > options_.max_prefill_tokens) continue;
      has_prefill = true;
      prefill_tokens += n;
    }
    batch.push_back(e);
    items.push_back(e->seq->NextItem());
  }
  if (batch.empty()) return false;

  std::vector<float> logits;
  const absl::Time start = absl::Now();
  absl::Status status = model_->runner->Forward(items, &logits);
  const absl::Time end = absl::Now();
  if (!status.ok()) {
    for (Entry* e : batch) FailEntry(e, absl::InternalError(status.ToString()));
  } else {
    const int vocab = model_->config.vocab_size;
    for (size_t i = 0; i < batch.size(); ++i) {
      Entry* e = batch[i];
      const bool was_prefill = e->seq->start_pos() == 0;
      e->seq->MarkFed();
      TrimBlocks(blocks, e->seq->kv());
      if (!e->seq->CaughtUp()) continue;  // a pruned recompute fed its prompt only
      const auto row = absl::MakeConstSpan(logits).subspan(i * static_cast<size_t>(vocab), vocab);
      if (observer_ && was_prefill && !e->got_first_token) {
        observer_->OnPrefillDone(Seconds(start, end), e->seq->request().pruning.method);
      }
      if (options_.handoff_sink != nullptr) {
        HandOff(e, row, Seconds(start, end));
        continue;
      }
      absl::StatusOr<TokenOutput> out = e->seq->OnLogits(row);
      if (!out.ok()) {
        FailEntry(e, out.status());
        continue;
      }
      EmitToken(e, *out, end);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
  }
  ReportQueueState();  // so the gauges read zero once the server goes idle
  return true;
}

void Scheduler::EmitToken(Entry* e, const TokenOutput& out, absl::Time when) {
  if (!e->got_first_token) {
    e->got_first_token = true;
    e->first_token = when;
    if (observer_) observer_->OnFirstToken(Seconds(e->arrival, when), e->seq->request().pruning.method);
  } else if (observer_) {
    observer_->OnToken(Seconds(e->last_token, when));
  }
  e->last_token = when;
  RequestEvent chunk;
  chunk.kind = RequestEvent::Kind::kChunk;
  chunk.token_ids.push_back(out.token);
  chunk.text = out.text;
  e->stream->Push(std::move(chunk));
  if (out.finish != FinishReason::kNone) FinishEntry(e, out.finish, "", out.stop_reason);
}

void Scheduler::ApplyImports() {
  for (auto& owned : running_) {
    Entry* e = owned.get();
    if (!e->imported || e->done) continue;
    std::unique_ptr<ImportedKv> in = std::move(e->imported);
    SequenceKv* kv = e->seq->kv();
    absl::Status status = absl::OkStatus();
    if (in->device_stage != nullptr) {
      status = WriteStagedKv(*model_->runner, *kv, *in->device_stage);
    }
    for (int l = 0; l < int(in->k.size()) && status.ok(); ++l) {
      status = WriteKvSlots(*model_->runner, *kv, l, 0, in->layer_lengths[l], in->k[l].data(),
                            in->v[l].data());
    }
    if (!status.ok()) {
      FailEntry(e, absl::InternalError(absl::StrCat("importing the KV cache: ", status.message())));
      continue;
    }
    kv->layer_lengths = in->layer_lengths;
    kv->num_positions = in->num_positions;
    e->seq->MarkImported(in->kept_prompt_tokens);
    absl::StatusOr<TokenOutput> out = e->seq->OnLogits(in->last_logits);
    if (!out.ok()) {
      FailEntry(e, out.status());
      continue;
    }
    EmitToken(e, *out, absl::Now());
  }
}

void Scheduler::HandOff(Entry* e, absl::Span<const float> logits, double prefill_seconds) {
  PrefillHandoff h;
  h.request_id = e->id();
  h.kv = std::move(*e->seq->kv());
  *e->seq->kv() = SequenceKv(model_->config.num_layers);  // nothing left for Release to free
  h.last_logits.assign(logits.begin(), logits.end());
  h.prompt_tokens = e->seq->num_prompt_tokens();
  h.kept_prompt_tokens = e->seq->kept_prompt_tokens();
  h.keep_ratio = e->seq->request().pruning.prunes() ? e->seq->request().pruning.keep_ratio : 1.0;
  h.queue_seconds = e->was_scheduled ? Seconds(e->arrival, e->scheduled) : 0.0;
  h.prefill_seconds = prefill_seconds;
  RequestEvent event;
  event.kind = RequestEvent::Kind::kHandoff;
  event.usage.prompt_tokens = h.prompt_tokens;
  event.usage.kept_prompt_tokens = h.kept_prompt_tokens;
  event.timing.queue_seconds = h.queue_seconds;
  event.timing.prefill_seconds = prefill_seconds;
  event.last_logits = h.last_logits;
  if (observer_) observer_->OnHandoff(event.usage, e->seq->request().pruning.method);
  e->done = true;
  if (e->silent) {  // the requester is gone: nobody will fetch this cache
    ReleaseSequence(model_->runner->block_manager(), &h.kv);
    return;
  }
  event.handoff_ticket = options_.handoff_sink->Accept(std::move(h));
  e->stream->Push(std::move(event));
}

void Scheduler::Preempt(Entry* entry) {
  Release(entry);
  entry->seq->ResetForRecompute();
  entry->imported.reset();  // recomputed from the prompt like any other request
  if (observer_) observer_->OnPreempted();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(running_.begin(), running_.end(),
                         [entry](const auto& e) { return e.get() == entry; });
  if (it == running_.end()) return;
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  num_waiting_ = static_cast<int>(waiting_.size());
  num_running_ = static_cast<int>(running_.size());
}

void Scheduler::Release(Entry* entry) {
  ReleaseSequence(model_->runner->block_manager(), entry->seq->kv());
}

void Scheduler::FinishEntry(Entry* entry, FinishReason reason, std::string text,
                            std::string stop_reason) {
  if (entry->done) return;
  entry->done = true;
  Release(entry);
  const absl::Time now = absl::Now();
  RequestEvent complete;
  complete.kind = RequestEvent::Kind::kComplete;
  complete.finish = reason;
  complete.stop_reason = std::move(stop_reason);
  complete.usage.prompt_tokens = entry->seq->num_prompt_tokens();
  complete.usage.completion_tokens = static_cast<int>(entry->seq->generated().size());
  complete.usage.kept_prompt_tokens = entry->seq->kept_prompt_tokens();
  complete.timing.queue_seconds =
      entry->was_scheduled ? Seconds(entry->arrival, entry->scheduled) : Seconds(entry->arrival, now);
  complete.timing.ttft_seconds =
      entry->got_first_token ? Seconds(entry->arrival, entry->first_token) : 0.0;
  complete.timing.e2e_seconds = Seconds(entry->arrival, now);
  if (observer_) {
    observer_->OnFinished(reason, complete.usage, complete.timing,
                          entry->seq->request().pruning.method);
  }
  if (entry->silent) return;
  if (!text.empty()) {
    RequestEvent chunk;
    chunk.kind = RequestEvent::Kind::kChunk;
    chunk.text = std::move(text);
    entry->stream->Push(std::move(chunk));
  }
  entry->stream->Push(std::move(complete));
}

void Scheduler::FailEntry(Entry* entry, const absl::Status& status) {
  if (entry->done) return;
  entry->done = true;
  Release(entry);
  if (observer_) observer_->OnFailed(status.code());
  RequestEvent error;
  error.kind = RequestEvent::Kind::kError;
  error.error = status;
  entry->stream->Push(std::move(error));
}

void Scheduler::ReportQueueState() {
  if (observer_) {
    observer_->OnQueueState(num_running_.load(), num_waiting_.load(),
                            model_->runner->block_manager().usage());
  }
}

}  // namespace claa
