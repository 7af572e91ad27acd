#include "engine/runtime/prefill_pruner.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace claa {

PrefillPruner::PrefillPruner(const PrefillOptions& options, int prompt_len, int num_layers,
                             int local_heads, int local_kv_heads, int head_dim,
                             Communicator* comm)
    : options_(options),
      prompt_len_(options.capture != nullptr && options.capture->oracle_context_len > 0
                      ? options.capture->oracle_context_len
                      : prompt_len),
      keep_count_(options.pruning.prunes() ? options.pruning.KeepCount(prompt_len_)
                                           : prompt_len_),
      local_heads_(local_heads),
      local_kv_heads_(local_kv_heads),
      head_dim_(head_dim),
      comm_(comm),
      is_writer_(comm == nullptr || comm->rank() == 0),
      scorer_(MakeTokenScorer(options.pruning, options.oracle_scores)) {}

bool PrefillPruner::propagates_selectively() const {
  const PruningMethod m = options_.pruning.method;
  return m == PruningMethod::kClaa || m == PruningMethod::kFastKv || m == PruningMethod::kOracle;
}

bool PrefillPruner::ScorerNeeds(int layer) const {
  const PruningConfig& c = options_.pruning;
  if (c.method == PruningMethod::kClaa || c.method == PruningMethod::kFastKv) {
    return layer <= c.pruning_layer && layer > c.pruning_layer - c.aggregation_layers;
  }
  return false;  // GemFilter is handled on its own; the oracle's ranking is given.
}

bool PrefillPruner::CompactsCache(int layer) const {
  const PruningConfig& c = options_.pruning;
  return propagates_selectively() && keep_count_ < prompt_len_ && layer >= c.min_layer &&
         layer <= c.pruning_layer;
}

int PrefillPruner::LayerLength(int layer, int rows_at_layer) const {
  return CompactsCache(layer) ? keep_count_ : rows_at_layer;
}

absl::StatusOr<LayerScores> PrefillPruner::Gather(int layer, std::vector<float> local) {
  LayerScores out;
  out.layer = layer;
  out.prefix_len = local_kv_heads_ > 0 ? int(local.size()) / local_kv_heads_ : 0;
  if (comm_ == nullptr || comm_->size() == 1) {
    out.num_kv_heads = local_kv_heads_;
    out.values = std::move(local);
    return out;
  }
  // Rank r holds KV heads [r * local, (r + 1) * local), so rank order is head order.
  out.num_kv_heads = local_kv_heads_ * comm_->size();
  out.values.resize(local.size() * comm_->size());
  CLAA_RETURN_IF_ERROR(comm_->AllGather(local.data(), local.size(), out.values.data()));
  return out;
}

void PrefillPruner::CompactLayer(int layer, absl::Span<const float> local_scores,
                                 PagedKvCache& cache, absl::Span<const int> blocks) {
  const int prefix = prompt_len_ - std::min(options_.pruning.window, prompt_len_);
  const size_t bytes = size_t(head_dim_) * sizeof(float);
  for (int g = 0; g < local_kv_heads_; ++g) {
    const std::vector<int> keep =
        SelectKeptTokens(local_scores.subspan(size_t(g) * prefix, prefix), prompt_len_,
                         options_.pruning.window, keep_count_);
    // keep is ascending, so keep[s] >= s: moving slots forward in place never overwrites a
    // slot that is still to be read.
    for (int s = 0; s < int(keep.size()); ++s) {
      if (keep[s] == s) continue;
      std::memmove(cache.k_slot(layer, blocks, s) + size_t(g) * head_dim_,
                   cache.k_slot(layer, blocks, keep[s]) + size_t(g) * head_dim_, bytes);
      std::memmove(cache.v_slot(layer, blocks, s) + size_t(g) * head_dim_,
                   cache.v_slot(layer, blocks, keep[s]) + size_t(g) * head_dim_, bytes);
    }
  }
}

absl::Status PrefillPruner::AfterAttention(int layer, const PromptQk& qk, PagedKvCache& cache,
                                           absl::Span<const int> blocks) {
  PromptQk prompt = qk;
  prompt.prompt_len = prompt_len_;  // rows after the prompt (an oracle's answer) score nothing
  const PruningConfig& c = options_.pruning;

  if (ScoreCapture* cap = options_.capture; cap != nullptr) {
    if (cap->window_scores) {
      CLAA_ASSIGN_OR_RETURN(LayerScores s,
                            Gather(layer, WindowScores(prompt, cap->window, cap->window_pool)));
      if (is_writer_) cap->window_by_layer.push_back(std::move(s));
    }
    if (cap->last_query_scores) {
      CLAA_ASSIGN_OR_RETURN(
          LayerScores s, Gather(layer, LastQueryScores(prompt, cap->window, cap->last_query_pool)));
      if (is_writer_) cap->last_query_by_layer.push_back(std::move(s));
    }
    if (cap->oracle_context_len > 0) {
      AccumulateOracleLayer(qk, prompt_len_ - 1, prompt_len_, &oracle_max_);
    }
  }

  if (propagates_selectively() && (ScorerNeeds(layer) || CompactsCache(layer))) {
    std::vector<float> local = WindowScores(prompt, c.window, c.pooling_kernel);
    if (CompactsCache(layer)) CompactLayer(layer, local, cache, blocks);
    if (ScorerNeeds(layer)) {
      CLAA_ASSIGN_OR_RETURN(LayerScores s, Gather(layer, std::move(local)));
      history_.push_back(std::move(s));
    }
  }
  if (runs_scoring_pass() && layer == c.pruning_layer) {
    CLAA_ASSIGN_OR_RETURN(LayerScores s,
                          Gather(layer, LastQueryScores(prompt, c.window, c.pooling_kernel)));
    history_.push_back(std::move(s));
  }
  if (SelectsAt(layer)) {
    kept_ = SelectKeptTokens(scorer_->Score(history_), prompt_len_, c.window, keep_count_);
  }
  return absl::OkStatus();
}

absl::Status PrefillPruner::Finish() {
  ScoreCapture* cap = options_.capture;
  if (cap == nullptr || cap->oracle_context_len <= 0) return absl::OkStatus();
  if (comm_ != nullptr && comm_->size() > 1) {
    std::vector<float> all(oracle_max_.size() * comm_->size());
    CLAA_RETURN_IF_ERROR(comm_->AllGather(oracle_max_.data(), oracle_max_.size(), all.data()));
    for (int r = 1; r < comm_->size(); ++r) {
      for (size_t i = 0; i < oracle_max_.size(); ++i) {
        oracle_max_[i] = std::max(oracle_max_[i], all[r * oracle_max_.size() + i]);
      }
    }
  }
  if (is_writer_) cap->oracle_max = oracle_max_;
  return absl::OkStatus();
}

}  // namespace claa
