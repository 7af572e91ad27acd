#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/model_loader.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_data.h"
#include "tests/unit/model/safetensors_test_util.h"

namespace claa {
namespace {

using ::claa::testing::ScopedTempDir;
using ::claa::testing::TinyModelSpec;
using ::claa::testing::TinyModelTensors;
using ::claa::testing::TinyTensor;
using ::claa::testing::WriteTinyModel;
using ::testing::HasSubstr;

using TensorMap = std::map<std::string, TinyTensor>;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Rows [b, e) of a row-major matrix with `cols` columns.
std::vector<float> Rows(const TinyTensor& t, int64_t b, int64_t e) {
  const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
  return std::vector<float>(t.values.begin() + b * cols, t.values.begin() + e * cols);
}

// Columns [b, e) of a row-major 2-D matrix.
std::vector<float> Cols(const TinyTensor& t, int64_t b, int64_t e) {
  std::vector<float> out;
  for (int64_t r = 0; r < t.shape[0]; ++r) {
    for (int64_t c = b; c < e; ++c) out.push_back(t.values[r * t.shape[1] + c]);
  }
  return out;
}

std::string L(int i, const std::string& suffix) {
  return "model.layers." + std::to_string(i) + "." + suffix;
}

// Checks every tensor of `w` (rank shard.rank of shard.size) against the full tensors.
void ExpectMatchesFull(const ModelWeights& w, const TensorMap& full, const TinyModelSpec& s) {
  const int tp = w.shard.size, r = w.shard.rank;
  const int hd = s.hidden / s.heads;
  const int qh = s.heads / tp * hd, kvh = s.kv_heads / tp * hd, f = s.ffn / tp;
  EXPECT_EQ(w.embed_tokens, full.at("model.embed_tokens.weight").values);
  EXPECT_EQ(w.final_norm, full.at("model.norm.weight").values);
  if (s.tie) {
    EXPECT_TRUE(w.lm_head.empty());
    EXPECT_EQ(&w.LmHead(), &w.embed_tokens);
  } else {
    EXPECT_EQ(w.lm_head, full.at("lm_head.weight").values);
  }
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(s.layers));
  for (int i = 0; i < s.layers; ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const LayerWeights& l = w.layers[i];
    EXPECT_EQ(l.input_norm, full.at(L(i, "input_layernorm.weight")).values);
    EXPECT_EQ(l.post_attention_norm, full.at(L(i, "post_attention_layernorm.weight")).values);
    EXPECT_EQ(l.q_proj, Rows(full.at(L(i, "self_attn.q_proj.weight")), r * qh, (r + 1) * qh));
    EXPECT_EQ(l.k_proj, Rows(full.at(L(i, "self_attn.k_proj.weight")), r * kvh, (r + 1) * kvh));
    EXPECT_EQ(l.v_proj, Rows(full.at(L(i, "self_attn.v_proj.weight")), r * kvh, (r + 1) * kvh));
    EXPECT_EQ(l.o_proj, Cols(full.at(L(i, "self_attn.o_proj.weight")), r * qh, (r + 1) * qh));
    EXPECT_EQ(l.gate_proj, Rows(full.at(L(i, "mlp.gate_proj.weight")), r * f, (r + 1) * f));
    EXPECT_EQ(l.up_proj, Rows(full.at(L(i, "mlp.up_proj.weight")), r * f, (r + 1) * f));
    EXPECT_EQ(l.down_proj, Cols(full.at(L(i, "mlp.down_proj.weight")), r * f, (r + 1) * f));
    if (w.config.qkv_bias) {
      EXPECT_EQ(l.q_bias, Rows(full.at(L(i, "self_attn.q_proj.bias")), r * qh, (r + 1) * qh));
      EXPECT_EQ(l.k_bias, Rows(full.at(L(i, "self_attn.k_proj.bias")), r * kvh, (r + 1) * kvh));
      EXPECT_EQ(l.v_bias, Rows(full.at(L(i, "self_attn.v_proj.bias")), r * kvh, (r + 1) * kvh));
    } else {
      EXPECT_TRUE(l.q_bias.empty() && l.k_bias.empty() && l.v_bias.empty());
    }
    if (w.config.o_bias) {
      EXPECT_EQ(l.o_bias, full.at(L(i, "self_attn.o_proj.bias")).values);
    } else {
      EXPECT_TRUE(l.o_bias.empty());
    }
  }
}

// Writes the tiny model into a fresh temp dir and loads it.
struct Fixture {
  ScopedTempDir tmp;
  TensorMap full;
};

absl::StatusOr<ModelWeights> WriteAndLoad(Fixture& f, const TinyModelSpec& s, TpShard shard = {},
                                          int num_shards = 1) {
  WriteTinyModel(f.tmp.path(), s, f.full, num_shards);
  return LoadModelDir(f.tmp.path(), shard);
}

TEST(WeightsLoaderTest, LoadsFullModelF32) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  auto w = WriteAndLoad(f, s);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->local_heads, 4);
  EXPECT_EQ(w->local_kv_heads, 2);
  EXPECT_EQ(w->local_ffn, 12);
  ExpectMatchesFull(*w, f.full, s);
}

TEST(WeightsLoaderTest, F16AndBF16LoadLikeF32) {
  for (const char* dtype : {"F16", "BF16"}) {
    SCOPED_TRACE(dtype);
    TinyModelSpec s;
    s.dtype = dtype;
    Fixture f;
    f.full = TinyModelTensors(s);
    auto w = WriteAndLoad(f, s);
    ASSERT_TRUE(w.ok()) << w.status();
    ExpectMatchesFull(*w, f.full, s);  // Values are exact in every dtype.
  }
}

TEST(WeightsLoaderTest, TiedEmbeddingsWithoutLmHead) {
  TinyModelSpec s;
  s.tie = true;
  Fixture f;
  f.full = TinyModelTensors(s);
  ASSERT_EQ(f.full.count("lm_head.weight"), 0u);
  auto w = WriteAndLoad(f, s);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectMatchesFull(*w, f.full, s);
}

TEST(WeightsLoaderTest, ShardedEqualsSingleFile) {
  TinyModelSpec s;
  s.dtype = "BF16";
  Fixture single, sharded;
  single.full = sharded.full = TinyModelTensors(s);
  auto a = WriteAndLoad(single, s);
  auto b = WriteAndLoad(sharded, s, {}, /*num_shards=*/3);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(std::filesystem::exists(sharded.tmp.path() / "model-00003-of-00003.safetensors"));
  EXPECT_EQ(a->embed_tokens, b->embed_tokens);
  EXPECT_EQ(a->lm_head, b->lm_head);
  EXPECT_EQ(a->final_norm, b->final_norm);
  for (int i = 0; i < s.layers; ++i) {
    EXPECT_EQ(a->layers[i].q_proj, b->layers[i].q_proj);
    EXPECT_EQ(a->layers[i].o_proj, b->layers[i].o_proj);
    EXPECT_EQ(a->layers[i].down_proj, b->layers[i].down_proj);
  }
  ExpectMatchesFull(*b, sharded.full, s);
}

TEST(WeightsLoaderTest, TensorParallelSlices) {
  TinyModelSpec s;
  s.attention_bias = true;  // also slice q/k/v biases; o bias stays whole
  Fixture f;
  f.full = TinyModelTensors(s);
  testing::WriteTinyModel(f.tmp.path(), s, f.full);
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto w = LoadModelDir(f.tmp.path(), TpShard{rank, 2});
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->local_heads, 2);
    EXPECT_EQ(w->local_kv_heads, 1);
    EXPECT_EQ(w->local_ffn, 6);
    EXPECT_EQ(w->layers[0].q_proj.size(), 2u * 2 * 8);  // local_heads * head_dim x hidden
    EXPECT_EQ(w->layers[0].k_proj.size(), 1u * 2 * 8);
    EXPECT_EQ(w->layers[0].o_proj.size(), 8u * 2 * 2);
    EXPECT_EQ(w->layers[0].down_proj.size(), 8u * 6);
    ExpectMatchesFull(*w, f.full, s);
  }
}

TEST(WeightsLoaderTest, Qwen2Biases) {
  TinyModelSpec s;
  s.architecture = "Qwen2ForCausalLM";
  s.model_type = "qwen2";
  s.tie = true;
  Fixture f;
  f.full = TinyModelTensors(s);
  auto w = WriteAndLoad(f, s, TpShard{1, 2});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->config.qkv_bias);
  EXPECT_FALSE(w->config.o_bias);
  EXPECT_EQ(w->layers[1].q_bias.size(), 4u);
  EXPECT_EQ(w->layers[1].k_bias.size(), 2u);
  ExpectMatchesFull(*w, f.full, s);
}

TEST(WeightsLoaderTest, StoredLmHeadIgnoredWhenTied) {
  TinyModelSpec s;  // writes lm_head.weight ...
  Fixture f;
  f.full = TinyModelTensors(s);
  s.tie = true;  // ... but config.json says tied, as transformers would honour.
  auto w = WriteAndLoad(f, s);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->lm_head.empty());
}

// --- Malformed checkpoints: one test per defect. ---

TEST(WeightsLoaderErrorTest, MissingLmHeadWhenNotTied) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  f.full.erase("lm_head.weight");
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(w.status()), HasSubstr("lm_head.weight"));
  EXPECT_THAT(Msg(w.status()), HasSubstr("tie_word_embeddings"));
}

TEST(WeightsLoaderErrorTest, MissingTensor) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  f.full.erase(L(1, "mlp.up_proj.weight"));
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(w.status()), HasSubstr(L(1, "mlp.up_proj.weight")));
}

TEST(WeightsLoaderErrorTest, MissingBiasForQwen2) {
  TinyModelSpec s;
  s.architecture = "Qwen2ForCausalLM";
  s.model_type = "qwen2";
  Fixture f;
  f.full = TinyModelTensors(s);
  f.full.erase(L(0, "self_attn.k_proj.bias"));
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(w.status()), HasSubstr(L(0, "self_attn.k_proj.bias")));
}

TEST(WeightsLoaderErrorTest, VocabMismatch) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  s.vocab = 20;  // config.json disagrees with the 16-row embedding
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(w.status()), HasSubstr("vocab mismatch"));
  EXPECT_THAT(Msg(w.status()), HasSubstr("model.embed_tokens.weight"));
}

TEST(WeightsLoaderErrorTest, LmHeadVocabMismatch) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  TinyTensor& head = f.full.at("lm_head.weight");
  head.shape[0] = 15;
  head.values.resize(15 * 8);
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(w.status()), HasSubstr("vocab mismatch"));
  EXPECT_THAT(Msg(w.status()), HasSubstr("lm_head.weight"));
}

TEST(WeightsLoaderErrorTest, ShapeMismatchVsConfig) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  s.kv_heads = 4;  // config now expects k_proj [8, 8]; the file has [4, 8]
  auto w = WriteAndLoad(f, s);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(w.status()), HasSubstr(L(0, "self_attn.k_proj.weight")));
  EXPECT_THAT(Msg(w.status()), HasSubstr("expected shape [8, 8], got [4, 8]"));
}

TEST(WeightsLoaderErrorTest, TruncatedWeightsFile) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  WriteTinyModel(f.tmp.path(), s, f.full);
  const auto path = f.tmp.path() / "model.safetensors";
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  auto w = LoadModelDir(f.tmp.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(w.status()), HasSubstr("out of range"));
}

TEST(WeightsLoaderErrorTest, MissingConfigJson) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  WriteTinyModel(f.tmp.path(), s, f.full);
  std::filesystem::remove(f.tmp.path() / "config.json");
  auto w = LoadModelDir(f.tmp.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(w.status()), HasSubstr("config.json"));
}

TEST(WeightsLoaderErrorTest, MissingWeightsFile) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  WriteTinyModel(f.tmp.path(), s, f.full);
  std::filesystem::remove(f.tmp.path() / "model.safetensors");
  auto w = LoadModelDir(f.tmp.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
}

TEST(WeightsLoaderErrorTest, MissingModelDirectory) {
  ScopedTempDir tmp;
  auto w = LoadModelDir(tmp.path() / "nothing_here");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(w.status()), HasSubstr("nothing_here"));
}

TEST(WeightsLoaderErrorTest, TpSizeNotDividingHeads) {
  TinyModelSpec s;
  Fixture f;
  f.full = TinyModelTensors(s);
  auto w = WriteAndLoad(f, s, TpShard{0, 3});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
}

// --- The real TinyStories checkpoint in ../shared. ---

TEST(WeightsLoaderSharedTest, Stories260K) {
  CLAA_REQUIRE_SHARED(dir, "models/stories260K");
  auto w = LoadModelDir(dir);
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = w->config;
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(w->embed_tokens.size(), 512u * 64);
  EXPECT_TRUE(w->lm_head.empty());
  EXPECT_EQ(w->LmHead().size(), 512u * 64);
  EXPECT_EQ(w->final_norm.size(), 64u);
  ASSERT_EQ(w->layers.size(), 5u);
  const LayerWeights& l = w->layers[4];
  EXPECT_EQ(l.q_proj.size(), 64u * 64);
  EXPECT_EQ(l.k_proj.size(), 32u * 64);
  EXPECT_EQ(l.v_proj.size(), 32u * 64);
  EXPECT_EQ(l.o_proj.size(), 64u * 64);
  EXPECT_EQ(l.gate_proj.size(), 172u * 64);
  EXPECT_EQ(l.up_proj.size(), 172u * 64);
  EXPECT_EQ(l.down_proj.size(), 64u * 172);
  EXPECT_TRUE(l.q_bias.empty());
  for (float v : {w->embed_tokens.front(), w->embed_tokens.back(), w->final_norm[0],
                  l.down_proj.back(), l.q_proj[123]}) {
    EXPECT_TRUE(std::isfinite(v));
  }
  double sum_abs = 0;
  for (float v : w->embed_tokens) sum_abs += std::fabs(v);
  EXPECT_GT(sum_abs, 0.0);  // a trained model, not zeros
}

TEST(WeightsLoaderSharedTest, Stories260KTensorParallelMatchesFull) {
  CLAA_REQUIRE_SHARED(dir, "models/stories260K");
  auto full = LoadModelDir(dir);
  auto r1 = LoadModelDir(dir, TpShard{1, 2});
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->local_heads, 4);
  EXPECT_EQ(r1->local_kv_heads, 2);
  EXPECT_EQ(r1->local_ffn, 86);
  // Rank 1's k_proj is the second half of the full rows (KV heads 2..3).
  const auto& fk = full->layers[0].k_proj;
  EXPECT_EQ(r1->layers[0].k_proj, std::vector<float>(fk.begin() + 16 * 64, fk.end()));
  // Rank 1's down_proj holds columns 86..171 of each of the 64 rows.
  const auto& fd = full->layers[2].down_proj;
  const auto& rd = r1->layers[2].down_proj;
  ASSERT_EQ(rd.size(), 64u * 86);
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 86; ++c) ASSERT_EQ(rd[r * 86 + c], fd[r * 172 + 86 + c]);
  }
}

}  // namespace
}  // namespace claa
