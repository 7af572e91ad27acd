// The forward-pass hook: maps captured on a normal pass and replayed with A @ V reproduce the
// pass; the math against the runtime's own attention; prefixes of longer maps; TP splits.
#include "engine/attncache/attention_reuse.h"

#include <cmath>

#include "engine/attncache/fp16.h"
#include "engine/runtime/attention.h"
#include "gtest/gtest.h"
#include "tests/unit/attncache/attncache_test_util.h"

namespace claa::attncache {
namespace {

using ::claa::testing::MakeRunner;
using ::claa::testing::RandomVector;
using ::claa::testing::RelL2;
using ::claa::testing::Tokens;

TEST(Fp16, RoundTripsProbabilities) {
  std::vector<float> x = {0.0f, 1.0f, 0.5f, 1e-3f, 3.14159e-5f, 1e-7f, 0.33333f};
  std::vector<uint16_t> h(x.size());
  std::vector<float> back(x.size());
  FloatToHalf(x.data(), x.size(), h.data());
  HalfToFloat(h.data(), h.size(), back.data());
  EXPECT_EQ(h[1], 0x3C00);  // 1.0
  EXPECT_EQ(back[0], 0.0f);
  EXPECT_EQ(back[1], 1.0f);
  EXPECT_EQ(back[2], 0.5f);
  for (size_t i = 3; i < x.size(); ++i) {
    EXPECT_NEAR(back[i], x[i], std::max(1e-7, 1e-3 * x[i])) << i;
  }
}

// ComputeMaps + ApplyCachedMaps against PagedCausalAttention on the same Q, K, V.
TEST(CachedMaps, MatchTheRuntimeAttention) {
  const int n = 150, heads = 4, kv_heads = 2, d = 16, block = 8;
  PagedKvCache cache(1, (n + block - 1) / block, block, kv_heads, d);
  std::vector<int> blocks;
  for (int b = 0; b < cache.num_blocks(); ++b) blocks.push_back(b);
  std::vector<float> q = RandomVector(size_t(n) * heads * d, 1, 1.5f);
  std::vector<float> k = RandomVector(size_t(n) * kv_heads * d, 2, 1.5f);
  std::vector<float> v = RandomVector(size_t(n) * kv_heads * d, 3);
  for (int t = 0; t < n; ++t) {
    std::copy_n(&k[size_t(t) * kv_heads * d], kv_heads * d, cache.k_slot(0, blocks, t));
    std::copy_n(&v[size_t(t) * kv_heads * d], kv_heads * d, cache.v_slot(0, blocks, t));
  }
  std::vector<float> want(size_t(n) * heads * d), got(want.size());
  AttentionScratch scratch;
  PagedCausalAttention(cache, 0, blocks, 0, q.data(), heads * d, n, heads, want.data(), heads * d,
                       &scratch);

  const MapsShape shape{1, heads, n};
  std::vector<uint16_t> maps(shape.values());
  const PromptQk qk{q.data(), heads * d, k.data(), kv_heads * d, n, heads, kv_heads, d};
  ComputeMaps(qk, 0, 0, shape, maps.data());
  // Every row is a distribution over s <= t.
  for (int t : {0, 1, 77, n - 1}) {
    std::vector<float> row(t + 1);
    HalfToFloat(maps.data() + shape.offset(0, 3) + MapsShape::Triangle(t), t + 1, row.data());
    double sum = 0;
    for (float p : row) sum += p;
    EXPECT_NEAR(sum, 1.0, 2e-3) << t;
  }
  ApplyCachedMaps(MapsView{maps.data(), shape}, 0, 0, heads, kv_heads, d, v.data(), kv_heads * d,
                  n, got.data(), heads * d);
  EXPECT_LT(RelL2(got, want), 2e-3);

  // A prefix of the maps is the map of the prefix.
  const int m = 40;
  std::vector<float> prefix_want(size_t(m) * heads * d), prefix_got(prefix_want.size());
  PagedCausalAttention(cache, 0, blocks, 0, q.data(), heads * d, m, heads, prefix_want.data(),
                       heads * d, &scratch);
  ApplyCachedMaps(MapsView{maps.data(), shape}, 0, 0, heads, kv_heads, d, v.data(), kv_heads * d,
                  m, prefix_got.data(), heads * d);
  EXPECT_LT(RelL2(prefix_got, prefix_want), 2e-3);
}

struct PassResult {
  std::vector<float> logits;
  std::vector<float> hidden;
};

PassResult RunPass(ModelRunner& runner, const std::vector<int32_t>& tokens,
                   AttentionReuse* reuse) {
  SequenceKv kv(runner.config().num_layers);
  EXPECT_TRUE(ReserveTokens(runner.block_manager(), &kv, int(tokens.size())).ok());
  PassResult r;
  ForwardItem item;
  item.kv = &kv;
  item.tokens = tokens;
  item.attention_reuse = reuse;
  item.final_hidden = &r.hidden;
  absl::Status s = runner.Forward({&item, 1}, &r.logits);
  EXPECT_TRUE(s.ok()) << s;
  ReleaseSequence(runner.block_manager(), &kv);
  return r;
}

class ForwardHook : public ::testing::TestWithParam<int> {};

TEST_P(ForwardHook, ReplayedMapsReproduceThePass) {
  const int tp = GetParam();
  auto runner = MakeRunner(tp);
  const ModelConfig& c = runner->config();
  const std::vector<int32_t> tokens = Tokens(60, 11);
  const PassResult plain = RunPass(*runner, tokens, nullptr);
  AttentionCapture capture(c.num_layers, c.num_heads, int(tokens.size()));
  const PassResult captured = RunPass(*runner, tokens, &capture);
  // Capturing does not change the pass.
  EXPECT_EQ(captured.logits, plain.logits);
  EXPECT_EQ(captured.hidden, plain.hidden);
  ASSERT_EQ(plain.hidden.size(), tokens.size() * size_t(c.hidden_size));

  CachedAttention cached(capture.view());
  const PassResult hit = RunPass(*runner, tokens, &cached);
  // fp16 maps: close, not bit-identical.
  EXPECT_LT(RelL2(hit.logits, plain.logits), 5e-3);
  EXPECT_LT(RelL2(hit.hidden, plain.hidden), 5e-3);
  const auto argmax = [](const std::vector<float>& v) {
    return std::max_element(v.begin(), v.end()) - v.begin();
  };
  EXPECT_EQ(argmax(hit.logits), argmax(plain.logits));
  // Replaying is deterministic.
  const PassResult again = RunPass(*runner, tokens, &cached);
  EXPECT_EQ(again.logits, hit.logits);
  EXPECT_EQ(again.hidden, hit.hidden);

  // Maps of a longer input serve its prefix (the first rows of a causal map).
  const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 35);
  const PassResult prefix_plain = RunPass(*runner, prefix, nullptr);
  const PassResult prefix_hit = RunPass(*runner, prefix, &cached);
  EXPECT_LT(RelL2(prefix_hit.logits, prefix_plain.logits), 5e-3);
}

INSTANTIATE_TEST_SUITE_P(Tp, ForwardHook, ::testing::Values(1, 2));

TEST(ForwardHookTp, MapsCapturedWithTwoRanksServeOneRank) {
  auto runner2 = MakeRunner(2);
  auto runner1 = MakeRunner(1);
  const ModelConfig& c = runner1->config();
  const std::vector<int32_t> tokens = Tokens(40, 5);
  AttentionCapture capture(c.num_layers, c.num_heads, int(tokens.size()));
  RunPass(*runner2, tokens, &capture);
  CachedAttention cached(capture.view());
  const PassResult plain = RunPass(*runner1, tokens, nullptr);
  const PassResult hit = RunPass(*runner1, tokens, &cached);
  EXPECT_LT(RelL2(hit.logits, plain.logits), 5e-3);
}

TEST(ForwardHookValidation, RefusesMapsThatDoNotFit) {
  auto runner = MakeRunner(1);
  const ModelConfig& c = runner->config();
  AttentionCapture capture(c.num_layers, c.num_heads, 10);
  CachedAttention cached(capture.view());
  const std::vector<int32_t> tokens = Tokens(11, 3);  // longer than the maps
  SequenceKv kv(c.num_layers);
  ASSERT_TRUE(ReserveTokens(runner->block_manager(), &kv, 11).ok());
  ForwardItem item;
  item.kv = &kv;
  item.tokens = tokens;
  item.attention_reuse = &cached;
  std::vector<float> logits;
  absl::Status s = runner->Forward({&item, 1}, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("cover 10 tokens, the input has 11"), std::string::npos) << s;
  // Refused before any rank started: the runner still works.
  ReleaseSequence(runner->block_manager(), &kv);
  const PassResult ok = RunPass(*runner, Tokens(10, 3), &cached);
  EXPECT_FALSE(ok.logits.empty());
}

}  // namespace
}  // namespace claa::attncache
