// claa-server on GPUs (--device=cuda, the CUDA backend loaded with dlopen) against the same
// server on the CPU, over gRPC: stories260K greedy generation on one GPU and tensor-parallel
// over two, concurrent requests, a CLAA-pruned prefill, and the prefill-only RPCs (Score,
// Classify, Embed) with AttnCache on the GPU (an inserting miss, then a hit on the maps it
// stored), and disaggregated serving with prefill and decode workers on GPUs (their KV caches
// handed over GPU to GPU with NCCL between worker processes on one GPU each, through host
// memory at tp 2 and with --kv_transport=grpc). Without the backend library (a build without
// nvcc) or without enough GPUs (CI), each case skips and says why.
//
// Tolerance: the GPU runs bf16 with fp32 accumulation, the CPU fp32, so greedy texts agree until
// a near-tie flips (tests/gpu/gpu_model_check.cc measures logits). The first kMustMatch tokens
// must agree; how many of kTokens do is printed.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "claa/v1/prefill.grpc.pb.h"
#include "engine/gpu/backend_loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/integration/server_fixture.h"
#include "tests/test_data.h"

namespace claa {
namespace {

using ::claa::testing::RunningServer;

constexpr int kTokens = 100;
constexpr int kMustMatch = 8;

using Result = ::claa::testing::CallOutcome;

Result Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& request) {
  return ::claa::testing::RunCall(stub, request, std::chrono::seconds(120));
}

v1::GenerateRequest Greedy(const std::vector<int32_t>& ids, int max_tokens) {
  v1::GenerateRequest req;
  for (int32_t id : ids) req.mutable_token_ids()->add_ids(id);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

int CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int n = 0;
  while (n < int(a.size()) && n < int(b.size()) && a[n] == b[n]) ++n;
  return n;
}

// Why GPU cases cannot run here, or "" when they can: the server finds the backend next to its
// binary, so the check loads that same file.
std::string GpuUnavailable(int gpus) {
  const std::filesystem::path lib =
      std::filesystem::path(CLAA_SERVER_BINARY).parent_path() / gpu::kCudaBackendLibraryName;
  static auto* loaded = new absl::StatusOr<std::unique_ptr<gpu::GpuBackendLibrary>>(
      gpu::GpuBackendLibrary::Load(lib.string(), /*require_device=*/true));
  if (!loaded->ok()) {
    return "no GPU backend: " + std::string(loaded->status().message());
  }
  const int count = (**loaded)->backend().DeviceCount();
  if (count < gpus) {
    return "needs " + std::to_string(gpus) + " GPUs, " + std::to_string(count) + " visible";
  }
  return "";
}

// The CPU server's greedy answer to `prompt`: the reference every GPU case is compared with.
Result CpuGreedy(const std::string& model_dir, const std::vector<int32_t>& prompt) {
  RunningServer cpu;
  if (!cpu.Start({"--model=" + model_dir, "--device=cpu"})) {
    Result failed;
    failed.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the CPU server did not start");
    return failed;
  }
  return Generate(cpu.stub(), Greedy(prompt, kTokens));
}

// Disaggregated workers' GPUs: prefill workers on GPU 0, decode workers on GPU 1 when
// `second_gpu`, else on GPU 0 too.
::claa::testing::Cluster::PerWorkerArgs DecodeOnGpu1(bool second_gpu) {
  return [second_gpu](const std::string& role, int) -> std::vector<std::string> {
    return {"--gpu_device=" + std::string(role == "decode" && second_gpu ? "1" : "0")};
  };
}

// Sum of the samples of metric `name` whose labels contain `label` (e.g. transport="nccl").
double SumSamples(const std::string& text, const std::string& name, const std::string& label) {
  double sum = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + "{", 0) == 0 && line.find(label) != std::string::npos) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

// Beyond the lone greedy request `got` (and the CPU server's `want`): concurrent requests of
// different lengths all finish with their token counts and start like `got` (continuous
// batching), and a CLAA-pruned prefill keeps what the policy says and decodes on.
void ExpectBatchingAndPruning(v1::Generation::Stub& stub, const std::vector<int32_t>& prompt,
                              const Result& got, const Result& want) {
  constexpr int kConcurrent = 8;
  std::vector<Result> results(kConcurrent);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConcurrent; ++i) {
    threads.emplace_back([&, i] { results[i] = Generate(stub, Greedy(prompt, 20 + 10 * i)); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kConcurrent; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].ids.size(), size_t(20 + 10 * i));
    EXPECT_GE(CommonPrefix(results[i].ids, got.ids), kMustMatch) << "request " << i;
  }
  std::vector<int32_t> long_prompt = prompt;
  long_prompt.insert(long_prompt.end(), want.ids.begin(), want.ids.end());
  v1::GenerateRequest pruned = Greedy(long_prompt, 16);
  pruned.mutable_pruning()->set_method(v1::PruningOptions::CLAA);
  pruned.mutable_pruning()->set_keep_ratio(0.5);
  Result p = Generate(stub, pruned);
  ASSERT_TRUE(p.status.ok()) << p.status.error_message();
  ASSERT_TRUE(p.complete.has_value());
  EXPECT_EQ(p.ids.size(), 16u);
  EXPECT_EQ(p.complete->usage().prompt_tokens(), long_prompt.size());
  EXPECT_EQ(p.complete->usage().kept_prompt_tokens(), (long_prompt.size() + 1) / 2);
}

class GpuServerTest : public ::testing::TestWithParam<int> {};

TEST_P(GpuServerTest, Stories260KGreedyMatchesCpuServer) {
  const int tp = GetParam();
  if (std::string why = GpuUnavailable(tp); !why.empty()) {
    GTEST_SKIP() << "GPU server test skipped (" << why << ")";
  }
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  const std::vector<int32_t> prompt = {1};
  Result want = CpuGreedy(model_dir.string(), prompt);
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();

  RunningServer gpu;
  ASSERT_TRUE(gpu.Start({"--model=" + model_dir.string(), "--device=cuda",
                         "--tp=" + std::to_string(tp)}))
      << "claa-server --device=cuda did not start (its stderr says why)";
  Result got = Generate(gpu.stub(), Greedy(prompt, kTokens));
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  ASSERT_EQ(got.ids.size(), size_t(kTokens));
  const int same = CommonPrefix(got.ids, want.ids);
  std::printf("tp=%d: GPU greedy equals the CPU server's for %d of %d tokens\n", tp, same,
              kTokens);
  EXPECT_GE(same, kMustMatch);

  ExpectBatchingAndPruning(gpu.stub(), prompt, got, want);
}

grpc::Status Call(v1::Prefill::Stub& stub, const v1::ScoreRequest& req, v1::ScoreResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  return stub.Score(&ctx, req, resp);
}
grpc::Status Call(v1::Prefill::Stub& stub, const v1::ClassifyRequest& req,
                  v1::ClassifyResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  return stub.Classify(&ctx, req, resp);
}
grpc::Status Call(v1::Prefill::Stub& stub, const v1::EmbedRequest& req, v1::EmbedResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  return stub.Embed(&ctx, req, resp);
}

// Prefill-only RPCs on the GPU with AttnCache: the scores of an uncached (inserting) request
// and of a hit on the maps it stored agree with the CPU server's (bf16 tolerance: stories260K's
// logits move by ~3e-3 relative on the GPU, so a log-probability by a few hundredths), and the
// hit's with the miss's; Classify picks the CPU's label; Embed points the same way.
TEST_P(GpuServerTest, PrefillRpcsWithAttnCacheMatchCpuServer) {
  const int tp = GetParam();
  if (std::string why = GpuUnavailable(tp); !why.empty()) {
    GTEST_SKIP() << "GPU server test skipped (" << why << ")";
  }
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  const std::filesystem::path cache_dir = std::filesystem::temp_directory_path() /
                                          ("claa_gpu_attncache_" + std::to_string(getpid()) +
                                           "_tp" + std::to_string(tp));
  std::filesystem::remove_all(cache_dir);

  RunningServer cpu, gpu;
  ASSERT_TRUE(cpu.Start({"--model=" + model_dir.string(), "--device=cpu"}));
  ASSERT_TRUE(gpu.Start({"--model=" + model_dir.string(), "--device=cuda",
                         "--tp=" + std::to_string(tp), "--attn_cache_dir=" + cache_dir.string()}))
      << "claa-server --device=cuda did not start (its stderr says why)";
  auto cpu_stub = v1::Prefill::NewStub(cpu.channel());
  auto gpu_stub = v1::Prefill::NewStub(gpu.channel());

  v1::ScoreRequest score;
  score.set_text("Once upon a time, there was a little girl named Lily. She loved to play");
  for (const char* c : {" outside", " with her toys", " in the park with her friends"}) {
    score.add_continuations()->set_text(c);
  }
  v1::ScoreResponse want, miss, hit;
  ASSERT_TRUE(Call(*cpu_stub, score, &want).ok());
  score.set_attn_cache(v1::ATTN_CACHE_LOOKUP_AND_INSERT);
  grpc::Status st = Call(*gpu_stub, score, &miss);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(miss.attn_cache().outcome(), v1::AttnCacheResult::MISS);
  EXPECT_GT(miss.attn_cache().inserted(), 0u);
  st = Call(*gpu_stub, score, &hit);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(hit.attn_cache().outcome(), v1::AttnCacheResult::HIT);
  ASSERT_EQ(want.scores_size(), 3);
  ASSERT_EQ(miss.scores_size(), 3);
  ASSERT_EQ(hit.scores_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const double ref = want.scores(i).logprob();
    std::printf("tp=%d continuation %d: logprob CPU %.4f, GPU miss %.4f, GPU hit %.4f\n", tp, i,
                ref, miss.scores(i).logprob(), hit.scores(i).logprob());
    EXPECT_NEAR(miss.scores(i).logprob(), ref, 0.05 + 0.02 * std::fabs(ref)) << i;
    EXPECT_NEAR(hit.scores(i).logprob(), ref, 0.05 + 0.02 * std::fabs(ref)) << i;
    EXPECT_NEAR(hit.scores(i).logprob(), miss.scores(i).logprob(),
                0.05 + 0.02 * std::fabs(ref)) << i;
  }

  v1::ClassifyRequest classify;
  classify.set_text("Lily went to the park. She saw a big dog. The dog was very");
  for (const char* label : {" happy", " sad", " big", " green"}) classify.add_labels(label);
  v1::ClassifyResponse cpu_label, gpu_miss, gpu_hit;
  ASSERT_TRUE(Call(*cpu_stub, classify, &cpu_label).ok());
  classify.set_attn_cache(v1::ATTN_CACHE_LOOKUP_AND_INSERT);
  ASSERT_TRUE(Call(*gpu_stub, classify, &gpu_miss).ok());
  ASSERT_TRUE(Call(*gpu_stub, classify, &gpu_hit).ok());
  EXPECT_EQ(gpu_hit.attn_cache().outcome(), v1::AttnCacheResult::HIT);
  EXPECT_EQ(gpu_miss.label(), cpu_label.label());
  EXPECT_EQ(gpu_hit.label(), cpu_label.label());

  v1::EmbedRequest embed;
  embed.set_text("Tom had a red ball and a blue kite.");
  embed.set_normalize(true);
  v1::EmbedResponse cpu_vec, gpu_vec;
  ASSERT_TRUE(Call(*cpu_stub, embed, &cpu_vec).ok());
  embed.set_attn_cache(v1::ATTN_CACHE_LOOKUP_AND_INSERT);
  ASSERT_TRUE(Call(*gpu_stub, embed, &gpu_vec).ok());
  ASSERT_TRUE(Call(*gpu_stub, embed, &gpu_vec).ok());
  EXPECT_EQ(gpu_vec.attn_cache().outcome(), v1::AttnCacheResult::HIT);
  ASSERT_EQ(gpu_vec.embedding_size(), cpu_vec.embedding_size());
  double dot = 0;
  for (int i = 0; i < cpu_vec.embedding_size(); ++i) {
    dot += cpu_vec.embedding(i) * gpu_vec.embedding(i);
  }
  std::printf("tp=%d: embedding cosine GPU hit vs CPU %.5f\n", tp, dot);
  EXPECT_GT(dot, 0.999);
  std::filesystem::remove_all(cache_dir);
}

// Disaggregated serving on GPUs: a router, two prefill workers on GPU 0 and two decode workers
// on GPU 1 (GPU 0 when there is one; with tp=2 every worker spans both), the KV caches handed
// over with NCCL between single-GPU workers on two GPUs, host-staged otherwise
// (GpuModel::ReadKvSlots / WriteKvSlots). Greedy text as the CPU server's, concurrent requests
// complete, a CLAA-pruned prefill hands over its compact cache, and every worker's KV usage
// drains to zero afterwards.
TEST_P(GpuServerTest, DisaggregatedWorkersOnGpus) {
  const int tp = GetParam();
  if (std::string why = GpuUnavailable(tp); !why.empty()) {
    GTEST_SKIP() << "GPU server test skipped (" << why << ")";
  }
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  const std::vector<int32_t> prompt = {1};
  Result want = CpuGreedy(model_dir.string(), prompt);
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();

  const bool two_gpus = GpuUnavailable(2).empty();
  ::claa::testing::Cluster cluster;
  ASSERT_TRUE(cluster.Start(model_dir.string(), {"--device=cuda", "--tp=" + std::to_string(tp)},
                            {}, DecodeOnGpu1(two_gpus && tp == 1)))
      << "the GPU cluster did not start (the workers' stderr says why)";
  Result got = Generate(cluster.router().stub(), Greedy(prompt, kTokens));
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  ASSERT_EQ(got.ids.size(), size_t(kTokens));
  const int same = CommonPrefix(got.ids, want.ids);
  std::printf("tp=%d disaggregated on GPUs: greedy equals the CPU server's for %d of %d tokens\n",
              tp, same, kTokens);
  EXPECT_GE(same, kMustMatch);

  ExpectBatchingAndPruning(cluster.router().stub(), prompt, got, want);
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1})) << "KV blocks or leases left on a GPU worker";

  // Which transport moved the caches: NCCL between single-GPU workers on two GPUs (the default
  // --kv_transport=auto); host-staged gRPC at tp 2, and on one GPU, where NCCL refuses two
  // ranks on the same device and auto falls back. Bytes sent equal bytes received.
  const std::string nccl = "transport=\"nccl\"", grpc = "transport=\"grpc\"";
  double sent_nccl = 0, got_nccl = 0, got_grpc = 0;
  for (int w = 0; w < 2; ++w) {
    sent_nccl += SumSamples(cluster.prefill(w).FetchMetrics(), "claa_kv_transfer_bytes_total", nccl);
    const std::string d = cluster.decode(w).FetchMetrics();
    got_nccl += SumSamples(d, "claa_kv_transfer_bytes_total", nccl);
    got_grpc += SumSamples(d, "claa_kv_transfer_bytes_total", grpc);
  }
  std::printf("tp=%d disaggregated on GPUs: KV bytes over NCCL %.0f (sent %.0f), over gRPC %.0f\n",
              tp, got_nccl, sent_nccl, got_grpc);
  if (tp == 1 && two_gpus) {
    EXPECT_GT(got_nccl, 0) << "single-GPU workers should hand KV caches over with NCCL";
    EXPECT_EQ(got_grpc, 0) << "no NCCL transfer should have fallen back to gRPC";
    EXPECT_EQ(got_nccl, sent_nccl);
  } else {
    EXPECT_EQ(got_nccl, 0) << "NCCL KV links are for single-GPU workers";
    EXPECT_GT(got_grpc, 0);
  }
}

// --kv_transport=grpc on single-GPU workers keeps the host-staged path, with the same text.
TEST(GpuServerTransport, GrpcTransportOnGpusWhenAsked) {
  if (std::string why = GpuUnavailable(1); !why.empty()) {
    GTEST_SKIP() << "GPU server test skipped (" << why << ")";
  }
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  const std::vector<int32_t> prompt = {1};
  ::claa::testing::Cluster nccl_cluster, grpc_cluster;
  const bool two_gpus = GpuUnavailable(2).empty();
  const auto devices = DecodeOnGpu1(two_gpus);
  ASSERT_TRUE(grpc_cluster.Start(model_dir.string(), {"--device=cuda", "--kv_transport=grpc"}, {},
                                 devices));
  Result got = Generate(grpc_cluster.router().stub(), Greedy(prompt, kTokens));
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  double over_grpc = 0;
  for (int w = 0; w < 2; ++w) {
    over_grpc += SumSamples(grpc_cluster.decode(w).FetchMetrics(), "claa_kv_transfer_bytes_total",
                            "transport=\"grpc\"");
  }
  EXPECT_GT(over_grpc, 0);
  // The same request with NCCL (where there are two GPUs) gives the same text.
  if (two_gpus) {
    ASSERT_TRUE(nccl_cluster.Start(model_dir.string(), {"--device=cuda", "--kv_transport=nccl"},
                                   {}, devices));
    Result again = Generate(nccl_cluster.router().stub(), Greedy(prompt, kTokens));
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.ids, got.ids) << "NCCL and gRPC handoffs should give the same greedy text";
  }
}

INSTANTIATE_TEST_SUITE_P(Tp, GpuServerTest, ::testing::Values(1, 2),
                         [](const auto& info) { return "tp" + std::to_string(info.param); });

}  // namespace
}  // namespace claa
