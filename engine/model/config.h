#ifndef CLAA_ENGINE_MODEL_CONFIG_H_
#define CLAA_ENGINE_MODEL_CONFIG_H_

// Model hyper-parameters read from a Hugging Face config.json.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace claa {

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM.
  std::string model_type;    // "llama", "mistral", "qwen2".
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // hidden_size / num_heads unless config.json says otherwise.
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Bias on q/k/v projections (Qwen2 always; Llama when attention_bias is true).
  bool qkv_bias = false;
  // Bias on o_proj (Llama attention_bias=true only).
  bool o_bias = false;
  bool tie_word_embeddings = false;
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // config.json may give one id or a list.
};

// Parses config.json text; every missing or inconsistent field is an InvalidArgument naming it.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text);
// Reads <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir);

}  // namespace claa

#endif  // CLAA_ENGINE_MODEL_CONFIG_H_
