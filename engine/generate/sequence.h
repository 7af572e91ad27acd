#ifndef CLAA_ENGINE_GENERATE_SEQUENCE_H_
#define CLAA_ENGINE_GENERATE_SEQUENCE_H_

// One request's generation state, independent of how it is scheduled: its KV blocks, sampler,
// stop conditions and streaming text. The scheduler and the synchronous Generate() both drive
// it: feed PendingTokens() to the model, then hand the logits to OnLogits().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/pruning/pruning_config.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/llama_model.h"
#include "engine/runtime/prefill_pruner.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_conditions.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"

namespace claa {

struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  // Prompt pruning of the prefill (method kFull: none). Must be valid for the model.
  PruningConfig pruning;
  // Method kOracle (evaluation): the ranking to keep by, one score per prompt token.
  std::vector<float> oracle_scores;
};

// What one generated token produced.
struct TokenOutput {
  int32_t token = -1;
  // Text completed by this token (may be empty: held-back bytes or stop-string prefix).
  std::string text;
  FinishReason finish = FinishReason::kNone;
  std::string stop_reason;  // matched stop string or stop token id, for kStop
};

// Checks a request against the model: prompt non-empty, ids in range, prompt + max_tokens
// within the context, sampling, stop conditions and pruning valid. Messages name the offending field.
absl::Status ValidateGenerationRequest(const GenerationRequest& request, int vocab_size,
                                       int max_context_length, int num_layers);

class GenerationSequence {
 public:
  // `tokenizer` must outlive the sequence. default_seed is used when the request has none.
  GenerationSequence(GenerationRequest request, const Tokenizer* tokenizer,
                     std::vector<int32_t> eos_token_ids, int max_context_length,
                     int num_layers, uint64_t default_seed);

  const GenerationRequest& request() const { return request_; }
  SequenceKv* kv() { return &kv_; }
  // Tokens the model has not seen yet: the prompt first, then the last sampled token. A pruned
  // prompt is fed on its own (pruning needs exactly the whole prompt), so after a preemption the
  // generated tokens follow in a second forward.
  absl::Span<const int32_t> PendingTokens() const;
  // The forward item for PendingTokens(): positions continue from the cache (a GemFilter prompt
  // continues at its kept count), and the first prefill carries the pruning options.
  ForwardItem NextItem();
  // Tokens fed so far (prompt + generated); 0 means the next forward is the prefill.
  int start_pos() const { return fed_; }
  // KV slots the sequence must have reserved for the next forward.
  int TotalAfterForward() const {
    return kv_.max_layer_length() + static_cast<int>(PendingTokens().size());
  }
  // Marks PendingTokens() as fed to the model.
  void MarkFed();
  // True when every token is fed, so the last forward's logits are for sampling. False after
  // the prompt-only forward of a pruned recompute.
  bool CaughtUp() const { return fed_ == static_cast<int>(all_tokens_.size()); }
  // Preemption by recompute: the caller has released kv()'s blocks; the next forwards re-feed
  // the prompt and every generated token, so no output is lost or repeated.
  void ResetForRecompute() {
    kv_ = SequenceKv(static_cast<int>(kv_.layer_lengths.size()));
    fed_ = 0;
  }
  // The prompt was prefilled elsewhere and its cache written into kv(): the next token is
  // sampled from the shipped logits (OnLogits) without a forward.
  void MarkImported(int kept_prompt_tokens) {
    fed_ = static_cast<int>(all_tokens_.size());
    kept_prompt_tokens_ = kept_prompt_tokens;
  }
  // Prompt tokens the prefill kept (the prompt length without pruning).
  int kept_prompt_tokens() const { return kept_prompt_tokens_; }

  // Samples from the logits of the last fed token, appends the token and applies the stop
  // conditions. Must not be called once finished().
  absl::StatusOr<TokenOutput> OnLogits(absl::Span<const float> logits);
  // Ends the sequence early (abort): returns the text still held back.
  std::string Finish(FinishReason reason);

  bool finished() const { return finish_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_; }
  int num_prompt_tokens() const { return static_cast<int>(request_.prompt_ids.size()); }
  const std::vector<int32_t>& generated() const { return generated_; }

 private:
  std::string FlushText();

  GenerationRequest request_;
  std::vector<int32_t> eos_token_ids_;
  int max_context_length_;
  Sampler sampler_;
  StopStringMatcher stop_matcher_;
  StreamingDecoder decoder_;
  SequenceKv kv_;
  std::vector<int32_t> all_tokens_;  // prompt followed by generated tokens
  std::vector<int32_t> generated_;
  int fed_ = 0;
  PrefillOptions prefill_;
  PrefillReport report_;
  int kept_prompt_tokens_ = 0;
  FinishReason finish_ = FinishReason::kNone;
};

}  // namespace claa

#endif  // CLAA_ENGINE_GENERATE_SEQUENCE_H_
