#include "engine/sampling/stop_conditions.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace claa {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t token) {
  return std::find(ids.begin(), ids.end(), token) != ids.end();
}

}  // namespace

FinishReason CheckTokenStop(const StopConditions& c, int32_t token, int num_generated) {
  if (!c.ignore_eos && Contains(c.eos_token_ids, token)) return FinishReason::kEos;
  if (Contains(c.stop_token_ids, token)) return FinishReason::kStop;
  if (num_generated >= c.max_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

absl::Status ValidateStopConditions(const StopConditions& c,
                                    absl::Span<const std::string> stop_strings, int vocab_size) {
  if (c.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.max_tokens must be >= 1, got %d", c.max_tokens));
  }
  if (stop_strings.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sampling.stop allows at most %d strings, got %d", kMaxStopStrings, stop_strings.size()));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("sampling.stop[%d] must not be empty", i));
    }
    if (stop_strings[i].size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("sampling.stop[%d] must be at most %d bytes, got %d", i,
                          kMaxStopStringBytes, stop_strings[i].size()));
    }
  }
  if (c.stop_token_ids.size() > static_cast<size_t>(kMaxStopTokenIds)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.stop_token_ids allows at most %d ids, got %d", kMaxStopTokenIds,
                        c.stop_token_ids.size()));
  }
  for (int32_t id : c.stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "sampling.stop_token_ids: id %d is outside [0, vocab_size=%d)", id, vocab_size));
    }
  }
  return absl::OkStatus();
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return "none";
}

}  // namespace claa
