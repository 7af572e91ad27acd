#include "server/loadgen/metrics.h"

#include "gtest/gtest.h"
#include "server/loadgen/goodput.h"

namespace claa::loadgen {
namespace {

RequestResult Ok(double ttft_s, double e2el_s, int prompt_tokens, int output_tokens,
                 std::vector<double> itl_s = {}) {
  RequestResult r;
  r.success = true;
  r.ttft_s = ttft_s;
  r.e2el_s = e2el_s;
  r.prompt_tokens = prompt_tokens;
  r.output_tokens = output_tokens;
  r.itl_s = std::move(itl_s);
  return r;
}

RequestResult Failed(const std::string& code) {
  RequestResult r;
  r.error = code;
  return r;
}

TEST(GoodputTest, ParsesAnySubsetAndSeparators) {
  auto slos = ParseGoodputSlos("ttft:500 tpot:50,e2el:2000.5");
  ASSERT_TRUE(slos.ok()) << slos.status();
  EXPECT_EQ(*slos->ttft_ms, 500);
  EXPECT_EQ(*slos->tpot_ms, 50);
  EXPECT_EQ(*slos->e2el_ms, 2000.5);
  auto only = ParseGoodputSlos("tpot:10");
  ASSERT_TRUE(only.ok());
  EXPECT_FALSE(only->ttft_ms.has_value());
  EXPECT_TRUE(ParseGoodputSlos("")->empty());
}

TEST(GoodputTest, RejectsMalformedSpecs) {
  for (const char* bad :
       {"ttft", "ttft:", "ttft:abc", "ttft:-5", "ttft:0", "itl:5", "ttft:5 ttft:6", "ttft:inf"}) {
    EXPECT_FALSE(ParseGoodputSlos(bad).ok()) << bad;
  }
}

TEST(GoodputTest, MeetsSlosChecksEveryGivenMetric) {
  const RequestResult r = Ok(/*ttft_s=*/0.1, /*e2el_s=*/1.1, 8, /*output_tokens=*/11);
  // TPOT = (1.1 - 0.1) / 10 = 100 ms.
  EXPECT_TRUE(MeetsSlos(r, {}));
  EXPECT_TRUE(MeetsSlos(r, {.ttft_ms = 100, .tpot_ms = 100, .e2el_ms = 1100}));
  EXPECT_FALSE(MeetsSlos(r, {.ttft_ms = 99}));
  EXPECT_FALSE(MeetsSlos(r, {.tpot_ms = 99}));
  EXPECT_FALSE(MeetsSlos(r, {.e2el_ms = 1099}));
  EXPECT_FALSE(MeetsSlos(Failed("UNAVAILABLE"), {}));
}

TEST(MetricsTest, CountsTotalsThroughputsAndFailures) {
  std::vector<RequestResult> results = {
      Ok(0.1, 0.5, 10, 5, {0.1, 0.1, 0.1, 0.1}),
      Ok(0.3, 0.9, 20, 4, {0.2, 0.2, 0.2}),
      Ok(0.2, 0.2, 30, 1),  // one token: no TPOT, no ITL
      Failed("DEADLINE_EXCEEDED"),
      Failed("DEADLINE_EXCEEDED"),
      Failed("RESOURCE_EXHAUSTED"),
  };
  const BenchmarkMetrics m = ComputeMetrics(results, /*duration_s=*/2.0, {.ttft_ms = 250});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 3);
  EXPECT_EQ(m.failure_reasons.at("DEADLINE_EXCEEDED"), 2);
  EXPECT_EQ(m.failure_reasons.at("RESOURCE_EXHAUSTED"), 1);
  EXPECT_EQ(m.total_input_tokens, 60);
  EXPECT_EQ(m.total_output_tokens, 10);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.5);
  EXPECT_EQ(m.good_requests, 2);  // ttft 300 ms misses the 250 ms SLO
  EXPECT_DOUBLE_EQ(m.request_goodput, 1.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 5.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 35.0);
  EXPECT_EQ(m.ttft_ms.count, 3);
  EXPECT_NEAR(m.ttft_ms.mean, 200, 1e-9);
  EXPECT_EQ(m.tpot_ms.count, 2);
  EXPECT_NEAR(m.tpot_ms.mean, 150, 1e-9);  // (0.4 s / 4 + 0.6 s / 3) / 2
  EXPECT_EQ(m.itl_ms.count, 7);
  EXPECT_EQ(m.e2el_ms.count, 3);
  EXPECT_NEAR(m.e2el_ms.max, 900, 1e-9);
}

TEST(MetricsTest, NoResultsIsAllZero) {
  const BenchmarkMetrics m = ComputeMetrics({}, 0, {});
  EXPECT_EQ(m.completed, 0);
  EXPECT_EQ(m.request_throughput, 0);
  EXPECT_EQ(m.ttft_ms.p99, 0);
}

}  // namespace
}  // namespace claa::loadgen
