#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace claa {

absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab_size) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vocab_size must be positive, got %d", vocab_size));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.temperature must be >= 0 and finite, got %g", p.temperature));
  }
  if (p.temperature > kMaxTemperature) {
    return absl::InvalidArgumentError(absl::StrFormat("sampling.temperature must be <= %g, got %g",
                                                      kMaxTemperature, p.temperature));
  }
  // Written so NaN fails too (every comparison with NaN is false).
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.top_p must be in (0, 1], got %g", p.top_p));
  }
  if (p.top_k < -1 || p.top_k > vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.top_k must be -1, 0 (disabled) or in [1, vocab_size=%d], got %d",
                        vocab_size, p.top_k));
  }
  return absl::OkStatus();
}

}  // namespace claa
