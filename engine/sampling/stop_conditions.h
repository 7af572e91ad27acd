#ifndef CLAA_ENGINE_SAMPLING_STOP_CONDITIONS_H_
#define CLAA_ENGINE_SAMPLING_STOP_CONDITIONS_H_

// Token-level stop conditions (EOS, stop token ids, max_tokens) and request validation for them
// and for stop strings (which StopStringMatcher applies on text).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace claa {

struct StopConditions {
  int max_tokens = 16;                       // OpenAI / vLLM default when the request omits it.
  std::vector<int32_t> stop_token_ids = {};  // From the request.
  std::vector<int32_t> eos_token_ids = {};   // From the model/tokenizer config.
  bool ignore_eos = false;
};

// kStop = stop string or stop token id; kAbort = cancelled by client/server.
enum class FinishReason { kNone, kStop, kLength, kEos, kAbort };

// Lower-case name ("stop", "length", "eos", "abort", "none"), as metrics labels and JSON use.
const char* FinishReasonName(FinishReason reason);

// After a token is generated (num_generated includes it), in precedence order: kEos if it is an
// EOS id and !ignore_eos; kStop if in stop_token_ids; kLength if num_generated >= max_tokens;
// else kNone.
FinishReason CheckTokenStop(const StopConditions& c, int32_t token, int num_generated);

// Request limits. Stop strings are bounded so the matcher's automaton (<= 64 * 256 nodes) and
// hold-back (< 256 bytes) stay small per request.
inline constexpr int kMaxStopStrings = 64;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 256;

// InvalidArgument naming the field: "sampling.max_tokens" (< 1), "sampling.stop" (more than
// kMaxStopStrings, an empty one, or one longer than kMaxStopStringBytes), "sampling.stop_token_ids"
// (more than kMaxStopTokenIds, or an id outside [0, vocab_size)). max_tokens vs. the context
// window is the scheduler's check, since it depends on the prompt length. eos_token_ids come from
// the model, not the request, and are not checked.
absl::Status ValidateStopConditions(const StopConditions& c,
                                    absl::Span<const std::string> stop_strings, int vocab_size);

}  // namespace claa

#endif  // CLAA_ENGINE_SAMPLING_STOP_CONDITIONS_H_
