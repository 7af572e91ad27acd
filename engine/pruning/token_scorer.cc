#include "engine/pruning/token_scorer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace claa {

std::vector<float> ClaaScorer::Score(absl::Span<const LayerScores> history) const {
  if (history.empty()) return {};
  const int prefix = history.back().prefix_len;
  // A prompt no longer than the window has no prefix to rank; the rows are then empty, and even
  // taking &values[0] of an empty vector is undefined (UBSan: reference binding to null).
  if (prefix <= 0) return {};
  std::vector<float> best(prefix, -std::numeric_limits<float>::infinity());
  const size_t first = history.size() > size_t(n_) ? history.size() - n_ : 0;
  for (size_t l = first; l < history.size(); ++l) {
    const LayerScores& s = history[l];
    for (int h = 0; h < s.num_kv_heads; ++h) {
      const float* row = &s.values[size_t(h) * prefix];
      double mean = 0.0, sq = 0.0;
      for (int j = 0; j < prefix; ++j) mean += row[j];
      mean /= prefix;
      for (int j = 0; j < prefix; ++j) sq += (row[j] - mean) * (row[j] - mean);
      const double sd = std::sqrt(sq / prefix);
      // Population std, as torch.std(unbiased=False) would; a flat row says nothing.
      const double inv = sd > 0.0 ? 1.0 / sd : 0.0;
      for (int j = 0; j < prefix; ++j) {
        best[j] = std::max(best[j], float((row[j] - mean) * inv));
      }
    }
  }
  return best;
}

std::vector<float> HeadSumScorer::Score(absl::Span<const LayerScores> history) const {
  if (history.empty()) return {};
  const LayerScores& s = history.back();
  std::vector<float> sum(s.prefix_len, 0.0f);
  for (int h = 0; h < s.num_kv_heads; ++h) {
    for (int j = 0; j < s.prefix_len; ++j) sum[j] += s.values[size_t(h) * s.prefix_len + j];
  }
  return sum;
}

std::vector<float> FixedScorer::Score(absl::Span<const LayerScores> history) const {
  const int prefix = history.empty() ? int(scores_.size()) : history.back().prefix_len;
  std::vector<float> out(prefix, 0.0f);
  std::copy_n(scores_.begin(), std::min<size_t>(prefix, scores_.size()), out.begin());
  return out;
}

std::unique_ptr<TokenScorer> MakeTokenScorer(const PruningConfig& config,
                                             absl::Span<const float> oracle_scores) {
  switch (config.method) {
    case PruningMethod::kFull: return nullptr;
    case PruningMethod::kClaa: return std::make_unique<ClaaScorer>(config.aggregation_layers);
    case PruningMethod::kFastKv:
    case PruningMethod::kGemFilter: return std::make_unique<HeadSumScorer>();
    case PruningMethod::kOracle:
      return std::make_unique<FixedScorer>(
          std::vector<float>(oracle_scores.begin(), oracle_scores.end()));
  }
  return nullptr;
}

std::vector<int> TopIndicesAscending(absl::Span<const float> scores, int count) {
  const int n = int(scores.size());
  count = std::clamp(count, 0, n);
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // NaN never wins: it compares as the lowest score.
  auto better = [&](int a, int b) {
    const float x = scores[a], y = scores[b];
    const bool xn = std::isnan(x), yn = std::isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a < b;
  };
  std::partial_sort(idx.begin(), idx.begin() + count, idx.end(), better);
  idx.resize(count);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int> SelectKeptTokens(absl::Span<const float> prefix_scores, int prompt_len,
                                  int window, int keep_count) {
  if (keep_count >= prompt_len) {
    std::vector<int> all(prompt_len);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
  const int w = std::min(window, prompt_len);
  const int prefix = prompt_len - w;
  std::vector<int> kept = TopIndicesAscending(prefix_scores.first(prefix), keep_count - w);
  for (int t = prefix; t < prompt_len; ++t) kept.push_back(t);
  return kept;
}

}  // namespace claa
