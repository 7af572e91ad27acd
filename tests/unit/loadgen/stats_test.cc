#include "server/loadgen/stats.h"

#include <cmath>

#include "gtest/gtest.h"

namespace claa::loadgen {
namespace {

// Expected values are numpy's: np.percentile (linear) and np.std (ddof=0).
TEST(StatsTest, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> sorted = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(sorted, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(sorted, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(sorted, 90), 3.7);
  EXPECT_DOUBLE_EQ(Percentile(sorted, 99), 3.97);
  EXPECT_DOUBLE_EQ(Percentile(sorted, 100), 4);
}

TEST(StatsTest, SummarizeSortsAndUsesPopulationStd) {
  const Summary s = Summarize({9, 1, 5, 3, 7});
  EXPECT_EQ(s.count, 5);
  EXPECT_DOUBLE_EQ(s.mean, 5);
  EXPECT_DOUBLE_EQ(s.median, 5);
  EXPECT_DOUBLE_EQ(s.std, std::sqrt(8.0));  // mean of squared deviations: (16+4+0+4+16)/5
  EXPECT_DOUBLE_EQ(s.p90, 8.2);
  EXPECT_DOUBLE_EQ(s.p99, 8.92);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 9);
}

TEST(StatsTest, SingleSample) {
  const Summary s = Summarize({4.5});
  EXPECT_EQ(s.count, 1);
  EXPECT_DOUBLE_EQ(s.mean, 4.5);
  EXPECT_DOUBLE_EQ(s.median, 4.5);
  EXPECT_DOUBLE_EQ(s.p99, 4.5);
  EXPECT_DOUBLE_EQ(s.std, 0);
}

TEST(StatsTest, EmptyIsAllZeroNotNan) {
  const Summary s = Summarize({});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.mean, 0);
  EXPECT_EQ(s.median, 0);
  EXPECT_EQ(s.std, 0);
  EXPECT_EQ(s.p90, 0);
  EXPECT_EQ(s.p99, 0);
  EXPECT_EQ(Percentile({}, 50), 0);
}

TEST(StatsTest, PercentilesAreOrdered) {
  std::vector<double> v;
  for (int i = 0; i < 1000; ++i) v.push_back((i * 7919) % 1000 / 10.0);
  const Summary s = Summarize(v);
  EXPECT_LE(s.min, s.median);
  EXPECT_LE(s.median, s.p90);
  EXPECT_LE(s.p90, s.p99);
  EXPECT_LE(s.p99, s.max);
}

}  // namespace
}  // namespace claa::loadgen
