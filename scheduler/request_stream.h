#ifndef CLAA_SCHEDULER_REQUEST_STREAM_H_
#define CLAA_SCHEDULER_REQUEST_STREAM_H_

// The channel from the scheduler's worker thread to the RPC handler of one request. The
// scheduler pushes events; the handler pops them, merging consecutive chunks so a slow reader
// gets fewer, larger messages. It holds at most max_tokens chunks, so it stays bounded.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling/stop_conditions.h"

namespace claa {

struct RequestUsage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int kept_prompt_tokens = 0;
};

struct RequestTiming {
  double queue_seconds = 0;
  double ttft_seconds = 0;
  double e2e_seconds = 0;
  double prefill_seconds = 0;  // the step that prefilled the prompt
};

struct RequestEvent {
  // kHandoff: a prefill-only scheduler filed the request's KV under handoff_ticket.
  enum class Kind { kChunk, kComplete, kError, kHandoff };
  Kind kind = Kind::kChunk;
  // kChunk
  std::vector<int32_t> token_ids;
  std::string text;
  // kComplete
  FinishReason finish = FinishReason::kNone;
  std::string stop_reason;
  RequestUsage usage;
  RequestTiming timing;
  // kError
  absl::Status error;
  // kHandoff (usage and timing.queue/prefill are set too)
  std::string handoff_ticket;
  std::vector<float> last_logits;
};

class RequestStream {
 public:
  void Push(RequestEvent event);
  // Waits up to `timeout` for the next event; consecutive chunks come back merged. Returns
  // false on timeout.
  bool Next(RequestEvent* event, absl::Duration timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestEvent> events_;
};

}  // namespace claa

#endif  // CLAA_SCHEDULER_REQUEST_STREAM_H_
