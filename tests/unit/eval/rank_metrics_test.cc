#include "engine/eval/rank_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace claa::eval {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

double Spearman(const std::vector<float>& a, const std::vector<float>& b) {
  absl::StatusOr<double> r = SpearmanCorrelation(a, b);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.value_or(-99.0);
}

TEST(FractionalRanksTest, TiesShareTheAverageRank) {
  EXPECT_THAT(FractionalRanks({10.f, 20.f, 20.f, 5.f}), ElementsAre(2.0, 3.5, 3.5, 1.0));
  EXPECT_THAT(FractionalRanks({7.f, 7.f, 7.f}), ElementsAre(2.0, 2.0, 2.0));
  EXPECT_THAT(FractionalRanks({}), IsEmpty());
}

TEST(SpearmanTest, PerfectAndReversedOrder) {
  EXPECT_DOUBLE_EQ(Spearman({1, 2, 3, 4, 5}, {10, 20, 30, 40, 50}), 1.0);
  EXPECT_DOUBLE_EQ(Spearman({1, 2, 3, 4, 5}, {50, 40, 30, 20, 10}), -1.0);
  // Only the order matters: any monotone transform gives 1.
  EXPECT_DOUBLE_EQ(Spearman({0.1f, 0.2f, 5.f, 7.f}, {-3.f, 0.f, 1e6f, 1e7f}), 1.0);
}

TEST(SpearmanTest, NoTiesMatchesTheTextbookFormula) {
  // d = {-1, 1, -1, 1, 0}: rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8.
  EXPECT_NEAR(Spearman({1, 2, 3, 4, 5}, {2, 1, 4, 3, 5}), 0.8, 1e-12);
}

TEST(SpearmanTest, TiesUseAverageRanksLikeScipy) {
  // Ranks {1, 2.5, 2.5, 4} vs {1, 2, 3, 4}: r = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
  // (scipy.stats.spearmanr([1,2,2,3],[1,2,3,4]) = 0.9486832980505138).
  EXPECT_NEAR(Spearman({1, 2, 2, 3}, {1, 2, 3, 4}), 3.0 / std::sqrt(10.0), 1e-12);
  // Ranks {3, 1.5, 4, 1.5, 5} vs {5, 1, 4, 3, 2}: sxy = 2, sxx = 9.5, syy = 10 -> 2 / sqrt(95).
  EXPECT_NEAR(Spearman({3, 1, 4, 1, 5}, {9, 2, 6, 5, 3}), 2.0 / std::sqrt(95.0), 1e-12);
  // Ties on both sides: ranks {1.5,1.5,3.5,3.5,5} vs {4.5,4.5,3,1.5,1.5}: -8.25 / 9 = -11/12.
  EXPECT_NEAR(Spearman({1, 1, 2, 2, 3}, {3, 3, 2, 1, 1}), -11.0 / 12.0, 1e-12);
}

TEST(SpearmanTest, IsSymmetric) {
  const std::vector<float> a = {0.3f, 0.1f, 0.9f, 0.4f, 0.4f, 0.0f};
  const std::vector<float> b = {1.0f, 3.0f, 2.0f, 2.0f, 5.0f, 4.0f};
  EXPECT_DOUBLE_EQ(Spearman(a, b), Spearman(b, a));
}

TEST(SpearmanTest, ConstantSideGivesZero) {
  EXPECT_EQ(Spearman({1, 1, 1, 1}, {1, 2, 3, 4}), 0.0);
  EXPECT_EQ(Spearman({1, 2, 3, 4}, {0, 0, 0, 0}), 0.0);
  EXPECT_EQ(Spearman({2, 2}, {2, 2}), 0.0);
}

TEST(SpearmanTest, InfinitiesAreRankedByOrder) {
  EXPECT_DOUBLE_EQ(Spearman({-kInf, 0, kInf}, {1, 2, 3}), 1.0);
}

TEST(SpearmanTest, RejectsBadInput) {
  EXPECT_EQ(SpearmanCorrelation(std::vector<float>{1, 2, 3}, std::vector<float>{1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SpearmanCorrelation(std::vector<float>{1}, std::vector<float>{1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SpearmanCorrelation({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SpearmanCorrelation(std::vector<float>{1, kNaN}, std::vector<float>{1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TopKIndicesTest, ByScoreAndByIndex) {
  const std::vector<float> s = {0.1f, 0.5f, 0.5f, 0.2f, 0.9f};
  EXPECT_THAT(TopKIndices(s, 3), ElementsAre(4, 1, 2));
  EXPECT_THAT(TopKIndices(s, 3, TopKOrder::kByIndex), ElementsAre(1, 2, 4));
  // The tie at 0.5 goes to the lower index.
  EXPECT_THAT(TopKIndices(s, 2), ElementsAre(4, 1));
  EXPECT_THAT(TopKIndices({1, 1, 1, 1}, 2), ElementsAre(0, 1));
}

TEST(TopKIndicesTest, ClampsK) {
  const std::vector<float> s = {3, 1, 2};
  EXPECT_THAT(TopKIndices(s, 0), IsEmpty());
  EXPECT_THAT(TopKIndices(s, -5), IsEmpty());
  EXPECT_THAT(TopKIndices(s, 10), ElementsAre(0, 2, 1));
  EXPECT_THAT(TopKIndices({}, 3), IsEmpty());
}

TEST(TopKIndicesTest, NaNRanksLast) {
  const std::vector<float> s = {kNaN, 1.f, -kInf, 2.f};
  EXPECT_THAT(TopKIndices(s, 3), ElementsAre(3, 1, 2));
  EXPECT_THAT(TopKIndices(s, 4), ElementsAre(3, 1, 2, 0));
}

TEST(TopKIndicesTest, MatchesAFullSortOnRandomData) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> value(0, 20);  // Many ties.
  std::vector<float> s(500);
  for (float& v : s) v = static_cast<float>(value(rng));
  std::vector<int32_t> expected(s.size());
  std::iota(expected.begin(), expected.end(), 0);
  std::stable_sort(expected.begin(), expected.end(), [&](int32_t i, int32_t j) { return s[i] > s[j]; });
  expected.resize(77);
  EXPECT_EQ(TopKIndices(s, 77), expected);
}

TEST(SetMetricsTest, RecallAndJaccard) {
  EXPECT_DOUBLE_EQ(SetRecall({1, 2, 3}, {2, 3, 4, 5}), 0.5);
  EXPECT_DOUBLE_EQ(SetRecall({2, 2, 2}, {2, 3}), 0.5);  // Duplicates count once.
  EXPECT_DOUBLE_EQ(SetRecall({9}, {}), 1.0);
  EXPECT_DOUBLE_EQ(SetRecall({}, {1}), 0.0);
  EXPECT_DOUBLE_EQ(JaccardIndex({1, 2, 3}, {2, 3, 4}), 0.5);
  EXPECT_DOUBLE_EQ(JaccardIndex({3, 1, 2}, {1, 2, 3}), 1.0);
  EXPECT_DOUBLE_EQ(JaccardIndex({}, {}), 1.0);
  EXPECT_DOUBLE_EQ(JaccardIndex({1}, {}), 0.0);
}

TEST(TopKRecallTest, SmallCases) {
  const std::vector<float> method = {5, 4, 3, 2, 1};
  const std::vector<float> oracle = {1, 2, 3, 4, 5};
  // Top-2: {0, 1} vs {4, 3}.
  EXPECT_DOUBLE_EQ(*TopKRecall(method, oracle, 2), 0.0);
  // Top-3: {0, 1, 2} vs {4, 3, 2}: one shared of three; Jaccard 1 / 5.
  EXPECT_NEAR(*TopKRecall(method, oracle, 3), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(*TopKJaccard(method, oracle, 3), 0.2, 1e-12);
  // k >= n keeps everything.
  EXPECT_DOUBLE_EQ(*TopKRecall(method, oracle, 5), 1.0);
  EXPECT_DOUBLE_EQ(*TopKJaccard(method, oracle, 99), 1.0);
  EXPECT_DOUBLE_EQ(*TopKRecall(oracle, oracle, 2), 1.0);
  // Oracle top-2 = {1, 3}; method top-2 = {3, 0}: one of two.
  EXPECT_DOUBLE_EQ(*TopKRecall({0.9f, 0.1f, 0.2f, 1.0f}, {0.0f, 0.8f, 0.1f, 0.9f}, 2), 0.5);
}

TEST(TopKRecallTest, RejectsBadInput) {
  const std::vector<float> a = {1, 2, 3};
  EXPECT_EQ(TopKRecall(a, std::vector<float>{1, 2}, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TopKRecall({}, {}, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TopKRecall(a, a, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TopKJaccard(a, a, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace claa::eval
