#include "engine/model/config.h"

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace claa {
namespace {

using json = nlohmann::json;

// Every error names the offending field and where the config came from, so a user pointing the
// server at the wrong directory sees which file and which key to fix.
class ConfigReader {
 public:
  ConfigReader(const json& root, std::string source) : root_(root), source_(std::move(source)) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", field, "' ", what));
  }

  // Present and not null.
  static bool Has(const json& obj, const std::string& key) {
    auto it = obj.find(key);
    return it != obj.end() && !it->is_null();
  }

  // Integer value as int64, or nullopt when it is not an integer or does not fit int64.
  static std::optional<int64_t> Int(const json& v) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    return std::nullopt;
  }

  // Required integer field in [1, INT_MAX].
  absl::StatusOr<int> PositiveInt(const json& obj, const std::string& key,
                                  absl::string_view display) const {
    if (!Has(obj, key)) return Error(display, "is missing");
    std::optional<int64_t> x = Int(obj.at(key));
    if (!x) return Error(display, "must be an integer");
    if (*x <= 0) return Error(display, absl::StrCat("must be positive, got ", *x));
    if (*x > std::numeric_limits<int>::max()) return Error(display, "is too large");
    return static_cast<int>(*x);
  }

  // A token id: integer in [0, INT_MAX].
  absl::StatusOr<int> TokenId(const json& v, absl::string_view display) const {
    std::optional<int64_t> x = Int(v);
    if (!x) return Error(display, "must be an integer, a list of integers or null");
    if (*x < 0 || *x > std::numeric_limits<int>::max()) {
      return Error(display, absl::StrCat("is out of range: ", *x));
    }
    return static_cast<int>(*x);
  }

  absl::StatusOr<double> PositiveNumber(const json& obj, const std::string& key,
                                        absl::string_view display) const {
    if (!Has(obj, key)) return Error(display, "is missing");
    const json& v = obj.at(key);
    if (!v.is_number()) return Error(display, "must be a number");
    double x = v.get<double>();
    if (!std::isfinite(x) || x <= 0) return Error(display, absl::StrCat("must be positive, got ", x));
    return x;
  }

  absl::StatusOr<bool> Bool(const json& obj, const std::string& key, bool default_value) const {
    if (!Has(obj, key)) return default_value;
    const json& v = obj.at(key);
    if (!v.is_boolean()) return Error(key, "must be true or false");
    return v.get<bool>();
  }

  absl::StatusOr<std::string> OptionalString(const json& obj, const std::string& key) const {
    if (!Has(obj, key)) return std::string();
    const json& v = obj.at(key);
    if (!v.is_string()) return Error(key, "must be a string");
    return v.get<std::string>();
  }

  const json& root() const { return root_; }

 private:
  const json& root_;
  std::string source_;
};

struct ArchInfo {
  const char* architecture;
  const char* model_type;
};

constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};

absl::Status ParseArchitecture(const ConfigReader& r, ModelConfig* c) {
  const json& root = r.root();
  CLAA_ASSIGN_OR_RETURN(std::string model_type, r.OptionalString(root, "model_type"));
  std::string arch;
  if (ConfigReader::Has(root, "architectures")) {
    const json& a = root.at("architectures");
    if (!a.is_array()) return r.Error("architectures", "must be a list of strings");
    if (!a.empty()) {
      if (!a[0].is_string()) return r.Error("architectures", "must be a list of strings");
      arch = a[0].get<std::string>();
    }
  }
  // Older or hand-written configs sometimes omit "architectures"; model_type then decides.
  for (const ArchInfo& info : kArchs) {
    if (arch.empty() ? model_type == info.model_type : arch == info.architecture) {
      c->architecture = info.architecture;
      c->model_type = model_type.empty() ? info.model_type : model_type;
      return absl::OkStatus();
    }
  }
  if (!arch.empty()) {
    return r.Error("architectures",
                   absl::StrCat("names unsupported architecture '", arch,
                                "' (supported: LlamaForCausalLM, MistralForCausalLM, "
                                "Qwen2ForCausalLM)"));
  }
  if (model_type.empty()) return r.Error("architectures", "and 'model_type' are both missing");
  return r.Error("model_type", absl::StrCat("names unsupported model type '", model_type,
                                            "' (supported: llama, mistral, qwen2)"));
}

// transformers v5 writes {"rope_parameters": {"rope_theta", "rope_type", "factor", ...}};
// v4 writes top-level "rope_theta" plus an optional "rope_scaling" object. Accept both.
absl::Status ParseRope(const ConfigReader& r, ModelConfig* c) {
  const json& root = r.root();
  const json* params = nullptr;
  std::string params_name;
  if (ConfigReader::Has(root, "rope_parameters")) {
    params = &root.at("rope_parameters");
    params_name = "rope_parameters";
    if (!params->is_object()) return r.Error(params_name, "must be an object or null");
  } else if (ConfigReader::Has(root, "rope_scaling")) {
    params = &root.at("rope_scaling");
    params_name = "rope_scaling";
    if (!params->is_object()) return r.Error(params_name, "must be an object or null");
  }

  if (params != nullptr && ConfigReader::Has(*params, "rope_theta")) {
    CLAA_ASSIGN_OR_RETURN(c->rope_theta,
                          r.PositiveNumber(*params, "rope_theta", params_name + ".rope_theta"));
  } else if (ConfigReader::Has(root, "rope_theta")) {
    CLAA_ASSIGN_OR_RETURN(c->rope_theta, r.PositiveNumber(root, "rope_theta", "rope_theta"));
  }
  if (params == nullptr) return absl::OkStatus();

  // "type" is the pre-4.45 spelling of "rope_type".
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (!ConfigReader::Has(*params, key)) continue;
    const json& v = params->at(key);
    if (!v.is_string()) return r.Error(params_name + "." + key, "must be a string");
    type = v.get<std::string>();
    break;
  }
  RopeScaling& s = c->rope_scaling;
  auto field = [&](const char* key) { return params_name + "." + key; };
  if (type.empty() || type == "default") {
    s = RopeScaling();
  } else if (type == "linear") {
    s.type = RopeScalingType::kLinear;
    CLAA_ASSIGN_OR_RETURN(s.factor, r.PositiveNumber(*params, "factor", field("factor")));
  } else if (type == "llama3") {
    s.type = RopeScalingType::kLlama3;
    CLAA_ASSIGN_OR_RETURN(s.factor, r.PositiveNumber(*params, "factor", field("factor")));
    CLAA_ASSIGN_OR_RETURN(s.low_freq_factor,
                          r.PositiveNumber(*params, "low_freq_factor", field("low_freq_factor")));
    CLAA_ASSIGN_OR_RETURN(
        s.high_freq_factor,
        r.PositiveNumber(*params, "high_freq_factor", field("high_freq_factor")));
    CLAA_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                          r.PositiveInt(*params, "original_max_position_embeddings",
                                        field("original_max_position_embeddings")));
    // The llama3 formula interpolates over (high - low); equal factors would divide by zero.
    if (s.high_freq_factor <= s.low_freq_factor) {
      return r.Error(field("high_freq_factor"), "must be greater than low_freq_factor");
    }
  } else {
    return r.Error(field("rope_type"),
                   absl::StrCat("names unsupported rope type '", type,
                                "' (supported: default, linear, llama3)"));
  }
  return absl::OkStatus();
}

absl::Status ParseTokenIds(const ConfigReader& r, ModelConfig* c) {
  const json& root = r.root();
  if (ConfigReader::Has(root, "bos_token_id")) {
    CLAA_ASSIGN_OR_RETURN(int bos, r.TokenId(root.at("bos_token_id"), "bos_token_id"));
    c->bos_token_id = bos;
  }
  if (ConfigReader::Has(root, "eos_token_id")) {
    const json& eos = root.at("eos_token_id");
    if (eos.is_array()) {
      for (const json& v : eos) {
        CLAA_ASSIGN_OR_RETURN(int id, r.TokenId(v, "eos_token_id"));
        c->eos_token_ids.push_back(id);
      }
    } else {
      CLAA_ASSIGN_OR_RETURN(int id, r.TokenId(eos, "eos_token_id"));
      c->eos_token_ids.push_back(id);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseWithSource(std::string_view json_text, const std::string& source) {
  json root = json::parse(json_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  }
  ConfigReader r(root, source);
  ModelConfig c;
  CLAA_RETURN_IF_ERROR(ParseArchitecture(r, &c));

  CLAA_ASSIGN_OR_RETURN(c.vocab_size, r.PositiveInt(root, "vocab_size", "vocab_size"));
  CLAA_ASSIGN_OR_RETURN(c.hidden_size, r.PositiveInt(root, "hidden_size", "hidden_size"));
  CLAA_ASSIGN_OR_RETURN(c.intermediate_size,
                        r.PositiveInt(root, "intermediate_size", "intermediate_size"));
  CLAA_ASSIGN_OR_RETURN(c.num_layers,
                        r.PositiveInt(root, "num_hidden_layers", "num_hidden_layers"));
  CLAA_ASSIGN_OR_RETURN(c.num_heads,
                        r.PositiveInt(root, "num_attention_heads", "num_attention_heads"));
  c.num_kv_heads = c.num_heads;
  if (ConfigReader::Has(root, "num_key_value_heads")) {
    CLAA_ASSIGN_OR_RETURN(c.num_kv_heads,
                          r.PositiveInt(root, "num_key_value_heads", "num_key_value_heads"));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Error("num_key_value_heads",
                   absl::StrCat("(", c.num_kv_heads, ") must divide num_attention_heads (",
                                c.num_heads, ")"));
  }
  if (ConfigReader::Has(root, "head_dim")) {
    // An explicit head_dim may differ from hidden/heads (transformers honours it as given).
    CLAA_ASSIGN_OR_RETURN(c.head_dim, r.PositiveInt(root, "head_dim", "head_dim"));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return r.Error("hidden_size",
                     absl::StrCat("(", c.hidden_size, ") must be divisible by num_attention_heads (",
                                  c.num_heads, ") when head_dim is not given"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  // RoPE rotates pairs of dimensions.
  if (c.head_dim % 2 != 0) {
    return r.Error("head_dim", absl::StrCat("must be even for rotary embeddings, got ", c.head_dim));
  }
  // Each field fits an int, but loading multiplies them in int64 (weight elements, KV bytes per
  // token); a config whose products could overflow there describes no model that could ever be
  // loaded, so refuse it by name instead of computing garbage sizes.
  constexpr int64_t kMaxProduct = int64_t{1} << 48;
  auto fits = [&](std::initializer_list<int64_t> factors) {
    int64_t product = 1;
    for (int64_t f : factors) {
      if (f > kMaxProduct / product) return false;
      product *= f;
    }
    return true;
  };
  const char* too_large = nullptr;
  if (!fits({c.vocab_size, c.hidden_size})) {
    too_large = "vocab_size x hidden_size";
  } else if (!fits({c.num_heads, c.head_dim, c.hidden_size})) {
    too_large = "num_attention_heads x head_dim x hidden_size";
  } else if (!fits({c.intermediate_size, c.hidden_size})) {
    too_large = "intermediate_size x hidden_size";
  } else if (!fits({2, c.num_layers, c.num_kv_heads, c.head_dim, 4})) {
    too_large = "num_hidden_layers x num_key_value_heads x head_dim";
  }
  if (too_large != nullptr) {
    return r.Error(too_large, "is too large (over 2^48): not the sizes of a real model");
  }
  CLAA_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        r.PositiveInt(root, "max_position_embeddings", "max_position_embeddings"));
  if (ConfigReader::Has(root, "rms_norm_eps")) {
    CLAA_ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumber(root, "rms_norm_eps", "rms_norm_eps"));
  }
  CLAA_RETURN_IF_ERROR(ParseRope(r, &c));

  // The engine implements SwiGLU MLPs without bias only; refuse rather than compute garbage.
  CLAA_ASSIGN_OR_RETURN(std::string act, r.OptionalString(root, "hidden_act"));
  if (!act.empty() && act != "silu") {
    return r.Error("hidden_act", absl::StrCat("'", act, "' is not supported (only silu)"));
  }
  CLAA_ASSIGN_OR_RETURN(bool mlp_bias, r.Bool(root, "mlp_bias", false));
  if (mlp_bias) return r.Error("mlp_bias", "true is not supported");

  if (c.architecture == std::string("Qwen2ForCausalLM")) {
    // Qwen2 hard-codes bias on q/k/v and none on o_proj, whatever the config says.
    c.qkv_bias = true;
    c.o_bias = false;
    // Sliding-window layers would need a different attention mask; full attention is not an
    // approximation of them, so refuse instead of serving subtly wrong logits.
    CLAA_ASSIGN_OR_RETURN(bool swa, r.Bool(root, "use_sliding_window", false));
    if (swa) return r.Error("use_sliding_window", "true is not supported");
  } else if (c.architecture == std::string("LlamaForCausalLM")) {
    CLAA_ASSIGN_OR_RETURN(bool bias, r.Bool(root, "attention_bias", false));
    c.qkv_bias = bias;
    c.o_bias = bias;
  }  // Mistral has no attention bias.

  CLAA_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool(root, "tie_word_embeddings", false));
  CLAA_RETURN_IF_ERROR(ParseTokenIds(r, &c));
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  return ParseWithSource(json_text, "config.json");
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", model_dir.string(), " does not exist"));
  }
  const std::filesystem::path path = model_dir / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open (missing?)"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return ParseWithSource(text.str(), path.string());
}

}  // namespace claa
