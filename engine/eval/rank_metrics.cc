#include "engine/eval/rank_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace claa::eval {
namespace {

bool HasNaN(absl::Span<const float> v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

// Pearson correlation; 0.0 when either side has zero variance (see the header for why).
double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  const double mean_x = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double mean_y = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0.0, sxx = 0.0, syy = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mean_x;
    const double dy = y[i] - mean_y;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx <= 0.0 || syy <= 0.0) return 0.0;
  // Rounding can push |r| a hair past 1 for perfectly (anti-)monotone data.
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

// Strict weak order "i is preferred over j": higher score, non-NaN over NaN, then lower index.
struct Preferred {
  absl::Span<const float> s;
  bool operator()(int32_t i, int32_t j) const {
    const bool nan_i = std::isnan(s[i]);
    const bool nan_j = std::isnan(s[j]);
    if (nan_i != nan_j) return nan_j;
    if (!nan_i && s[i] != s[j]) return s[i] > s[j];
    return i < j;
  }
};

std::vector<int32_t> Sorted(std::vector<int32_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

size_t IntersectionSize(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t count = 0;
  auto ia = a.begin();
  auto ib = b.begin();
  while (ia != a.end() && ib != b.end()) {
    if (*ia < *ib) {
      ++ia;
    } else if (*ib < *ia) {
      ++ib;
    } else {
      ++count;
      ++ia;
      ++ib;
    }
  }
  return count;
}

absl::Status CheckTopKArgs(absl::Span<const float> a, absl::Span<const float> b, int64_t k) {
  if (a.size() != b.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-k inputs differ in length: ", a.size(), " vs ", b.size()));
  }
  if (a.empty()) return absl::InvalidArgumentError("top-k inputs are empty");
  if (k < 1) return absl::InvalidArgumentError(absl::StrCat("top-k needs k >= 1, got ", k));
  return absl::OkStatus();
}

}  // namespace

std::vector<double> FractionalRanks(absl::Span<const float> values) {
  const size_t n = values.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // NaN sorts last and all NaNs tie, so the comparator stays a strict weak order.
  auto less = [&](int32_t i, int32_t j) {
    const bool nan_i = std::isnan(values[i]);
    const bool nan_j = std::isnan(values[j]);
    if (nan_i || nan_j) return !nan_i && nan_j;
    return values[i] < values[j];
  };
  std::sort(order.begin(), order.end(), less);
  std::vector<double> ranks(n);
  size_t start = 0;
  while (start < n) {
    size_t end = start + 1;
    while (end < n && !less(order[start], order[end])) ++end;
    // Positions start..end-1 (0-based) hold 1-based ranks start+1..end; ties share their mean.
    const double rank = 0.5 * static_cast<double>(start + 1 + end);
    for (size_t p = start; p < end; ++p) ranks[order[p]] = rank;
    start = end;
  }
  return ranks;
}

absl::StatusOr<double> SpearmanCorrelation(absl::Span<const float> a, absl::Span<const float> b) {
  if (a.size() != b.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Spearman inputs differ in length: ", a.size(), " vs ", b.size()));
  }
  if (a.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("Spearman needs at least 2 items, got ", a.size()));
  }
  if (HasNaN(a) || HasNaN(b)) return absl::InvalidArgumentError("Spearman input contains NaN");
  return Pearson(FractionalRanks(a), FractionalRanks(b));
}

std::vector<int32_t> TopKIndices(absl::Span<const float> scores, int64_t k, TopKOrder order) {
  const auto n = static_cast<int64_t>(scores.size());
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const Preferred preferred{scores};
  // partial_sort is O(n log k); prompts are long and k is often a small fraction of them.
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), preferred);
  idx.resize(static_cast<size_t>(k));
  if (order == TopKOrder::kByIndex) std::sort(idx.begin(), idx.end());
  return idx;
}

double SetRecall(absl::Span<const int32_t> found, absl::Span<const int32_t> reference) {
  const std::vector<int32_t> ref = Sorted({reference.begin(), reference.end()});
  if (ref.empty()) return 1.0;
  const std::vector<int32_t> got = Sorted({found.begin(), found.end()});
  return static_cast<double>(IntersectionSize(got, ref)) / static_cast<double>(ref.size());
}

double JaccardIndex(absl::Span<const int32_t> a, absl::Span<const int32_t> b) {
  const std::vector<int32_t> sa = Sorted({a.begin(), a.end()});
  const std::vector<int32_t> sb = Sorted({b.begin(), b.end()});
  if (sa.empty() && sb.empty()) return 1.0;
  const size_t inter = IntersectionSize(sa, sb);
  return static_cast<double>(inter) / static_cast<double>(sa.size() + sb.size() - inter);
}

absl::StatusOr<double> TopKRecall(absl::Span<const float> method_scores,
                                  absl::Span<const float> oracle_scores, int64_t k) {
  if (absl::Status s = CheckTopKArgs(method_scores, oracle_scores, k); !s.ok()) return s;
  return SetRecall(TopKIndices(method_scores, k), TopKIndices(oracle_scores, k));
}

absl::StatusOr<double> TopKJaccard(absl::Span<const float> a, absl::Span<const float> b,
                                   int64_t k) {
  if (absl::Status s = CheckTopKArgs(a, b, k); !s.ok()) return s;
  return JaccardIndex(TopKIndices(a, k), TopKIndices(b, k));
}


}  // namespace claa::eval
