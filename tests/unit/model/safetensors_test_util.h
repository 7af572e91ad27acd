#ifndef CLAA_TESTS_UNIT_MODEL_SAFETENSORS_TEST_UTIL_H_
#define CLAA_TESTS_UNIT_MODEL_SAFETENSORS_TEST_UTIL_H_

// Writes small synthetic safetensors files and Hugging Face model directories for tests,
// including deliberately corrupted variants (wrong offsets, dtypes, header lengths).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace claa::testing {

struct FakeTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16" or anything else, to test rejection.
  std::vector<int64_t> shape;
  std::string bytes;  // Raw little-endian element data.
  // Overrides the data_offsets that SerializeSafetensors would compute.
  std::optional<std::pair<int64_t, int64_t>> offsets;
};

struct SerializeOptions {
  // Pad the header with spaces to a multiple of 8, as the reference writer does. Turn off to
  // get unaligned tensor data.
  bool pad_header = true;
  // Extra bytes of spaces appended to the header (before padding), to shift alignment.
  int extra_header_spaces = 0;
  // Overrides the 8-byte header length prefix.
  std::optional<uint64_t> header_len;
};

inline std::string F32Bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

inline std::string U16Bytes(const std::vector<uint16_t>& v) {
  std::string s(v.size() * 2, '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// Exact for values representable in bfloat16 (the tests use only those).
inline uint16_t FloatToBf16Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);
}

// Exact for zero and normal values representable in binary16 (the tests use only those).
inline uint16_t FloatToF16Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  if ((bits & 0x7fffffffu) == 0) return sign;
  const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>(sign | (exp << 10) | ((bits >> 13) & 0x3ffu));
}

// Encodes fp32 values as `dtype` ("F32", "F16" or "BF16").
inline std::string EncodeAs(const std::string& dtype, const std::vector<float>& v) {
  if (dtype == "F32") return F32Bytes(v);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    h[i] = dtype == "F16" ? FloatToF16Bits(v[i]) : FloatToBf16Bits(v[i]);
  }
  return U16Bytes(h);
}

// A tensor with raw bytes, which need not agree with dtype and shape.
inline FakeTensor RawTensor(const std::string& name, const std::string& dtype,
                            std::vector<int64_t> shape, std::string bytes) {
  return FakeTensor{name, dtype, std::move(shape), std::move(bytes), std::nullopt};
}

inline FakeTensor MakeTensor(const std::string& name, const std::string& dtype,
                             std::vector<int64_t> shape, const std::vector<float>& values) {
  return FakeTensor{name, dtype, std::move(shape), EncodeAs(dtype, values), std::nullopt};
}

inline std::string SerializeSafetensors(const std::vector<FakeTensor>& tensors,
                                        const SerializeOptions& opt = {}) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const FakeTensor& t : tensors) {
    int64_t begin = static_cast<int64_t>(data.size());
    data += t.bytes;
    int64_t end = static_cast<int64_t>(data.size());
    if (t.offsets) std::tie(begin, end) = *t.offsets;
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, end}}};
  }
  std::string h = header.dump();
  h.append(opt.extra_header_spaces, ' ');
  if (opt.pad_header) h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t len = opt.header_len.value_or(h.size());
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + h + data;
}

inline void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// A fresh directory under the system temp dir, removed with its contents on destruction.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "claa_model_test_XXXXXX").string();
    if (char* p = ::mkdtemp(tmpl.data()); p != nullptr) path_ = p;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A tiny Llama/Mistral/Qwen2-shaped model with deterministic weights.
struct TinyModelSpec {
  std::string architecture = "LlamaForCausalLM";
  std::string model_type = "llama";
  int vocab = 16;
  int hidden = 8;
  int ffn = 12;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  bool tie = false;
  bool attention_bias = false;  // Llama only; Qwen2 always has q/k/v bias.
  std::string dtype = "F32";
};

inline std::string TinyConfigJson(const TinyModelSpec& s) {
  nlohmann::json j = {
      {"architectures", {s.architecture}},
      {"model_type", s.model_type},
      {"vocab_size", s.vocab},
      {"hidden_size", s.hidden},
      {"intermediate_size", s.ffn},
      {"num_hidden_layers", s.layers},
      {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads},
      {"max_position_embeddings", 128},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"attention_bias", s.attention_bias},
      {"tie_word_embeddings", s.tie},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  return j.dump(2);
}

// Values k/16 with |k| <= 30: exact in F32, F16 and BF16, so every dtype loads identically.
inline std::vector<float> TinyValues(size_t count, uint64_t salt) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (salt * 0xBF58476D1CE4E5B9ull);
    x ^= x >> 31;
    v[i] = static_cast<float>(static_cast<int>(x % 61) - 30) / 16.0f;
  }
  return v;
}

// Full (unsharded) tensors of the tiny model, by HF name, with their shapes.
struct TinyTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

inline std::map<std::string, TinyTensor> TinyModelTensors(const TinyModelSpec& s) {
  const int64_t hd = s.hidden / s.heads;
  const int64_t q = s.heads * hd, kv = s.kv_heads * hd;
  std::map<std::string, TinyTensor> t;
  uint64_t salt = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    t[name] = TinyTensor{std::move(shape), TinyValues(n, ++salt)};
  };
  add("model.embed_tokens.weight", {s.vocab, s.hidden});
  add("model.norm.weight", {s.hidden});
  if (!s.tie) add("lm_head.weight", {s.vocab, s.hidden});
  const bool qkv_bias = s.architecture == "Qwen2ForCausalLM" ||
                        (s.architecture == "LlamaForCausalLM" && s.attention_bias);
  const bool o_bias = s.architecture == "LlamaForCausalLM" && s.attention_bias;
  for (int i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {s.hidden});
    add(p + "post_attention_layernorm.weight", {s.hidden});
    add(p + "self_attn.q_proj.weight", {q, s.hidden});
    add(p + "self_attn.k_proj.weight", {kv, s.hidden});
    add(p + "self_attn.v_proj.weight", {kv, s.hidden});
    add(p + "self_attn.o_proj.weight", {s.hidden, q});
    if (qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    if (o_bias) add(p + "self_attn.o_proj.bias", {s.hidden});
    add(p + "mlp.gate_proj.weight", {s.ffn, s.hidden});
    add(p + "mlp.up_proj.weight", {s.ffn, s.hidden});
    add(p + "mlp.down_proj.weight", {s.hidden, s.ffn});
  }
  return t;
}

inline std::vector<FakeTensor> ToFakeTensors(const std::map<std::string, TinyTensor>& tensors,
                                             const std::string& dtype) {
  std::vector<FakeTensor> out;
  for (const auto& [name, t] : tensors) out.push_back(MakeTensor(name, dtype, t.shape, t.values));
  return out;
}

// Writes config.json plus model.safetensors (num_shards == 1) or num_shards shard files and
// model.safetensors.index.json, tensors dealt round-robin over the shards.
inline void WriteTinyModel(const std::filesystem::path& dir, const TinyModelSpec& s,
                           const std::map<std::string, TinyTensor>& tensors, int num_shards = 1) {
  WriteBytes(dir / "config.json", TinyConfigJson(s));
  std::vector<FakeTensor> all = ToFakeTensors(tensors, s.dtype);
  if (num_shards == 1) {
    WriteBytes(dir / "model.safetensors", SerializeSafetensors(all));
    return;
  }
  std::vector<std::vector<FakeTensor>> shards(num_shards);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < all.size(); ++i) {
    const int k = static_cast<int>(i % num_shards);
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", k + 1, num_shards);
    weight_map[all[i].name] = file;
    shards[k].push_back(all[i]);
  }
  for (int k = 0; k < num_shards; ++k) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", k + 1, num_shards);
    WriteBytes(dir / file, SerializeSafetensors(shards[k]));
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  WriteBytes(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_MODEL_SAFETENSORS_TEST_UTIL_H_
