#ifndef CLAA_SCHEDULER_SCHEDULER_OBSERVER_H_
#define CLAA_SCHEDULER_SCHEDULER_OBSERVER_H_

// Hooks through which the scheduler reports what metrics need, so the scheduler itself does not
// depend on the metrics library. Called on the scheduler's worker thread (OnRejected on the
// caller's) and must not block.
#include "engine/pruning/pruning_config.h"
#include "engine/sampling/stop_conditions.h"
#include "scheduler/request_stream.h"

namespace claa {

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void OnScheduled(double queue_seconds) {}
  // `method` is the request's pruning method (dashboards compare TTFT by method).
  virtual void OnPrefillDone(double prefill_seconds, PruningMethod method) {}
  virtual void OnFirstToken(double ttft_seconds, PruningMethod method) {}
  virtual void OnToken(double inter_token_seconds) {}
  virtual void OnFinished(FinishReason reason, const RequestUsage& usage,
                          const RequestTiming& timing, PruningMethod method) {}
  virtual void OnFailed(absl::StatusCode code) {}
  // Prefill-only mode: a request's prefill was handed off (usage has prompt and kept tokens).
  virtual void OnHandoff(const RequestUsage& usage, PruningMethod method) {}
  virtual void OnPreempted() {}
  virtual void OnQueueState(int running, int waiting, double kv_usage) {}
};

}  // namespace claa

#endif  // CLAA_SCHEDULER_SCHEDULER_OBSERVER_H_
