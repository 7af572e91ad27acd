#ifndef CLAA_ENGINE_EVAL_PROMPT_ANALYSIS_H_
#define CLAA_ENGINE_EVAL_PROMPT_ANALYSIS_H_

// Answer-Informed Oracle and per-layer method rankings of one prompt (DESIGN.md §2).
//
// AnalyzePrompt runs the full (unpruned) model: it greedily generates the answer, then feeds
// prompt + answer once more while capturing, at every layer, the window scores (CLAA, FastKV),
// GemFilter's last-query scores and the oracle's answer-query attention. Every method's ranking
// at every layer then comes from those captures without re-running the model.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/generate/loaded_model.h"
#include "engine/pruning/pruning_config.h"
#include "engine/pruning/token_scorer.h"

namespace claa::eval {

struct AnalysisOptions {
  int max_answer_tokens = 32;
  std::vector<std::string> stop_strings;  // end the greedy answer early (e.g. "\n")
  int window = 8;         // window scores' query window (and the always-kept tail)
  int window_pool = 7;    // CLAA / FastKV pooling
  int last_query_pool = 5;  // GemFilter pooling
  int oracle_pool = 13;   // the oracle's pooling
};

struct PromptAnalysis {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> answer_ids;  // greedy, full KV
  std::string answer_text;
  // Oracle importance of every prompt token: max over layers and heads of the answer queries'
  // softmax over the prompt keys, mean over the answer queries, average-pooled.
  std::vector<float> oracle;
  std::vector<LayerScores> window_by_layer;      // [layer], all KV heads
  std::vector<LayerScores> last_query_by_layer;  // [layer], all KV heads
  int window = 8;
  int prefix_len() const { return int(prompt_ids.size()) - window; }
};

absl::StatusOr<PromptAnalysis> AnalyzePrompt(LoadedModel& model,
                                             const std::vector<int32_t>& prompt_ids,
                                             const AnalysisOptions& options);

// The score a method ranks the prefix tokens by when it selects at `layer` (CLAA aggregates
// the n layers ending there, fewer near layer 0). kFull has none (empty); kOracle is the oracle.
std::vector<float> MethodScoresAtLayer(const PromptAnalysis& analysis, PruningMethod method,
                                       int layer, int aggregation_layers);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_PROMPT_ANALYSIS_H_
