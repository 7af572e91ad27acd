// Fuzzes config.json parsing and what the server computes from a config before any weight is
// read (the router never reads weights at all): KV bytes per token and the default pruning of
// every method at the model's depth.
#include <limits>
#include <string>
#include <string_view>

#include "engine/generate/loaded_model.h"
#include "engine/model/config.h"
#include "engine/pruning/pruning_config.h"
#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {

int FuzzModelConfig(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(text);
  if (!parsed.ok()) {
    CLAA_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument,
                    parsed.status().ToString());
    // Every refusal says where it came from, so a user knows which file to fix.
    CLAA_FUZZ_CHECK(parsed.status().message().substr(0, 13) == "config.json: ",
                    parsed.status().ToString());
    return 0;
  }
  const ModelConfig& c = *parsed;
  CLAA_FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 &&
                      c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 &&
                      c.head_dim > 0 && c.max_position_embeddings > 0,
                  "non-positive dimension");
  CLAA_FUZZ_CHECK(c.num_heads % c.num_kv_heads == 0, c.num_heads, " % ", c.num_kv_heads);
  CLAA_FUZZ_CHECK(c.head_dim % 2 == 0, c.head_dim);
  CLAA_FUZZ_CHECK(c.rms_norm_eps > 0 && c.rope_theta > 0, c.rms_norm_eps, " ", c.rope_theta);
  CLAA_FUZZ_CHECK(!c.architecture.empty() && !c.model_type.empty(), "no architecture");
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    CLAA_FUZZ_CHECK(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor,
                    "llama3 factors");
  }
  for (int id : c.eos_token_ids) CLAA_FUZZ_CHECK(id >= 0, id);
  if (c.bos_token_id) CLAA_FUZZ_CHECK(*c.bos_token_id >= 0, *c.bos_token_id);

  // LoadModel sizes the KV cache with this before loading anything; computed exactly here (in
  // 128 bits), it must fit the int64 that KvBytesPerToken returns -- without a sanitizer too.
  const __int128 kv_bytes = __int128{2} * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  CLAA_FUZZ_CHECK(kv_bytes <= std::numeric_limits<int64_t>::max(), "KV bytes per token overflow: ",
                  c.num_layers, " layers x ", c.num_kv_heads, " KV heads x ", c.head_dim);
  CLAA_FUZZ_CHECK(KvBytesPerToken(c) == static_cast<int64_t>(kv_bytes), KvBytesPerToken(c));

  // The server resolves --pruning_method at the model's depth at start-up; the paper's defaults
  // scaled to any depth must be valid, or the server could not start with that method.
  for (PruningMethod m : {PruningMethod::kFull, PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter}) {
    const PruningConfig p = DefaultPruningConfig(m, c.num_layers, 0.2);
    const absl::Status s = ValidatePruningConfig(p, c.num_layers);
    CLAA_FUZZ_CHECK(s.ok(), PruningMethodName(m), " at ", c.num_layers, " layers: ", s.ToString(),
                    " ", p.DebugString());
  }
  return 0;
}

}  // namespace claa::fuzz
