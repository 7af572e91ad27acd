// Drives a real claa-server process over gRPC from C++: streaming, Abort, cancellation,
// health, model info, bad requests, metrics, and exact greedy output on stories260K.
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_fixture.h"
#include "tests/integration/timeout_scale.h"
#include "tests/test_data.h"

namespace claa {
namespace {

using ::claa::testing::RunningServer;
using ::claa::testing::Scaled;
using ::claa::testing::ScaledDeadline;

struct StreamResult {
  std::vector<int32_t> ids;
  std::string text;
  int chunks = 0;
  std::optional<v1::Complete> complete;
  std::optional<v1::Error> error;
  grpc::Status status;
};

StreamResult RunGenerate(v1::Generation::Stub& stub, const v1::GenerateRequest& request) {
  StreamResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(ScaledDeadline(std::chrono::seconds(120)));
  auto reader = stub.Generate(&ctx, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      ++r.chunks;
      r.ids.insert(r.ids.end(), response.chunk().token_ids().begin(),
                   response.chunk().token_ids().end());
      r.text += response.chunk().text();
    } else if (response.has_complete()) {
      r.complete = response.complete();
    } else if (response.has_error()) {
      r.error = response.error();
    }
  }
  r.status = reader->Finish();
  return r;
}

v1::GenerateRequest GreedyIds(std::vector<int32_t> ids, int max_tokens) {
  v1::GenerateRequest req;
  for (int32_t id : ids) req.mutable_token_ids()->add_ids(id);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  return req;
}

class BuiltinServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new RunningServer();
    ASSERT_TRUE(server_->Start({})) << "claa-server with no model did not start";
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static RunningServer* server_;
};
RunningServer* BuiltinServerTest::server_ = nullptr;

TEST_F(BuiltinServerTest, ServesTextRequestWithTheBuiltinModel) {
  v1::GenerateRequest req;
  req.set_text("Hello, world");
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(12);
  req.mutable_sampling()->set_ignore_eos(true);
  StreamResult r = RunGenerate(server_->stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_TRUE(r.complete.has_value());
  EXPECT_EQ(r.ids.size(), 12u);
  EXPECT_EQ(r.complete->finish_reason(), v1::LENGTH);
  EXPECT_EQ(r.complete->usage().completion_tokens(), 12u);
  EXPECT_GT(r.complete->usage().prompt_tokens(), 1u);
  EXPECT_EQ(r.complete->usage().kept_prompt_tokens(), r.complete->usage().prompt_tokens());
  EXPECT_GT(r.complete->timing().ttft_seconds(), 0.0);
  EXPECT_GE(r.complete->timing().e2e_seconds(), r.complete->timing().ttft_seconds());
  // Greedy is deterministic: the same request gives the same tokens.
  StreamResult again = RunGenerate(server_->stub(), req);
  EXPECT_EQ(again.ids, r.ids);
}

TEST_F(BuiltinServerTest, ModelInfoSaysBuiltin) {
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(server_->stub().GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_TRUE(info.builtin());
  EXPECT_EQ(info.model_name(), "builtin-tiny-random");
  EXPECT_EQ(info.num_layers(), 4);
  EXPECT_GT(info.vocab_size(), 256);
  EXPECT_EQ(info.max_context_length(), 2048);
}

TEST_F(BuiltinServerTest, HealthReportsServing) {
  auto health = grpc::health::v1::Health::NewStub(server_->channel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(BuiltinServerTest, BadRequestsNameTheField) {
  struct Case {
    std::string name;
    v1::GenerateRequest request;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", v1::GenerateRequest(), "prompt"});
  cases.push_back({"id out of range", GreedyIds({1, 999999}, 4), "prompt.token_ids[1]"});
  cases.push_back({"negative id", GreedyIds({-3}, 4), "prompt.token_ids[0]"});
  {
    v1::GenerateRequest r = GreedyIds({1, 2}, 4);
    r.mutable_sampling()->set_temperature(-1.0f);
    cases.push_back({"negative temperature", r, "sampling.temperature"});
  }
  {
    v1::GenerateRequest r = GreedyIds({1, 2}, 4);
    r.mutable_sampling()->set_top_p(1.5f);
    cases.push_back({"top_p above 1", r, "sampling.top_p"});
  }
  {
    v1::GenerateRequest r = GreedyIds({1, 2}, 4);
    r.mutable_sampling()->add_stop("");
    cases.push_back({"empty stop string", r, "sampling.stop"});
  }
  cases.push_back({"max_tokens beyond context", GreedyIds({1, 2}, 100000), "sampling.max_tokens"});
  {
    v1::GenerateRequest r = GreedyIds({1, 2}, 4);
    r.mutable_pruning()->set_keep_ratio(0.0f);
    cases.push_back({"keep_ratio 0", r, "pruning.keep_ratio"});
  }
  {
    std::vector<int32_t> long_prompt(5000, 65);
    cases.push_back({"prompt longer than context", GreedyIds(long_prompt, 1), "context"});
  }
  // Invalid UTF-8 text cannot be sent through a conforming proto3 client (serialization
  // fails client-side); request_convert_test covers the server's check directly.
  for (const Case& c : cases) {
    StreamResult r = RunGenerate(server_->stub(), c.request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos)
        << c.name << ": message '" << r.status.error_message() << "' does not name " << c.field;
    EXPECT_EQ(r.chunks, 0) << c.name;
  }
}

TEST_F(BuiltinServerTest, AbortEndsTheStreamAndFreesBlocks) {
  v1::GenerateRequest req = GreedyIds({1, 70, 80, 90}, 2000);
  req.set_request_id("abort-me");
  req.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = server_->stub().Generate(&ctx, req);
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_TRUE(response.has_chunk());
  {
    grpc::ClientContext actx;
    v1::AbortRequest areq;
    areq.set_request_id("abort-me");
    v1::AbortResponse aresp;
    ASSERT_TRUE(server_->stub().Abort(&actx, areq, &aresp).ok());
    EXPECT_TRUE(aresp.found());
  }
  std::optional<v1::Complete> complete;
  int tokens = 0;
  while (reader->Read(&response)) {
    if (response.has_chunk()) tokens += response.chunk().token_ids_size();
    if (response.has_complete()) complete = response.complete();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(complete.has_value());
  EXPECT_EQ(complete->finish_reason(), v1::ABORT);
  EXPECT_LT(tokens, 1999);
  // Unknown ids are reported, not an error.
  grpc::ClientContext actx;
  v1::AbortRequest areq;
  areq.set_request_id("no-such-request");
  v1::AbortResponse aresp;
  ASSERT_TRUE(server_->stub().Abort(&actx, areq, &aresp).ok());
  EXPECT_FALSE(aresp.found());
  // Blocks come back once nothing runs.
  std::optional<double> usage;
  const auto usage_by = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(5));
  do {
    usage = server_->MetricValue("claa_kv_cache_usage_perc");
    if (usage && *usage == 0.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < usage_by);
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(*usage, 0.0);
}

TEST_F(BuiltinServerTest, ClientCancellationFreesBlocks) {
  v1::GenerateRequest req = GreedyIds({1, 50, 60}, 2000);
  req.mutable_sampling()->set_ignore_eos(true);
  {
    grpc::ClientContext ctx;
    auto reader = server_->stub().Generate(&ctx, req);
    v1::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response));
    ctx.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  std::optional<double> running;
  const auto running_by = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(5));
  do {
    running = server_->MetricValue("claa_num_requests_running");
    if (running && *running == 0.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < running_by);
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(*running, 0.0);
  EXPECT_EQ(server_->MetricValue("claa_kv_cache_usage_perc").value_or(-1), 0.0);
}

TEST_F(BuiltinServerTest, MetricsExposeTtftHistogram) {
  StreamResult r = RunGenerate(server_->stub(), GreedyIds({1, 2, 3}, 3));
  ASSERT_TRUE(r.status.ok());
  std::optional<double> count = server_->MetricValue("claa_time_to_first_token_seconds_count");
  ASSERT_TRUE(count.has_value()) << server_->FetchMetrics();
  EXPECT_GE(*count, 1.0);
  EXPECT_TRUE(server_->MetricValue("claa_request_success_total").has_value());
}

// Each pruning method over gRPC: the usage reports the kept prompt tokens the policy promises
// (ceil(keep_ratio * prompt), at least the 8-token window), and the kept ratio is exported per
// method.
TEST_F(BuiltinServerTest, PrunedRequestsReportKeptPromptTokens) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 100; ++i) prompt.push_back(3 + (i * 11) % 250);
  for (auto method : {v1::PruningOptions::CLAA, v1::PruningOptions::FASTKV,
                      v1::PruningOptions::GEMFILTER, v1::PruningOptions::FULL}) {
    SCOPED_TRACE(v1::PruningOptions::Method_Name(method));
    v1::GenerateRequest req = GreedyIds(prompt, 5);
    req.mutable_sampling()->set_ignore_eos(true);
    req.mutable_pruning()->set_method(method);
    req.mutable_pruning()->set_keep_ratio(0.25f);
    StreamResult r = RunGenerate(server_->stub(), req);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_TRUE(r.complete.has_value());
    EXPECT_EQ(r.ids.size(), 5u);
    EXPECT_EQ(r.complete->usage().prompt_tokens(), 100u);
    EXPECT_EQ(r.complete->usage().kept_prompt_tokens(),
              method == v1::PruningOptions::FULL ? 100u : 25u);
  }
  const std::string metrics = server_->FetchMetrics();
  EXPECT_NE(metrics.find("claa_prompt_kept_ratio_count{method=\"claa\""), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("claa_time_to_first_token_seconds_count{method=\"gemfilter\""),
            std::string::npos);

  // A layer beyond the model's 4 is the client's mistake.
  v1::GenerateRequest bad = GreedyIds(prompt, 5);
  bad.mutable_pruning()->set_method(v1::PruningOptions::CLAA);
  bad.mutable_pruning()->set_pruning_layer(4);
  StreamResult r = RunGenerate(server_->stub(), bad);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("pruning.pruning_layer"), std::string::npos);
}

class StoriesServerTest : public ::testing::Test {};

TEST_F(StoriesServerTest, GreedyStreamingMatchesExpectedAndBatchingKeepsIt) {
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  std::ifstream in(model_dir / "expected_greedy.json");
  nlohmann::json expected = nlohmann::json::parse(in);
  std::vector<int32_t> prompt = expected["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> want = expected["generated_ids"].get<std::vector<int32_t>>();

  RunningServer server;
  ASSERT_TRUE(server.Start({"--model=" + model_dir.string()}));
  v1::GenerateRequest req = GreedyIds(prompt, static_cast<int>(want.size()));
  StreamResult r = RunGenerate(server.stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids, want);
  EXPECT_GT(r.chunks, 1) << "tokens should stream, not arrive in one message";
  ASSERT_TRUE(r.complete.has_value());
  EXPECT_EQ(r.complete->finish_reason(), v1::LENGTH);

  // Continuous batching must not change greedy results: run many at once, different lengths.
  constexpr int kConcurrent = 12;
  std::vector<StreamResult> results(kConcurrent);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConcurrent; ++i) {
    threads.emplace_back([&, i] {
      const int n = 20 + 15 * i;
      results[i] = RunGenerate(server.stub(), GreedyIds(prompt, n));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kConcurrent; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    std::vector<int32_t> prefix(want.begin(), want.begin() + (20 + 15 * i));
    EXPECT_EQ(results[i].ids, prefix) << "request " << i;
  }
}

}  // namespace
}  // namespace claa
