#ifndef CLAA_ENGINE_GENERATE_GENERATE_H_
#define CLAA_ENGINE_GENERATE_GENERATE_H_

// Synchronous single-request generation (claa-cli, tests, benchmarks). The server uses the
// scheduler instead, which batches many GenerationSequences.
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/generate/loaded_model.h"
#include "engine/generate/sequence.h"

namespace claa {

struct GenerationResult {
  std::vector<int32_t> token_ids;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  std::string stop_reason;
};

// Validates, prefills and decodes until a stop condition. on_token (optional) sees each token.
// The KV blocks are released on every path.
absl::StatusOr<GenerationResult> Generate(LoadedModel& model, GenerationRequest request,
                                          const std::function<void(const TokenOutput&)>& on_token = {});

}  // namespace claa

#endif  // CLAA_ENGINE_GENERATE_GENERATE_H_
