// Disaggregated serving as separate processes on loopback: a router, two prefill and two decode
// workers (stories260K) against a --role=all server. Greedy outputs are identical for 200
// concurrent requests of mixed lengths and pruning methods; a decode worker killed mid-stream
// fails only its own requests, clearly; Abort frees blocks on both sides; a CLAA keep-0.2
// handoff moves exactly the compact cache's bytes (over gRPC on the CPU); --kv_transport=nccl
// is refused off a GPU. (The NCCL transport between GPU workers: tests/integration/
// gpu_server_test.cc.)
#include <signal.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/server_fixture.h"
#include "tests/integration/timeout_scale.h"
#include "tests/test_data.h"

namespace claa {
namespace {

using ::claa::testing::Cluster;
using ::claa::testing::RunningServer;
using ::claa::testing::Scaled;

using Result = ::claa::testing::CallOutcome;

Result RunRequest(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                  std::function<void(int)> on_chunk = {}) {
  return ::claa::testing::RunCall(stub, request, std::chrono::seconds(240), on_chunk);
}

v1::GenerateRequest Request(int i) {
  v1::GenerateRequest req;
  req.set_request_id(absl::StrCat("r", i));
  // Mixed prompt lengths (1..~300 tokens) over the 512-token vocabulary.
  const int n = 1 + (i * 37) % 300;
  req.mutable_token_ids()->add_ids(1);
  for (int t = 1; t < n; ++t) req.mutable_token_ids()->add_ids(3 + (t * 13 + i * 7) % 500);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(8 + (i * 11) % 60);
  req.mutable_sampling()->set_ignore_eos(true);
  const v1::PruningOptions::Method methods[] = {v1::PruningOptions::FULL, v1::PruningOptions::CLAA,
                                                v1::PruningOptions::FASTKV,
                                                v1::PruningOptions::GEMFILTER};
  req.mutable_pruning()->set_method(methods[i % 4]);
  req.mutable_pruning()->set_keep_ratio(0.3f);
  return req;
}

// A short prompt with a long generation (stories260K's context is 512 tokens).
v1::GenerateRequest LongRequest(int i, int max_tokens) {
  v1::GenerateRequest req = Request(i);
  req.clear_token_ids();
  req.mutable_token_ids()->add_ids(1);
  for (int t = 1; t < 20 + i; ++t) req.mutable_token_ids()->add_ids(3 + (t * 13 + i * 7) % 500);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  return req;
}

class DisaggTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ::claa::testing::SharedPath("models/stories260K");
    if (!dir) GTEST_SKIP() << "../shared/models/stories260K not found (set CLAA_SHARED_DIR)";
    model_ = dir->string();
  }
  std::string model_;
};

TEST_F(DisaggTest, TwoHundredConcurrentRequestsMatchRoleAll) {
  RunningServer all;
  ASSERT_TRUE(all.Start({"--model=" + model_}));
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(model_));
  constexpr int kRequests = 200;
  std::vector<Result> want(kRequests), got(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      want[i] = RunRequest(all.stub(), Request(i));
      got[i] = RunRequest(cluster.router().stub(), Request(i));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    ASSERT_TRUE(want[i].status.ok()) << want[i].status.error_message();
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    EXPECT_EQ(got[i].ids, want[i].ids);
    ASSERT_TRUE(got[i].complete.has_value());
    EXPECT_EQ(got[i].complete->usage().kept_prompt_tokens(),
              want[i].complete->usage().kept_prompt_tokens());
    const v1::Timing& t = got[i].complete->timing();
    EXPECT_GT(t.ttft_seconds(), 0.0);
    EXPECT_LE(t.prefill_seconds() + t.kv_transfer_seconds(), t.ttft_seconds() + 1e-3);
  }
  // Both workers of each kind took work.
  for (int w = 0; w < 2; ++w) {
    EXPECT_GT(cluster.prefill(w).MetricValue("claa_prompt_tokens_total").value_or(0), 0) << w;
    EXPECT_GT(cluster.decode(w).MetricValue("claa_generation_tokens_total").value_or(0), 0) << w;
  }
  EXPECT_TRUE(cluster.KvUsageDrains());
  EXPECT_GE(cluster.router().MetricValue("claa_kv_transfer_seconds_count").value_or(0),
            double(kRequests));
}

TEST_F(DisaggTest, KilledDecodeWorkerFailsOnlyItsRequestsAndAbortFreesBothSides) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(model_));
  constexpr int kRequests = 12;
  std::vector<Result> results(kRequests);
  std::atomic<int> streaming{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      // Long enough to be mid-stream at the kill.
      results[i] = RunRequest(cluster.router().stub(), LongRequest(i, 400), [&](int n) {
        if (n == 1) ++streaming;
      });
    });
  }
  const auto streaming_by = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(4));
  while (streaming.load() < kRequests && std::chrono::steady_clock::now() < streaming_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  cluster.decode(1).process().Kill(SIGKILL);
  for (auto& t : threads) t.join();
  int failed = 0, finished = 0;
  for (const Result& r : results) {
    if (r.status.ok()) {
      ++finished;
      EXPECT_EQ(r.ids.size(), 400u);
    } else {
      ++failed;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
      EXPECT_NE(r.status.error_message().find("decode worker"), std::string::npos)
          << r.status.error_message();
    }
  }
  EXPECT_GT(failed, 0) << "the killed worker had requests";
  EXPECT_GT(finished, 0) << "the other worker's requests finish";
  EXPECT_TRUE(cluster.KvUsageDrains({0}));

  // New requests go to the surviving decode worker.
  Result after = RunRequest(cluster.router().stub(), Request(3));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();

  // Abort mid-stream: the stream ends with ABORT and both sides free their blocks.
  v1::GenerateRequest long_req = LongRequest(5, 450);
  long_req.set_request_id("to-abort");
  std::atomic<bool> started{false};
  Result aborted;
  std::thread t([&] {
    aborted = RunRequest(cluster.router().stub(), long_req, [&](int) { started = true; });
  });
  const auto started_by = std::chrono::steady_clock::now() + Scaled(std::chrono::seconds(10));
  while (!started.load() && std::chrono::steady_clock::now() < started_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!started.load()) {
    t.join();
    FAIL() << "the request to abort never streamed: " << aborted.status.error_message();
  }
  grpc::ClientContext ctx;
  v1::AbortRequest abort_request;
  abort_request.set_request_id("to-abort");
  v1::AbortResponse abort_response;
  ASSERT_TRUE(cluster.router().stub().Abort(&ctx, abort_request, &abort_response).ok());
  EXPECT_TRUE(abort_response.found());
  t.join();
  ASSERT_TRUE(aborted.status.ok()) << aborted.status.error_message();
  ASSERT_TRUE(aborted.complete.has_value());
  EXPECT_EQ(aborted.complete->finish_reason(), v1::ABORT);
  EXPECT_LT(aborted.ids.size(), 450u);
  EXPECT_TRUE(cluster.KvUsageDrains({0}));
}

TEST_F(DisaggTest, ClaaHandoffMovesTheCompactCacheBytes) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(model_));
  // stories260K: 5 layers, 4 KV heads of 8 dims. CLAA's defaults at 5 layers prune after layer 2
  // with min_layer 0, so every layer keeps ceil(0.2 * 200) = 40 slots.
  v1::GenerateRequest req = Request(0);
  req.clear_token_ids();
  req.mutable_token_ids()->add_ids(1);
  for (int t = 1; t < 200; ++t) req.mutable_token_ids()->add_ids(3 + (t * 29) % 500);
  req.mutable_pruning()->Clear();
  req.mutable_pruning()->set_method(v1::PruningOptions::CLAA);
  req.mutable_pruning()->set_keep_ratio(0.2f);
  Result r = RunRequest(cluster.router().stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.complete->usage().kept_prompt_tokens(), 40u);
  const double compact = 5.0 * 40 * 4 * 8 * 2 * sizeof(float);
  double received = 0, sent = 0;
  for (int w = 0; w < 2; ++w) {
    received += cluster.decode(w).MetricValue("claa_kv_transfer_bytes_total").value_or(0);
    sent += cluster.prefill(w).MetricValue("claa_kv_transfer_bytes_total").value_or(0);
  }
  EXPECT_EQ(received, compact);
  EXPECT_EQ(sent, compact);
  EXPECT_LT(compact, 5.0 * 200 * 4 * 8 * 2 * sizeof(float) / 4);  // a fifth of the full cache
  // CPU workers hand over host-staged, and say so in the metric's transport label.
  const std::string metrics = cluster.decode(0).FetchMetrics() + cluster.decode(1).FetchMetrics();
  EXPECT_NE(metrics.find("transport=\"grpc\""), std::string::npos);
  EXPECT_EQ(metrics.find("transport=\"nccl\""), std::string::npos);
}

// Start-up refusals: an unknown transport, and NCCL for a worker that is not on one GPU.
TEST(DisaggFlags, KvTransportIsChecked) {
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", CLAA_SERVER_BINARY,
                               "--port=0", "--metrics_port=-1"});
    ::claa::testing::ChildProcess p;
    EXPECT_TRUE(p.Start(args));
    std::string out = p.ReadAll();
    return std::make_pair(p.Wait(), out);
  };
  auto [code, out] = run({"--role=decode", "--kv_transport=fast"});
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("--kv_transport must be auto, grpc or nccl"), std::string::npos) << out;
  std::tie(code, out) = run({"--role=prefill", "--device=cpu", "--kv_transport=nccl"});
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("--kv_transport=nccl needs the worker's model on one GPU"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace claa
