#ifndef CLAA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define CLAA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

// Per-request sampling knobs (OpenAI/vLLM meaning) and their validation.
#include <cstdint>
#include <optional>

#include "absl/status/status.h"

namespace claa {

struct SamplingParams {
  float temperature = 1.0f;                     // 0 => greedy (argmax, ties -> lowest id).
  int top_k = 0;                                // 0 or -1 => disabled.
  float top_p = 1.0f;                           // (0, 1]; 1 => disabled.
  std::optional<uint64_t> seed = std::nullopt;  // Absent => server-chosen seed.
};

// Upper bound on temperature: beyond this the distribution is uniform for any real logits,
// so larger values only signal a client bug.
inline constexpr float kMaxTemperature = 100.0f;

// InvalidArgument naming the field, e.g. "sampling.temperature must be >= 0 and finite, got -1":
//   temperature < 0, NaN/inf or > kMaxTemperature; top_p not in (0, 1] or NaN;
//   top_k < -1 or > vocab_size; vocab_size <= 0 (caller bug, reported as "vocab_size").
absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab_size);

}  // namespace claa

#endif  // CLAA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
