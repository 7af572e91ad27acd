#include "server/loadgen/arrival_schedule.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace claa::loadgen {
namespace {

std::vector<double> Gaps(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  return gaps;
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

// Coefficient of variation (std / mean) of gamma(k, theta) gaps is 1 / sqrt(k).
double Cv(const std::vector<double>& v) {
  const double m = Mean(v);
  double sq = 0;
  for (double x : v) sq += (x - m) * (x - m);
  return std::sqrt(sq / v.size()) / m;
}

TEST(ArrivalScheduleTest, InfiniteRateSendsEverythingAtZero) {
  auto t = MakeArrivalSchedule(
      {.num_requests = 5, .request_rate = std::numeric_limits<double>::infinity()});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, std::vector<double>(5, 0.0));
}

TEST(ArrivalScheduleTest, StartsAtZeroAndIsNonDecreasing) {
  auto t = MakeArrivalSchedule({.num_requests = 100, .request_rate = 5, .seed = 3});
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 100u);
  EXPECT_EQ((*t)[0], 0.0);
  for (size_t i = 1; i < t->size(); ++i) EXPECT_GE((*t)[i], (*t)[i - 1]);
}

class MeanRateTest : public ::testing::TestWithParam<double> {};

TEST_P(MeanRateTest, MeanRateMatchesForEveryBurstiness) {
  const double burstiness = GetParam();
  auto t = MakeArrivalSchedule(
      {.num_requests = 20001, .request_rate = 40, .burstiness = burstiness, .seed = 1});
  ASSERT_TRUE(t.ok());
  const double rate = 20000 / t->back();
  EXPECT_NEAR(rate, 40, 40 * 0.05) << "burstiness " << burstiness;
  EXPECT_NEAR(Cv(Gaps(*t)), 1 / std::sqrt(burstiness), 0.1 / std::sqrt(burstiness));
}

INSTANTIATE_TEST_SUITE_P(Burstiness, MeanRateTest, ::testing::Values(0.25, 1.0, 4.0));

TEST(ArrivalScheduleTest, BurstierMeansMoreVariableGaps) {
  auto bursty =
      MakeArrivalSchedule({.num_requests = 5000, .request_rate = 10, .burstiness = 0.5, .seed = 7});
  auto poisson = MakeArrivalSchedule({.num_requests = 5000, .request_rate = 10, .seed = 7});
  auto regular =
      MakeArrivalSchedule({.num_requests = 5000, .request_rate = 10, .burstiness = 8, .seed = 7});
  ASSERT_TRUE(bursty.ok() && poisson.ok() && regular.ok());
  EXPECT_GT(Cv(Gaps(*bursty)), Cv(Gaps(*poisson)));
  EXPECT_GT(Cv(Gaps(*poisson)), Cv(Gaps(*regular)));
}

TEST(ArrivalScheduleTest, SameSeedSameScheduleOtherSeedOther) {
  const ArrivalOptions a{.num_requests = 50, .request_rate = 3, .burstiness = 0.7, .seed = 42};
  ArrivalOptions b = a;
  b.seed = 43;
  EXPECT_EQ(*MakeArrivalSchedule(a), *MakeArrivalSchedule(a));
  EXPECT_NE(*MakeArrivalSchedule(a), *MakeArrivalSchedule(b));
}

TEST(ArrivalScheduleTest, RejectsBadOptions) {
  EXPECT_FALSE(MakeArrivalSchedule({.num_requests = 1, .request_rate = 0}).ok());
  EXPECT_FALSE(MakeArrivalSchedule({.num_requests = 1, .request_rate = -1}).ok());
  EXPECT_FALSE(MakeArrivalSchedule({.num_requests = 1, .request_rate = NAN}).ok());
  EXPECT_FALSE(MakeArrivalSchedule({.num_requests = 1, .request_rate = 1, .burstiness = 0}).ok());
  EXPECT_FALSE(MakeArrivalSchedule({.num_requests = -1, .request_rate = 1}).ok());
  EXPECT_TRUE(MakeArrivalSchedule({.num_requests = 0, .request_rate = 1})->empty());
}

}  // namespace
}  // namespace claa::loadgen
