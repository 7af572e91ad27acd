#include "engine/generate/sequence.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace claa {

absl::Status ValidateGenerationRequest(const GenerationRequest& request, int vocab_size,
                                       int max_context_length, int num_layers) {
  const int n = static_cast<int>(request.prompt_ids.size());
  if (n == 0) return absl::InvalidArgumentError("prompt: must not be empty");
  for (int i = 0; i < n; ++i) {
    const int32_t id = request.prompt_ids[i];
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt.token_ids[", i, "]: token id ", id, " is out of range [0, ",
                       vocab_size, ")"));
    }
  }
  if (n >= max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt: ", n, " tokens do not fit the model's context of ", max_context_length,
        " tokens (at least one must remain for output)"));
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens: must be >= 1, got ", request.max_tokens));
  }
  if (int64_t{n} + request.max_tokens > max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling.max_tokens: prompt (", n, " tokens) + max_tokens (", request.max_tokens,
        ") exceeds the model's context of ", max_context_length, " tokens; use max_tokens <= ",
        max_context_length - n));
  }
  CLAA_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling, vocab_size));
  if (request.pruning.method == PruningMethod::kOracle &&
      request.oracle_scores.size() != request.prompt_ids.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pruning.method: oracle needs one score per prompt token (",
                     request.oracle_scores.size(), " scores, ", n, " tokens)"));
  }
  CLAA_RETURN_IF_ERROR(ValidatePruningConfig(request.pruning, num_layers));
  StopConditions conditions;
  conditions.max_tokens = request.max_tokens;
  conditions.stop_token_ids = request.stop_token_ids;
  conditions.ignore_eos = request.ignore_eos;
  CLAA_RETURN_IF_ERROR(ValidateStopConditions(conditions, request.stop_strings, vocab_size));
  return absl::OkStatus();
}

GenerationSequence::GenerationSequence(GenerationRequest request, const Tokenizer* tokenizer,
                                       std::vector<int32_t> eos_token_ids,
                                       int max_context_length, int num_layers,
                                       uint64_t default_seed)
    : request_(std::move(request)),
      eos_token_ids_(std::move(eos_token_ids)),
      max_context_length_(max_context_length),
      sampler_(request_.sampling, default_seed),
      stop_matcher_(request_.stop_strings),
      decoder_(*tokenizer, request_.skip_special_tokens),
      kv_(num_layers),
      all_tokens_(request_.prompt_ids),
      kept_prompt_tokens_(static_cast<int>(request_.prompt_ids.size())) {
  prefill_.pruning = request_.pruning;
  prefill_.oracle_scores = request_.oracle_scores;
  prefill_.report = &report_;
}

absl::Span<const int32_t> GenerationSequence::PendingTokens() const {
  auto all = absl::MakeConstSpan(all_tokens_);
  if (fed_ == 0 && request_.pruning.prunes()) return all.first(request_.prompt_ids.size());
  return all.subspan(fed_);
}

ForwardItem GenerationSequence::NextItem() {
  const bool pruned_prefill = fed_ == 0 && request_.pruning.prunes();
  return ForwardItem{&kv_, PendingTokens(), kv_.num_positions,
                     pruned_prefill ? &prefill_ : nullptr};
}

void GenerationSequence::MarkFed() {
  if (fed_ == 0 && request_.pruning.prunes()) {
    kept_prompt_tokens_ = static_cast<int>(report_.kept_tokens.size());
  }
  fed_ += static_cast<int>(PendingTokens().size());
}

std::string GenerationSequence::FlushText() {
  std::string text;
  StopStringMatcher::Result r = stop_matcher_.Push(decoder_.Flush());
  text = std::move(r.emit);
  if (!r.stopped) text += stop_matcher_.Flush();
  return text;
}

absl::StatusOr<TokenOutput> GenerationSequence::OnLogits(absl::Span<const float> logits) {
  if (finished()) return absl::FailedPreconditionError("sequence already finished");
  TokenOutput out;
  out.token = sampler_.Sample(logits);
  generated_.push_back(out.token);
  all_tokens_.push_back(out.token);

  StopConditions conditions;
  conditions.max_tokens = request_.max_tokens;
  conditions.stop_token_ids = request_.stop_token_ids;
  conditions.eos_token_ids = eos_token_ids_;
  conditions.ignore_eos = request_.ignore_eos;
  FinishReason reason =
      CheckTokenStop(conditions, out.token, static_cast<int>(generated_.size()));
  if (reason == FinishReason::kNone &&
      static_cast<int>(all_tokens_.size()) >= max_context_length_) {
    reason = FinishReason::kLength;  // the context is full
  }
  if (reason == FinishReason::kStop) out.stop_reason = absl::StrCat(out.token);

  CLAA_ASSIGN_OR_RETURN(std::string piece, decoder_.Push(out.token));
  StopStringMatcher::Result r = stop_matcher_.Push(piece);
  out.text = std::move(r.emit);
  if (r.stopped) {
    reason = FinishReason::kStop;
    out.stop_reason = r.matched;
  } else if (reason != FinishReason::kNone) {
    out.text += FlushText();
  }
  finish_ = reason;
  out.finish = reason;
  return out;
}

std::string GenerationSequence::Finish(FinishReason reason) {
  if (finished()) return "";
  finish_ = reason;
  return FlushText();
}

}  // namespace claa
