// Runs claa-loadgen against a real claa-server (built-in model) and checks its result file:
// every request completes, token counts are exact with ignore_eos, the latency statistics are
// finite and ordered, and the goodput agrees with the per-request numbers.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/child_process.h"
#include "tests/integration/timeout_scale.h"

namespace claa {
namespace {

using ::claa::testing::ChildProcess;

struct LoadgenRun {
  int exit_code = -1;
  std::string stdout_text;
  nlohmann::json result;
};

class LoadgenTest : public ::testing::Test {
 protected:
  // One built-in-model server for the suite, on free ports; claa-loadgen's GetModelInfo
  // waits for it to accept calls.
  static void SetUpTestSuite() {
    server_ = new ChildProcess();
    ASSERT_TRUE(server_->Start({CLAA_SERVER_BINARY, "--port=0", "--metrics_port=0"}));
    const auto listening = server_->WaitForLine("listening on ");
    ASSERT_TRUE(listening.has_value()) << "claa-server did not start";
    address_ = listening->substr(listening->find("listening on ") + 13);
  }
  static void TearDownTestSuite() {
    delete server_;  // kills it
    server_ = nullptr;
  }

  // Runs claa-loadgen with `args` against the server; reads --result_json when it exits 0.
  static LoadgenRun Run(const std::string& name, std::vector<std::string> args) {
    const std::string json_path = ::testing::TempDir() + "/loadgen_" + name + ".json";
    std::remove(json_path.c_str());
    std::vector<std::string> argv = {CLAA_LOADGEN_BINARY, "--target=" + address_,
                                     "--result_json=" + json_path,
                                     "--timeout_s=" + ::claa::testing::ScaledSecondsFlag(60)};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess loadgen;
    LoadgenRun run;
    if (!loadgen.Start(argv)) return run;
    run.stdout_text = loadgen.ReadAll();
    run.exit_code = loadgen.Wait();
    if (run.exit_code == 0) {
      std::ifstream in(json_path);
      std::stringstream text;
      text << in.rdbuf();
      run.result = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    }
    std::remove(json_path.c_str());
    return run;
  }

  static ChildProcess* server_;
  static std::string address_;
};

ChildProcess* LoadgenTest::server_ = nullptr;
std::string LoadgenTest::address_;

void ExpectFiniteOrderedSummary(const nlohmann::json& j, const std::string& metric) {
  SCOPED_TRACE(metric);
  for (const char* stat : {"mean", "median", "std", "p90", "p99", "min", "max"}) {
    const std::string key = std::string(stat) + "_" + metric + "_ms";
    ASSERT_TRUE(j.contains(key) && j[key].is_number()) << key;
    EXPECT_TRUE(std::isfinite(j[key].get<double>())) << key;
    EXPECT_GE(j[key].get<double>(), 0) << key;
  }
  const double median = j["median_" + metric + "_ms"];
  const double p90 = j["p90_" + metric + "_ms"];
  const double p99 = j["p99_" + metric + "_ms"];
  EXPECT_LE(j["min_" + metric + "_ms"].get<double>(), median);
  EXPECT_LE(median, p90);
  EXPECT_LE(p90, p99);
  EXPECT_LE(p99, j["max_" + metric + "_ms"].get<double>());
  EXPECT_GT(j["count_" + metric].get<int>(), 0);
}

TEST_F(LoadgenTest, RandomDatasetCompletesWithConsistentMetrics) {
  const LoadgenRun run =
      Run("random",
          {"--num_prompts=40", "--request_rate=50", "--max_concurrency=8", "--random_input_len=32",
           "--random_output_len=16", "--seed=1", "--goodput=ttft:2000 tpot:500 e2el:5000"});
  ASSERT_EQ(run.exit_code, 0) << run.stdout_text;
  const nlohmann::json& j = run.result;
  ASSERT_FALSE(j.is_discarded()) << "result JSON did not parse";
  EXPECT_EQ(j["completed"], 40);
  EXPECT_EQ(j["failed"], 0) << j["failure_reasons"].dump();
  EXPECT_EQ(j["total_input_tokens"], 40 * 32);
  EXPECT_EQ(j["total_output_tokens"], 40 * 16);  // ignore_eos: every request runs to max_tokens
  for (const char* metric : {"ttft", "tpot", "itl", "e2el"}) ExpectFiniteOrderedSummary(j, metric);
  EXPECT_LE(j["count_itl"].get<int>(), 40 * 15);  // one gap per chunk after the first

  const double duration = j["duration"];
  ASSERT_GT(duration, 0);
  EXPECT_NEAR(j["request_throughput"].get<double>(), 40 / duration, 1e-6);
  EXPECT_NEAR(j["output_throughput"].get<double>(), 40 * 16 / duration, 1e-6);
  EXPECT_NEAR(j["total_token_throughput"].get<double>(), 40 * 48 / duration, 1e-6);

  // Goodput: recount the requests meeting every SLO from the per-request arrays.
  int good = 0;
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(j["output_lens"][i], 16);
    EXPECT_EQ(j["finish_reasons"][i], "LENGTH");
    const double ttft = j["ttfts"][i], tpot = j["tpots"][i], e2el = j["e2els"][i];
    EXPECT_LE(ttft, e2el);
    if (ttft * 1e3 <= 2000 && tpot * 1e3 <= 500 && e2el * 1e3 <= 5000) ++good;
  }
  EXPECT_EQ(j["good_requests"], good);
  EXPECT_NEAR(j["request_goodput"].get<double>(), good / duration, 1e-6);
  EXPECT_LE(j["request_goodput"].get<double>(), j["request_throughput"].get<double>() + 1e-9);

  // The printed table.
  EXPECT_NE(run.stdout_text.find("Serving Benchmark Result"), std::string::npos);
  EXPECT_NE(run.stdout_text.find("Successful requests:                     40"), std::string::npos)
      << run.stdout_text;
  EXPECT_NE(run.stdout_text.find("Request goodput (req/s):"), std::string::npos);
}

TEST_F(LoadgenTest, JsonlDatasetSendsTextPrompts) {
  const std::string path = ::testing::TempDir() + "/loadgen_prompts.jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"Once upon a time\", \"max_tokens\": 4}\n"
        << "{\"prompt\": \"The quick brown fox\", \"max_tokens\": 6}\n";
  }
  const LoadgenRun run = Run("jsonl", {"--dataset=jsonl", "--dataset_path=" + path,
                                       "--num_prompts=4", "--ignore_eos", "--max_concurrency=2"});
  std::remove(path.c_str());
  ASSERT_EQ(run.exit_code, 0) << run.stdout_text;
  EXPECT_EQ(run.result["completed"], 4);
  EXPECT_EQ(run.result["total_output_tokens"], 4 + 6 + 4 + 6);
  EXPECT_EQ(run.result["request_rate"], "inf");
}

TEST_F(LoadgenTest, MalformedDatasetFailsBeforeSending) {
  const std::string path = ::testing::TempDir() + "/loadgen_bad.jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"fine\"}\n{\"max_tokens\": 3}\n";
  }
  const LoadgenRun run = Run("bad", {"--dataset=jsonl", "--dataset_path=" + path});
  std::remove(path.c_str());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.stdout_text, "");  // no report
}

TEST_F(LoadgenTest, OversizedPromptsAreRefusedAndServerErrorsCountedByCode) {
  // 2000 prompt + 100 output tokens exceed the built-in model's 2048 context; the server
  // would refuse each one, so claa-loadgen refuses the run up front instead.
  const LoadgenRun run =
      Run("toolong", {"--num_prompts=2", "--random_input_len=2000", "--random_output_len=100"});
  EXPECT_EQ(run.exit_code, 1);

  // A negative temperature passes the client but not the server: INVALID_ARGUMENT for each
  // request, reported as failures by code (exit 0: the benchmark itself ran).
  const LoadgenRun bad = Run("invalid", {"--num_prompts=3", "--random_input_len=8",
                                         "--random_output_len=2", "--temperature=-1"});
  ASSERT_EQ(bad.exit_code, 0) << bad.stdout_text;
  EXPECT_EQ(bad.result["completed"], 0);
  EXPECT_EQ(bad.result["failed"], 3);
  EXPECT_EQ(bad.result["failure_reasons"]["INVALID_ARGUMENT"], 3);
  EXPECT_NE(bad.stdout_text.find("INVALID_ARGUMENT:"), std::string::npos) << bad.stdout_text;
}

}  // namespace
}  // namespace claa
