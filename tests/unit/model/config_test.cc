#include "engine/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_data.h"
#include "tests/unit/model/safetensors_test_util.h"

namespace claa {
namespace {

using ::claa::testing::ScopedTempDir;
using ::claa::testing::WriteBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A minimal valid Llama config; tests edit it.
json BaseConfig() {
  return {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", 32},
      {"hidden_size", 64},
      {"intermediate_size", 128},
      {"num_hidden_layers", 2},
      {"num_attention_heads", 8},
      {"max_position_embeddings", 256},
  };
}

absl::StatusOr<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump()); }

void ExpectInvalid(const json& j, const std::string& needle) {
  auto c = Parse(j);
  ASSERT_FALSE(c.ok()) << "expected an error mentioning " << needle;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(c.status()), HasSubstr(needle));
}

TEST(ModelConfigTest, MinimalLlamaDefaults) {
  auto c = Parse(BaseConfig());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 32);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 128);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 8);  // defaults to num_attention_heads
  EXPECT_EQ(c->head_dim, 8);      // hidden / heads
  EXPECT_EQ(c->max_position_embeddings, 256);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->bos_token_id.has_value());
  EXPECT_TRUE(c->eos_token_ids.empty());
}

TEST(ModelConfigTest, Llama31StyleRopeScaling) {
  json j = BaseConfig();
  j["num_key_value_heads"] = 2;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192},
                       {"rope_type", "llama3"}};
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = {128001, 128008, 128009};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
}

TEST(ModelConfigTest, RopeParametersV5) {
  json j = BaseConfig();
  j["rope_parameters"] = {{"rope_theta", 500000.0},
                          {"rope_type", "llama3"},
                          {"factor", 32.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 32.0);
}

TEST(ModelConfigTest, RopeParametersDefaultType) {
  json j = BaseConfig();
  j["rope_parameters"] = {{"rope_theta", 1234.5}, {"rope_type", "default"}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 1234.5);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
}

TEST(ModelConfigTest, LinearRopeScalingWithLegacyTypeKey) {
  json j = BaseConfig();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
}

TEST(ModelConfigTest, NullRopeScalingAndNullHeadDim) {
  json j = BaseConfig();
  j["rope_scaling"] = nullptr;
  j["head_dim"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  j["eos_token_id"] = nullptr;
  j["bos_token_id"] = nullptr;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_FALSE(c->bos_token_id.has_value());
}

TEST(ModelConfigTest, ExplicitHeadDimMayDifferFromHiddenOverHeads) {
  json j = BaseConfig();
  j["num_attention_heads"] = 4;
  j["head_dim"] = 32;  // 4 * 32 = 128 != hidden 64
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32);
}

TEST(ModelConfigTest, SingleEosId) {
  json j = BaseConfig();
  j["eos_token_id"] = 2;
  j["bos_token_id"] = 1;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c->bos_token_id, 1);
}

TEST(ModelConfigTest, Qwen2AlwaysHasQkvBiasNoOBias) {
  json j = BaseConfig();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["tie_word_embeddings"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, LlamaAttentionBias) {
  json j = BaseConfig();
  j["attention_bias"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->o_bias);
}

TEST(ModelConfigTest, Mistral) {
  json j = BaseConfig();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "MistralForCausalLM");
  EXPECT_FALSE(c->qkv_bias);
}

TEST(ModelConfigTest, FallsBackToModelType) {
  json j = BaseConfig();
  j.erase("architectures");
  j["model_type"] = "qwen2";
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(c->qkv_bias);
}

TEST(ModelConfigTest, SharedStories260K) {
  CLAA_REQUIRE_SHARED(dir, "models/stories260K");
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
}

// --- Bad configs: one test per defect. ---

TEST(ModelConfigErrorTest, MissingField) {
  json j = BaseConfig();
  j.erase("hidden_size");
  ExpectInvalid(j, "hidden_size");
}

TEST(ModelConfigErrorTest, MissingMaxPositionEmbeddings) {
  json j = BaseConfig();
  j.erase("max_position_embeddings");
  ExpectInvalid(j, "max_position_embeddings");
}

TEST(ModelConfigErrorTest, HeadsNotDivisibleByKvHeads) {
  json j = BaseConfig();
  j["num_key_value_heads"] = 3;
  ExpectInvalid(j, "num_key_value_heads");
}

TEST(ModelConfigErrorTest, HiddenNotDivisibleByHeads) {
  json j = BaseConfig();
  j["num_attention_heads"] = 6;
  ExpectInvalid(j, "hidden_size");
}

TEST(ModelConfigErrorTest, OddHeadDim) {
  json j = BaseConfig();
  j["head_dim"] = 7;
  ExpectInvalid(j, "head_dim");
}

TEST(ModelConfigErrorTest, UnknownRopeType) {
  json j = BaseConfig();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectInvalid(j, "yarn");
}

TEST(ModelConfigErrorTest, UnknownRopeTypeInRopeParameters) {
  json j = BaseConfig();
  j["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "dynamic"}, {"factor", 2.0}};
  ExpectInvalid(j, "dynamic");
}

TEST(ModelConfigErrorTest, Llama3RopeMissingFactor) {
  json j = BaseConfig();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  ExpectInvalid(j, "rope_scaling.factor");
}

TEST(ModelConfigErrorTest, NonPositiveSize) {
  json j = BaseConfig();
  j["vocab_size"] = 0;
  ExpectInvalid(j, "vocab_size");
  j["vocab_size"] = -5;
  ExpectInvalid(j, "vocab_size");
}

TEST(ModelConfigErrorTest, WrongType) {
  json j = BaseConfig();
  j["num_hidden_layers"] = "2";
  ExpectInvalid(j, "num_hidden_layers");
  j = BaseConfig();
  j["num_hidden_layers"] = 2.5;
  ExpectInvalid(j, "num_hidden_layers");
  j = BaseConfig();
  j["rope_theta"] = "big";
  ExpectInvalid(j, "rope_theta");
  j = BaseConfig();
  j["tie_word_embeddings"] = 1;
  ExpectInvalid(j, "tie_word_embeddings");
  j = BaseConfig();
  j["eos_token_id"] = "</s>";
  ExpectInvalid(j, "eos_token_id");
}

TEST(ModelConfigErrorTest, UnsupportedArchitecture) {
  json j = BaseConfig();
  j["architectures"] = {"GPT2LMHeadModel"};
  ExpectInvalid(j, "GPT2LMHeadModel");
}

TEST(ModelConfigErrorTest, NoArchitectureNorModelType) {
  json j = BaseConfig();
  j.erase("architectures");
  j.erase("model_type");
  ExpectInvalid(j, "architectures");
}

TEST(ModelConfigErrorTest, UnsupportedActivation) {
  json j = BaseConfig();
  j["hidden_act"] = "gelu";
  ExpectInvalid(j, "hidden_act");
}

TEST(ModelConfigErrorTest, Qwen2SlidingWindowUnsupported) {
  json j = BaseConfig();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["use_sliding_window"] = true;
  ExpectInvalid(j, "use_sliding_window");
}

TEST(ModelConfigErrorTest, NotJson) {
  auto c = ParseModelConfig("{\"vocab_size\": ");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(c.status()), HasSubstr("JSON"));
  c = ParseModelConfig("[1, 2]");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigErrorTest, LoadNamesTheFile) {
  ScopedTempDir tmp;
  json j = BaseConfig();
  j["num_key_value_heads"] = 3;
  WriteBytes(tmp.path() / "config.json", j.dump());
  auto c = LoadModelConfig(tmp.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(c.status()), HasSubstr((tmp.path() / "config.json").string()));
  EXPECT_THAT(Msg(c.status()), HasSubstr("num_key_value_heads"));
}

TEST(ModelConfigErrorTest, MissingConfigJson) {
  ScopedTempDir tmp;
  auto c = LoadModelConfig(tmp.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(c.status()), HasSubstr("config.json"));
}

TEST(ModelConfigErrorTest, MissingDirectory) {
  ScopedTempDir tmp;
  auto c = LoadModelConfig(tmp.path() / "absent");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(c.status()), HasSubstr("absent"));
}

}  // namespace
}  // namespace claa
