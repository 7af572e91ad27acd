#include "server/loadgen/report.h"

#include <limits>

#include "gtest/gtest.h"
#include "server/loadgen/request_builder.h"

namespace claa::loadgen {
namespace {

std::vector<RequestResult> TwoResults() {
  RequestResult ok;
  ok.success = true;
  ok.request_id = "req-1";
  ok.finish_reason = "LENGTH";
  ok.ttft_s = 0.01;
  ok.e2el_s = 0.05;
  ok.itl_s = {0.02, 0.02};
  ok.prompt_tokens = 4;
  ok.output_tokens = 3;
  RequestResult bad;
  bad.error = "UNAVAILABLE";
  bad.error_message = "server went away";
  return {ok, bad};
}

TEST(ReportTest, TableHasVllmSectionsAndFailureReasons) {
  BenchmarkConfig config;
  config.request_rate = std::numeric_limits<double>::infinity();
  config.max_concurrency = 8;
  config.slos.ttft_ms = 100;
  const auto results = TwoResults();
  const std::string table = FormatReport(config, ComputeMetrics(results, 1.0, config.slos));
  for (const char* expected :
       {"Serving Benchmark Result", "Successful requests:                     1",
        "Failed requests:                         1",
        "  UNAVAILABLE:", "Request rate configured (RPS):           inf",
        "Maximum request concurrency:             8", "Request goodput (req/s):",
        "Time to First Token", "Mean TTFT (ms):                          10.00",
        "P99 ITL (ms):", "Time per Output Token (excl. 1st token)", "Median E2EL (ms):"}) {
    EXPECT_NE(table.find(expected), std::string::npos) << expected << "\n" << table;
  }
}

TEST(ReportTest, NoGoodputLineWithoutSlos) {
  BenchmarkConfig config;
  config.request_rate = 5;
  const std::string table = FormatReport(config, ComputeMetrics(TwoResults(), 1.0, {}));
  EXPECT_EQ(table.find("goodput"), std::string::npos);
  EXPECT_NE(table.find("unlimited"), std::string::npos);
}

TEST(ReportTest, JsonHasNumbersAndPerRequestArrays) {
  BenchmarkConfig config;
  config.request_rate = std::numeric_limits<double>::infinity();
  config.num_prompts = 2;
  config.slos.e2el_ms = 100;
  const auto results = TwoResults();
  const nlohmann::json j = ResultJson(config, ComputeMetrics(results, 2.0, config.slos), results);
  EXPECT_EQ(j["request_rate"], "inf");  // JSON has no infinity
  EXPECT_EQ(j["completed"], 1);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["failure_reasons"]["UNAVAILABLE"], 1);
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["mean_ttft_ms"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(j["median_tpot_ms"].get<double>(), 20.0);
  for (const char* key : {"std_itl_ms", "p90_e2el_ms", "p99_ttft_ms", "total_token_throughput"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  ASSERT_EQ(j["ttfts"].size(), 2u);
  EXPECT_EQ(j["itls"][0].size(), 2u);
  EXPECT_EQ(j["success"][1], false);
  EXPECT_EQ(j["errors"][1], "UNAVAILABLE: server went away");
  EXPECT_EQ(j["output_lens"][0], 3);
}

TEST(RequestBuilderTest, TokenIdsSamplingAndPruning) {
  Prompt p;
  p.token_ids = {5, 6, 7};
  p.max_tokens = 9;
  RequestOptions options;
  options.pruning_method = v1::PruningOptions::CLAA;
  options.keep_ratio = 0.25f;
  const v1::GenerateRequest r = BuildRequest(p, options);
  EXPECT_EQ(r.token_ids().ids_size(), 3);
  EXPECT_EQ(r.sampling().max_tokens(), 9u);
  EXPECT_EQ(r.sampling().temperature(), 0.0f);
  EXPECT_TRUE(r.sampling().ignore_eos());
  EXPECT_EQ(r.pruning().method(), v1::PruningOptions::CLAA);
  EXPECT_FLOAT_EQ(r.pruning().keep_ratio(), 0.25f);
}

TEST(RequestBuilderTest, TextPromptWithoutPruning) {
  Prompt p;
  p.text = "hello";
  p.max_tokens = 2;
  RequestOptions options;
  options.ignore_eos = false;
  const v1::GenerateRequest r = BuildRequest(p, options);
  EXPECT_EQ(r.text(), "hello");
  EXPECT_FALSE(r.sampling().ignore_eos());
  EXPECT_FALSE(r.has_pruning());
}

TEST(RequestBuilderTest, ParsesPruningMethods) {
  EXPECT_FALSE(ParsePruningMethod("")->has_value());
  EXPECT_EQ(**ParsePruningMethod("full"), v1::PruningOptions::FULL);
  EXPECT_EQ(**ParsePruningMethod("FastKV"), v1::PruningOptions::FASTKV);
  EXPECT_EQ(**ParsePruningMethod("gemfilter"), v1::PruningOptions::GEMFILTER);
  EXPECT_FALSE(ParsePruningMethod("snapkv").ok());
}

}  // namespace
}  // namespace claa::loadgen
