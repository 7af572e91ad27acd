#ifndef CLAA_ENGINE_EVAL_RANK_METRICS_H_
#define CLAA_ENGINE_EVAL_RANK_METRICS_H_

// Rank statistics used to compare a method's per-token importance scores with the
// Answer-Informed Oracle (DESIGN.md §2): Spearman correlation, top-k selection, top-k recall
// and Jaccard overlap, plus the 1-D average pooling both CLAA and the oracle apply to scores.
// Everything here is pure: no model, no I/O.
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace claa::eval {

// Spearman rank correlation of a and b (same length, at least 2 items): each side is turned into
// fractional ranks (ties share the average of the ranks they span, like
// scipy.stats.rankdata(method="average")), then the Pearson correlation of the ranks is returned,
// so the result equals scipy.stats.spearmanr(a, b).statistic wherever scipy defines it.
//
// When one side (or both) is constant its ranks have zero variance and the correlation is
// undefined (scipy returns nan). We return 0.0 instead: "no measurable monotonic association",
// which keeps per-layer means and plots finite (a layer whose scores are all equal ranks nothing).
//
// Errors (INVALID_ARGUMENT): size mismatch, fewer than 2 items, a NaN in either input (NaN has no
// rank). Infinities are fine: only their order matters.
absl::StatusOr<double> SpearmanCorrelation(absl::Span<const float> a, absl::Span<const float> b);

// Fractional (average-tie) ranks, 1-based like scipy: ranks of {10, 20, 20, 5} = {2, 3.5, 3.5, 1}.
// NaN ranks above every number and all NaNs tie; callers that care reject NaN (Spearman does).
std::vector<double> FractionalRanks(absl::Span<const float> values);

enum class TopKOrder {
  kByScore,  // Highest score first; ties by lower index first.
  kByIndex,  // Ascending index: the kept tokens in original prompt order.
};

// Indices of the k highest scores. Ties go to the lower index (deterministic, and matches keeping
// the earlier token); NaN ranks below every number, so it is chosen only when k exceeds the count
// of non-NaN scores. k is clamped to [0, scores.size()].
std::vector<int32_t> TopKIndices(absl::Span<const float> scores, int64_t k,
                                 TopKOrder order = TopKOrder::kByScore);

// Fraction of the reference set that appears in `found`: |found ∩ reference| / |reference|.
// Both are treated as sets (duplicates ignored). An empty reference gives 1.0 (nothing to miss).
double SetRecall(absl::Span<const int32_t> found, absl::Span<const int32_t> reference);

// |a ∩ b| / |a ∪ b| with both treated as sets; two empty sets give 1.0 (they are identical).
double JaccardIndex(absl::Span<const int32_t> a, absl::Span<const int32_t> b);

// Fraction of the oracle's top-k tokens that are also in the method's top-k (same k on both
// sides, ties by lower index, k clamped to the length). Since both sets have k elements this is
// also the precision. Use SetRecall directly when the method's kept set is not a plain top-k
// (e.g. the engine's selection that always adds the observation window).
// Errors (INVALID_ARGUMENT): size mismatch, empty input, k < 1.
absl::StatusOr<double> TopKRecall(absl::Span<const float> method_scores,
                                  absl::Span<const float> oracle_scores, int64_t k);

// Jaccard index of the two top-k sets; same conventions and errors as TopKRecall.
absl::StatusOr<double> TopKJaccard(absl::Span<const float> a, absl::Span<const float> b, int64_t k);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_RANK_METRICS_H_
