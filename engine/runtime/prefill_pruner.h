#ifndef CLAA_ENGINE_RUNTIME_PREFILL_PRUNER_H_
#define CLAA_ENGINE_RUNTIME_PREFILL_PRUNER_H_

// What a whole-prompt prefill does besides the plain forward pass: prompt pruning (CLAA, FastKV,
// Oracle: token-selective propagation and the compact KV cache policy of DESIGN.md §2; GemFilter:
// the scoring pass before its re-run) and, for evaluation, capturing the per-layer signals.
//
// LlamaModel drives one PrefillPruner per such item and rank during a forward pass. Every rank
// of a tensor-parallel group makes the same calls in the same order: the pruner gathers the
// scores of all KV heads across ranks before anything is selected, so every rank keeps the same
// tokens. Only rank 0 writes the caller's report and capture.
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/config.h"
#include "engine/pruning/attention_scores.h"
#include "engine/pruning/pruning_config.h"
#include "engine/pruning/token_scorer.h"
#include "engine/runtime/communicator.h"
#include "engine/runtime/kv_cache.h"

namespace claa {

// Per-layer signals of one prompt, for evaluation (all KV heads of the model).
struct ScoreCapture {
  // Window scores (WindowScores) at every layer, with these settings.
  bool window_scores = false;
  int window = 8;
  int window_pool = 7;
  // GemFilter's last-query scores at every layer.
  bool last_query_scores = false;
  int last_query_pool = 5;
  // Answer-Informed Oracle: > 0 means the item's tokens are a prompt of this many tokens
  // followed by its greedy answer; the max over layers and heads of the answer queries' softmax
  // over the prompt keys is left in oracle_max ([tokens - context + 1][context]).
  int oracle_context_len = 0;

  std::vector<LayerScores> window_by_layer;      // out, one per layer
  std::vector<LayerScores> last_query_by_layer;  // out, one per layer
  std::vector<float> oracle_max;                 // out
};

// Filled by a pruned prefill.
struct PrefillReport {
  std::vector<int> kept_tokens;  // prompt indices that propagated past the pruning layer
  std::vector<int> layer_lengths;  // KV slots per layer after the prefill
};

// Options of a whole-prompt prefill item (ForwardItem::prefill). The item must start at
// position 0 with an empty cache.
struct PrefillOptions {
  PruningConfig pruning;                // method kFull: no pruning
  std::vector<float> oracle_scores;     // method kOracle: one score per prompt token
  PrefillReport* report = nullptr;      // optional out
  ScoreCapture* capture = nullptr;      // optional out (no pruning allowed with oracle capture)
};

class PrefillPruner {
 public:
  // rank/comm: this rank of the TP group (comm null when tp = 1). local_* are this rank's heads.
  PrefillPruner(const PrefillOptions& options, int prompt_len, int num_layers, int local_heads,
                int local_kv_heads, int head_dim, Communicator* comm);

  // True for CLAA / FastKV / Oracle: rows are dropped after pruning_layer (not GemFilter, whose
  // selection is a separate scoring pass, see RunsScoringPass).
  bool propagates_selectively() const;
  bool runs_scoring_pass() const { return options_.pruning.method == PruningMethod::kGemFilter; }

  // Called after layer `layer`'s K/V of this item are in the cache and its attention ran.
  // qk: the item's rows of this layer. Computes the layer's signals, gathers them across ranks
  // where they are needed, and compacts the layer's cache per KV head when the policy says so.
  absl::Status AfterAttention(int layer, const PromptQk& qk, PagedKvCache& cache,
                              absl::Span<const int> blocks);

  // True when the prompt's kept tokens are chosen at `layer` (the pruning layer of a pruning
  // method); kept() then holds them, in prompt order, once AfterAttention(layer) has run.
  bool SelectsAt(int layer) const {
    return options_.pruning.prunes() && layer == options_.pruning.pruning_layer;
  }
  const std::vector<int>& kept() const { return kept_; }
  int prompt_len() const { return prompt_len_; }

  // Cache slots the item holds at `layer` after the pass, given rows_at_layer rows went through.
  int LayerLength(int layer, int rows_at_layer) const;

  // End of the pass: finishes the capture (gathers the oracle across ranks). Every rank must
  // call it.
  absl::Status Finish();

 private:
  bool ScorerNeeds(int layer) const;
  bool CompactsCache(int layer) const;
  absl::StatusOr<LayerScores> Gather(int layer, std::vector<float> local);
  void CompactLayer(int layer, absl::Span<const float> local_scores, PagedKvCache& cache,
                    absl::Span<const int> blocks);

  const PrefillOptions& options_;
  int prompt_len_, keep_count_, local_heads_, local_kv_heads_, head_dim_;
  Communicator* comm_;
  bool is_writer_;
  std::unique_ptr<TokenScorer> scorer_;
  std::vector<LayerScores> history_;  // scorer's layers, gathered
  std::vector<int> kept_;
  std::vector<float> oracle_max_;     // local heads' running max
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_PREFILL_PRUNER_H_
