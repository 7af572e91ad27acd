#include "engine/eval/prompt_analysis.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/generate/generate.h"
#include "engine/pruning/attention_scores.h"
#include "engine/runtime/prefill_pruner.h"
#include "engine/util/status_macros.h"

namespace claa::eval {

absl::StatusOr<PromptAnalysis> AnalyzePrompt(LoadedModel& model,
                                             const std::vector<int32_t>& prompt_ids,
                                             const AnalysisOptions& options) {
  const int p = int(prompt_ids.size());
  if (p <= options.window) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt (", p,
                                                   " tokens) must be longer than the window (",
                                                   options.window, ")"));
  }
  PromptAnalysis out;
  out.prompt_ids = prompt_ids;
  out.window = options.window;

  GenerationRequest request;
  request.request_id = "oracle";
  request.prompt_ids = prompt_ids;
  request.sampling.temperature = 0.0f;
  request.max_tokens = std::min(options.max_answer_tokens, model.max_context_length - p);
  request.stop_strings = options.stop_strings;
  CLAA_ASSIGN_OR_RETURN(GenerationResult answer, Generate(model, request));
  out.answer_ids = answer.token_ids;
  out.answer_text = answer.text;

  // Teacher-forced pass over prompt + answer with every capture on.
  std::vector<int32_t> tokens = prompt_ids;
  tokens.insert(tokens.end(), out.answer_ids.begin(), out.answer_ids.end());
  ScoreCapture capture;
  capture.window_scores = true;
  capture.window = options.window;
  capture.window_pool = options.window_pool;
  capture.last_query_scores = true;
  capture.last_query_pool = options.last_query_pool;
  capture.oracle_context_len = p;
  PrefillOptions prefill;
  prefill.capture = &capture;
  SequenceKv kv(model.config.num_layers);
  BlockManager& blocks = model.runner->block_manager();
  CLAA_RETURN_IF_ERROR(ReserveTokens(blocks, &kv, int(tokens.size())));
  ForwardItem item{&kv, tokens, 0, &prefill};
  std::vector<float> logits;
  absl::Status status = model.runner->Forward(absl::MakeConstSpan(&item, 1), &logits);
  ReleaseSequence(blocks, &kv);
  CLAA_RETURN_IF_ERROR(status);

  const int queries = int(tokens.size()) - p + 1;
  out.oracle = FinishOracle(capture.oracle_max, queries, p, options.oracle_pool);
  out.window_by_layer = std::move(capture.window_by_layer);
  out.last_query_by_layer = std::move(capture.last_query_by_layer);
  return out;
}

std::vector<float> MethodScoresAtLayer(const PromptAnalysis& a, PruningMethod method, int layer,
                                       int aggregation_layers) {
  const auto upto = [&](const std::vector<LayerScores>& all) {
    return absl::MakeConstSpan(all).first(size_t(layer) + 1);
  };
  switch (method) {
    case PruningMethod::kFull: return {};
    case PruningMethod::kClaa:
      return ClaaScorer(aggregation_layers).Score(upto(a.window_by_layer));
    case PruningMethod::kFastKv: return HeadSumScorer().Score(upto(a.window_by_layer));
    case PruningMethod::kGemFilter: return HeadSumScorer().Score(upto(a.last_query_by_layer));
    case PruningMethod::kOracle:
      return std::vector<float>(a.oracle.begin(), a.oracle.begin() + a.prefix_len());
  }
  return {};
}

}  // namespace claa::eval
