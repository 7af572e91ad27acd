#ifndef CLAA_SCHEDULER_SCHEDULER_H_
#define CLAA_SCHEDULER_SCHEDULER_H_

// Iteration-level (continuous) batching over one model. One worker thread loops: admit waiting
// requests FCFS while KV blocks allow, then run ONE forward over a batch made of the newly
// admitted prompts (under a token budget) and one decode token of every running request. A
// request whose next token finds no free KV block preempts the newest running request, which
// is re-queued at the front and recomputed later (no output is lost or repeated).
//
// Disaggregated serving uses two more shapes of the same loop: a prefill-only scheduler hands
// each prefilled request (KV blocks + last logits) to a HandoffSink instead of decoding it, and
// any scheduler accepts requests whose KV cache arrives from elsewhere (SubmitImported): they
// are admitted when their blocks fit, their cache is written in, and their first token is
// sampled from the shipped logits without a forward.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/generate/loaded_model.h"
#include "scheduler/handoff.h"
#include "engine/generate/sequence.h"
#include "scheduler/request_stream.h"
#include "scheduler/scheduler_observer.h"

namespace claa {

struct SchedulerOptions {
  // Requests waiting for admission; beyond this Submit returns RESOURCE_EXHAUSTED.
  int max_waiting = 256;
  // Requests decoding at once (the decode batch size).
  int max_running = 64;
  // Prompt tokens prefilled in one step; a longer prompt runs alone.
  int max_prefill_tokens = 4096;
  // Prefill only: every request ends after its prefill with a handoff to handoff_sink (which
  // must outlive the scheduler).
  HandoffSink* handoff_sink = nullptr;
};

class Scheduler {
 public:
  // `model` and `observer` (may be null) must outlive the scheduler.
  Scheduler(LoadedModel* model, SchedulerOptions options, SchedulerObserver* observer);
  ~Scheduler();  // Shutdown()

  // Validates and queues a request. InvalidArgument on bad input, AlreadyExists for a running
  // id, ResourceExhausted when the queue is full, Unavailable after Shutdown.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request);
  // A request whose prompt was prefilled elsewhere: `imported` is its KV cache and last logits.
  // InvalidArgument when the cache does not fit this model's layout.
  absl::StatusOr<std::shared_ptr<RequestStream>> SubmitImported(GenerationRequest request,
                                                                ImportedKv imported);
  // Ends a queued or running request with finish reason ABORT. False when the id is unknown.
  bool Abort(const std::string& request_id);
  // Like Abort, for a client that went away (cancelled call, deadline): nothing is streamed.
  void Cancel(const std::string& request_id);
  // Tells the worker that KV blocks were freed outside it (a handoff lease ended).
  void Wake();
  // Reports running/waiting/KV usage to the observer now (blocks freed outside the worker
  // change the usage while the worker may be idle).
  void ReportState() { ReportQueueState(); }
  // Fails every request with UNAVAILABLE and stops the worker. Idempotent.
  void Shutdown();

  int num_running() const { return num_running_.load(); }
  int num_waiting() const { return num_waiting_.load(); }
  // Prompt tokens of waiting requests (the router balances prefill work by it).
  int64_t queued_prompt_tokens() const { return queued_prompt_tokens_.load(); }

 private:
  struct Entry;
  void WorkerLoop();
  // Moves waiting requests into running while blocks allow (FCFS, no skipping).
  void AdmitLocked();
  // Applies aborts/cancels requested by other threads.
  void ReapLocked();
  // Builds and runs one batch; returns false when there was nothing to do.
  bool Step();
  // Writes admitted imported caches into their blocks and emits their first tokens.
  void ApplyImports();
  // Prefill-only mode: hands a prefilled entry to the sink and ends it.
  void HandOff(Entry* entry, absl::Span<const float> logits, double prefill_seconds);
  // Emits one sampled token (first-token bookkeeping, stream chunk, finish).
  void EmitToken(Entry* entry, const TokenOutput& out, absl::Time when);
  absl::StatusOr<std::shared_ptr<RequestStream>> Enqueue(GenerationRequest request,
                                                         std::unique_ptr<ImportedKv> imported);
  void Preempt(Entry* entry);
  void FinishEntry(Entry* entry, FinishReason reason, std::string text, std::string stop_reason);
  void FailEntry(Entry* entry, const absl::Status& status);
  void Release(Entry* entry);
  void ReportQueueState();

  LoadedModel* model_;
  SchedulerOptions options_;
  SchedulerObserver* observer_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::unique_ptr<Entry>> waiting_;     // guarded by mu_
  std::vector<std::unique_ptr<Entry>> running_;   // worker thread only
  std::unordered_map<std::string, Entry*> by_id_;  // guarded by mu_
  std::vector<std::pair<std::string, bool>> pending_aborts_;  // (id, stream ABORT?) under mu_
  std::atomic<int> num_running_{0};
  std::atomic<int> num_waiting_{0};
  std::atomic<int64_t> queued_prompt_tokens_{0};
  std::mt19937_64 seed_rng_;  // per-request default seeds; under mu_
  uint64_t next_admission_ = 0;  // worker thread only
  std::thread worker_;
};

}  // namespace claa

#endif  // CLAA_SCHEDULER_SCHEDULER_H_
