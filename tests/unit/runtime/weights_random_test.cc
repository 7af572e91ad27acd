// MakeRandomWeights: deterministic, and every tp size slices the same full model.
#include <cmath>
#include <vector>

#include "engine/model/weights.h"
#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

ModelConfig Config() {
  ModelConfig c = ::claa::testing::SmallConfig();
  c.qkv_bias = true;
  c.o_bias = true;
  return c;
}

TEST(ValidateTpShardTest, ChecksRangeAndDivisibility) {
  ModelConfig c = Config();  // 8 heads, 4 kv heads, ffn 96
  EXPECT_TRUE(ValidateTpShard(c, {0, 1}).ok());
  EXPECT_TRUE(ValidateTpShard(c, {3, 4}).ok());
  EXPECT_EQ(ValidateTpShard(c, {0, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateTpShard(c, {2, 2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateTpShard(c, {-1, 2}).code(), absl::StatusCode::kInvalidArgument);
  absl::Status s = ValidateTpShard(c, {0, 8});  // 8 heads ok, 4 kv heads not.
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("num_kv_heads"), std::string::npos) << s;
  s = ValidateTpShard(c, {0, 3});
  EXPECT_NE(s.message().find("num_heads"), std::string::npos) << s;
  c.intermediate_size = 90;
  s = ValidateTpShard(c, {0, 4});
  EXPECT_NE(s.message().find("intermediate_size"), std::string::npos) << s;
}

TEST(MakeRandomWeightsTest, DeterministicAndSeedDependent) {
  ModelWeights a = MakeRandomWeights(Config(), 7, {0, 1});
  ModelWeights b = MakeRandomWeights(Config(), 7, {0, 1});
  ModelWeights c = MakeRandomWeights(Config(), 8, {0, 1});
  EXPECT_EQ(a.embed_tokens, b.embed_tokens);
  EXPECT_EQ(a.layers[2].down_proj, b.layers[2].down_proj);
  EXPECT_NE(a.embed_tokens, c.embed_tokens);
  // Distinct tensors use distinct streams.
  EXPECT_NE(a.layers[0].q_proj[0], a.layers[1].q_proj[0]);
  EXPECT_NE(std::vector<float>(a.layers[0].gate_proj.begin(), a.layers[0].gate_proj.begin() + 10),
            std::vector<float>(a.layers[0].up_proj.begin(), a.layers[0].up_proj.begin() + 10));
}

TEST(MakeRandomWeightsTest, ShapesAndStatistics) {
  ModelConfig cfg = Config();
  ModelWeights w = MakeRandomWeights(cfg, 1, {0, 1}, 0.05f);
  EXPECT_EQ(w.local_heads, 8);
  EXPECT_EQ(w.embed_tokens.size(), size_t(cfg.vocab_size) * cfg.hidden_size);
  EXPECT_EQ(w.lm_head.size(), size_t(cfg.vocab_size) * cfg.hidden_size);
  ASSERT_EQ(w.layers.size(), 3u);
  const LayerWeights& l = w.layers[0];
  EXPECT_EQ(l.q_proj.size(), size_t(8 * 16 * 64));
  EXPECT_EQ(l.k_proj.size(), size_t(4 * 16 * 64));
  EXPECT_EQ(l.o_proj.size(), size_t(64 * 8 * 16));
  EXPECT_EQ(l.q_bias.size(), 128u);
  EXPECT_EQ(l.o_bias.size(), 64u);
  EXPECT_EQ(l.down_proj.size(), size_t(64 * 96));
  double sum = 0, sq = 0;
  for (float x : w.embed_tokens) { sum += x; sq += double(x) * x; }
  const double n = w.embed_tokens.size();
  EXPECT_NEAR(sum / n, 0.0, 0.005);
  EXPECT_NEAR(std::sqrt(sq / n), 0.05, 0.005);
  for (float x : l.input_norm) EXPECT_NEAR(x, 1.0f, 0.6f);
  cfg.tie_word_embeddings = true;
  cfg.qkv_bias = cfg.o_bias = false;
  ModelWeights tied = MakeRandomWeights(cfg, 1, {0, 1});
  EXPECT_TRUE(tied.lm_head.empty());
  EXPECT_TRUE(tied.layers[0].q_bias.empty());
  EXPECT_TRUE(tied.layers[0].o_bias.empty());
  EXPECT_EQ(&tied.LmHead(), &tied.embed_tokens);
}

// Reassembles tp shards into the full tensors and compares with the tp=1 model.
void CheckSlices(int tp) {
  SCOPED_TRACE(tp);
  ModelConfig cfg = Config();
  ModelWeights full = MakeRandomWeights(cfg, 42, {0, 1});
  const int hidden = cfg.hidden_size, d = cfg.head_dim;
  for (int r = 0; r < tp; ++r) {
    ModelWeights s = MakeRandomWeights(cfg, 42, {r, tp});
    EXPECT_EQ(s.local_heads, cfg.num_heads / tp);
    EXPECT_EQ(s.embed_tokens, full.embed_tokens);
    EXPECT_EQ(s.lm_head, full.lm_head);
    EXPECT_EQ(s.final_norm, full.final_norm);
    for (int l = 0; l < cfg.num_layers; ++l) {
      const LayerWeights& a = s.layers[l];
      const LayerWeights& f = full.layers[l];
      EXPECT_EQ(a.input_norm, f.input_norm);
      EXPECT_EQ(a.o_bias, f.o_bias);
      const size_t qn = a.q_proj.size(), kn = a.k_proj.size(), gn = a.gate_proj.size();
      EXPECT_TRUE(std::equal(a.q_proj.begin(), a.q_proj.end(), f.q_proj.begin() + r * qn));
      EXPECT_TRUE(std::equal(a.k_proj.begin(), a.k_proj.end(), f.k_proj.begin() + r * kn));
      EXPECT_TRUE(std::equal(a.v_proj.begin(), a.v_proj.end(), f.v_proj.begin() + r * kn));
      EXPECT_TRUE(std::equal(a.gate_proj.begin(), a.gate_proj.end(), f.gate_proj.begin() + r * gn));
      EXPECT_TRUE(std::equal(a.up_proj.begin(), a.up_proj.end(), f.up_proj.begin() + r * gn));
      EXPECT_TRUE(std::equal(a.q_bias.begin(), a.q_bias.end(),
                             f.q_bias.begin() + r * a.q_bias.size()));
      EXPECT_TRUE(std::equal(a.v_bias.begin(), a.v_bias.end(),
                             f.v_bias.begin() + r * a.v_bias.size()));
      const int oc = s.local_heads * d, fc = cfg.num_heads * d;
      for (int row = 0; row < hidden; ++row) {
        EXPECT_TRUE(std::equal(a.o_proj.begin() + row * oc, a.o_proj.begin() + (row + 1) * oc,
                               f.o_proj.begin() + row * fc + r * oc));
        const int dc = s.local_ffn, dfc = cfg.intermediate_size;
        EXPECT_TRUE(std::equal(a.down_proj.begin() + row * dc,
                               a.down_proj.begin() + (row + 1) * dc,
                               f.down_proj.begin() + row * dfc + r * dc));
      }
    }
  }
}

TEST(MakeRandomWeightsTest, TpShardsSliceTheSameModel) {
  CheckSlices(2);
  CheckSlices(4);
}

}  // namespace
}  // namespace claa
