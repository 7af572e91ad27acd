#ifndef CLAA_SERVER_REQUEST_CONVERT_H_
#define CLAA_SERVER_REQUEST_CONVERT_H_

// Turns a public GenerateRequest into the engine's GenerationRequest: defaults, tokenization and
// every check whose failure is the client's fault (InvalidArgument naming the field). Checks
// that need the model's limits (context length, vocabulary) run again in the scheduler.
#include <string>

#include "absl/status/statusor.h"
#include "claa/v1/claa.pb.h"
#include "engine/generate/loaded_model.h"
#include "engine/generate/sequence.h"
#include "engine/tokenizer/tokenizer.h"

namespace claa {

inline constexpr int kDefaultMaxTokens = 16;
inline constexpr size_t kMaxRequestIdBytes = 256;
inline constexpr size_t kMaxPromptTextBytes = 4 << 20;

// request_id defaults to generated_id when empty.
absl::StatusOr<GenerationRequest> ConvertGenerateRequest(const v1::GenerateRequest& request,
                                                         const Tokenizer& tokenizer,
                                                         const std::string& generated_id);

// The request's pruning options applied over the server's default (METHOD_UNSPECIFIED and unset
// fields take the default; a different method brings its own layer defaults, DESIGN.md §2).
// InvalidArgument naming the field on nonsense.
absl::StatusOr<PruningConfig> ConvertPruningOptions(const v1::PruningOptions& pruning,
                                                    const PruningConfig& server_default,
                                                    int num_layers);

// Everything the server does to a public request before scheduling it: convert (tokenize text),
// apply the pruning options over server_default, and fill an unset max_tokens with "up to 16, as
// far as the context allows".
absl::StatusOr<GenerationRequest> PrepareRequest(const v1::GenerateRequest& request,
                                                 const Tokenizer& tokenizer,
                                                 const ModelConfig& config,
                                                 int max_context_length,
                                                 const PruningConfig& server_default,
                                                 const std::string& generated_id);

// The request a router forwards to its workers: the prompt as token ids, the id, max_tokens and
// every pruning field set explicitly from `prepared`, so that the workers' own defaults never
// change what the router decided.
v1::GenerateRequest ToWorkerRequest(const v1::GenerateRequest& original,
                                    const GenerationRequest& prepared);

v1::FinishReason ToProto(FinishReason reason);

// GetModelInfo's answer for `model` (tp_size from its runner when it has one).
void FillModelInfo(const LoadedModel& model, const std::string& backend, v1::ModelInfo* info);

}  // namespace claa

#endif  // CLAA_SERVER_REQUEST_CONVERT_H_
