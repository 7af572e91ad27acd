#include "engine/generate/generate.h"

#include <utility>

#include "engine/util/status_macros.h"

namespace claa {
namespace {

absl::Status RunToCompletion(LoadedModel& model, GenerationSequence& seq,
                             GenerationResult& result,
                             const std::function<void(const TokenOutput&)>& on_token) {
  std::vector<float> logits;
  while (!seq.finished()) {
    CLAA_RETURN_IF_ERROR(
        ReserveTokens(model.runner->block_manager(), seq.kv(), seq.TotalAfterForward()));
    ForwardItem item = seq.NextItem();
    CLAA_RETURN_IF_ERROR(model.runner->Forward(absl::MakeConstSpan(&item, 1), &logits));
    seq.MarkFed();
    TrimBlocks(model.runner->block_manager(), seq.kv());
    if (!seq.CaughtUp()) continue;
    CLAA_ASSIGN_OR_RETURN(TokenOutput out, seq.OnLogits(logits));
    result.token_ids.push_back(out.token);
    result.text += out.text;
    if (out.finish != FinishReason::kNone) {
      result.finish = out.finish;
      result.stop_reason = out.stop_reason;
    }
    if (on_token) on_token(out);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerationResult> Generate(LoadedModel& model, GenerationRequest request,
                                          const std::function<void(const TokenOutput&)>& on_token) {
  CLAA_RETURN_IF_ERROR(ValidateGenerationRequest(request, model.config.vocab_size,
                                                 model.max_context_length,
                                                 model.config.num_layers));
  const uint64_t seed = request.sampling.seed.value_or(0);
  GenerationSequence seq(std::move(request), model.tokenizer.get(), model.eos_token_ids,
                         model.max_context_length, model.config.num_layers, seed);
  GenerationResult result;
  absl::Status status = RunToCompletion(model, seq, result, on_token);
  ReleaseSequence(model.runner->block_manager(), seq.kv());
  if (!status.ok()) return status;
  return result;
}

}  // namespace claa
