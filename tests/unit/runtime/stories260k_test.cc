// The real stories260K model (../shared/models/stories260K): greedy decoding reproduces the
// Hugging Face transformers golden output exactly, at tp=1 and tp=2, and tp=2/4 logits match tp=1.
#include <algorithm>
#include <fstream>
#include <memory>
#include <vector>

#include "engine/model/model_loader.h"
#include "engine/runtime/model_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_data.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

std::unique_ptr<ModelRunner> LoadRunner(const std::filesystem::path& dir, int tp) {
  auto runner = ModelRunner::Create(
      [dir](TpShard shard) { return LoadModelDir(dir, shard); }, tp, RunnerOptions{64, 16});
  EXPECT_TRUE(runner.ok()) << runner.status();
  return runner.ok() ? *std::move(runner) : nullptr;
}

// Feeds the prompt, then decodes `steps` tokens one at a time by argmax (first max wins, as
// torch.argmax does).
std::vector<int32_t> Greedy(ModelRunner& runner, std::vector<int32_t> prompt, int steps) {
  SequenceKv kv(runner.config().num_layers);
  std::vector<int32_t> out;
  std::vector<int32_t> feed = std::move(prompt);
  std::vector<float> logits;
  for (int i = 0; i < steps; ++i) {
    absl::Status s = ReserveTokens(runner.block_manager(), &kv, kv.num_positions + int(feed.size()));
    EXPECT_TRUE(s.ok()) << s;
    ForwardItem item{&kv, feed, kv.num_positions};
    s = runner.Forward({&item, 1}, &logits);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) break;
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    feed = {next};
  }
  ReleaseSequence(runner.block_manager(), &kv);
  return out;
}

class Stories260kTest : public ::testing::TestWithParam<int> {};

TEST_P(Stories260kTest, GreedyMatchesTransformers) {
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  CLAA_REQUIRE_SHARED(golden_path, "models/stories260K/expected_greedy.json");
  std::ifstream in(golden_path);
  const nlohmann::json golden = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(golden.is_discarded()) << "cannot parse " << golden_path;
  const auto prompt = golden.at("prompt_ids").get<std::vector<int32_t>>();
  const auto expected = golden.at("generated_ids").get<std::vector<int32_t>>();
  ASSERT_EQ(expected.size(), 200u);

  auto runner = LoadRunner(model_dir, GetParam());
  ASSERT_NE(runner, nullptr);
  EXPECT_EQ(runner->config().num_layers, 5);
  const auto got = Greedy(*runner, prompt, int(expected.size()));
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], expected[i]) << "first difference at generated token " << i;
  }
  EXPECT_EQ(runner->block_manager().num_used(), 0);
}

INSTANTIATE_TEST_SUITE_P(Tp, Stories260kTest, ::testing::Values(1, 2));

TEST(Stories260kTpTest, LogitsMatchTp1) {
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  // A prompt of 60 tokens, then 5 decode steps; every token's logits in the prefill.
  std::vector<int32_t> prompt(60);
  for (int i = 0; i < 60; ++i) prompt[i] = (i * 37 + 1) % 512;
  auto run = [&](int tp) {
    auto runner = LoadRunner(model_dir, tp);
    std::vector<std::vector<float>> out;
    if (!runner) return out;
    SequenceKv kv(runner->config().num_layers);
    EXPECT_TRUE(ReserveTokens(runner->block_manager(), &kv, 70).ok());
    std::vector<float> logits;
    ForwardItem item{&kv, prompt, 0};
    EXPECT_TRUE(runner->Forward({&item, 1}, &logits, true).ok());
    out.push_back(logits);
    for (int s = 0; s < 5; ++s) {
      std::vector<int32_t> t = {int32_t(100 + s)};
      item = {&kv, t, kv.num_positions};
      EXPECT_TRUE(runner->Forward({&item, 1}, &logits).ok());
      out.push_back(logits);
    }
    return out;
  };
  const auto ref = run(1);
  ASSERT_EQ(ref.size(), 6u);
  for (int tp : {2, 4}) {
    const auto got = run(tp);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_LT(::claa::testing::RelL2(got[i], ref[i]), 1e-5) << "tp=" << tp << " step " << i;
    }
  }
}

}  // namespace
}  // namespace claa
