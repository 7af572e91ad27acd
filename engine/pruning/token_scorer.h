#ifndef CLAA_ENGINE_PRUNING_TOKEN_SCORER_H_
#define CLAA_ENGINE_PRUNING_TOKEN_SCORER_H_

// Turning per-layer attention signals into one score per prompt token, and picking the tokens a
// pruned prefill keeps. Pure functions of their inputs: every tensor-parallel rank calls them on
// the same gathered scores and so keeps the same tokens.
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "engine/pruning/pruning_config.h"

namespace claa {

// One layer's signal for the whole model (all KV heads, gathered across ranks):
// values[head * prefix_len + token].
struct LayerScores {
  int layer = 0;
  int num_kv_heads = 0;
  int prefix_len = 0;
  std::vector<float> values;
};

class TokenScorer {
 public:
  virtual ~TokenScorer() = default;
  // How many of the most recent layers Score() reads (the history ends at the scoring layer).
  virtual int history_layers() const = 0;
  // One score per prefix token (higher = keep) from the last history_layers() entries of history.
  virtual std::vector<float> Score(absl::Span<const LayerScores> history) const = 0;
};

// CLAA: z-score each (layer, KV head) row over positions, then the max over rows of the last n
// layers. A constant row (std 0) contributes zeros.
class ClaaScorer : public TokenScorer {
 public:
  explicit ClaaScorer(int aggregation_layers) : n_(aggregation_layers) {}
  int history_layers() const override { return n_; }
  std::vector<float> Score(absl::Span<const LayerScores> history) const override;

 private:
  int n_;
};

// FastKV and GemFilter: the last layer's rows summed over KV heads (FastKV on window scores,
// GemFilter on last-query scores: the scorer is the same, the signal differs).
class HeadSumScorer : public TokenScorer {
 public:
  int history_layers() const override { return 1; }
  std::vector<float> Score(absl::Span<const LayerScores> history) const override;
};

// A ranking given by the caller (the oracle): its first prefix_len values.
class FixedScorer : public TokenScorer {
 public:
  explicit FixedScorer(std::vector<float> scores) : scores_(std::move(scores)) {}
  int history_layers() const override { return 1; }
  std::vector<float> Score(absl::Span<const LayerScores> history) const override;

 private:
  std::vector<float> scores_;
};

// The scorer for a method (Full gets none). oracle_scores is used by kOracle only.
std::unique_ptr<TokenScorer> MakeTokenScorer(const PruningConfig& config,
                                             absl::Span<const float> oracle_scores);

// The top `count` indices of scores (ties go to the lower index), in ascending index order.
std::vector<int> TopIndicesAscending(absl::Span<const float> scores, int count);

// The tokens a prompt of prompt_len keeps: the top (keep_count - w) prefix tokens by
// prefix_scores (prefix = prompt_len - w) plus the last w = min(window, prompt_len) positions,
// in original order. keep_count >= prompt_len keeps everything.
std::vector<int> SelectKeptTokens(absl::Span<const float> prefix_scores, int prompt_len,
                                  int window, int keep_count);

}  // namespace claa

#endif  // CLAA_ENGINE_PRUNING_TOKEN_SCORER_H_
