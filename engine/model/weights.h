#ifndef CLAA_ENGINE_MODEL_WEIGHTS_H_
#define CLAA_ENGINE_MODEL_WEIGHTS_H_

// fp32 model weights for one tensor-parallel rank. Matrices are row-major in the Hugging Face
// [out_features, in_features] layout. Column-parallel layers (q/k/v, gate/up) keep this rank's
// rows; row-parallel layers (o_proj, down_proj) keep this rank's columns, so their outputs are
// partial sums that the Communicator all-reduces.
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"

namespace claa {

class SafetensorsArchive;

struct TpShard {
  int rank = 0;
  int size = 1;
};

struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]
  std::vector<float> post_attention_norm;  // [hidden]
  std::vector<float> q_proj;  // [local_heads * head_dim, hidden]
  std::vector<float> k_proj;  // [local_kv_heads * head_dim, hidden]
  std::vector<float> v_proj;  // [local_kv_heads * head_dim, hidden]
  std::vector<float> q_bias, k_bias, v_bias;  // empty unless config.qkv_bias; local slices.
  std::vector<float> o_proj;  // [hidden, local_heads * head_dim]
  std::vector<float> o_bias;  // [hidden]; empty unless config.o_bias. Added once, after all-reduce.
  std::vector<float> gate_proj;  // [local_ffn, hidden]
  std::vector<float> up_proj;    // [local_ffn, hidden]
  std::vector<float> down_proj;  // [hidden, local_ffn]
};

struct ModelWeights {
  ModelConfig config;
  TpShard shard;
  int local_heads = 0;     // num_heads / tp
  int local_kv_heads = 0;  // num_kv_heads / tp
  int local_ffn = 0;       // intermediate_size / tp
  std::vector<float> embed_tokens;  // [vocab, hidden], replicated
  std::vector<float> final_norm;    // [hidden]
  // [vocab, hidden], replicated. Empty when tie_word_embeddings: use embed_tokens.
  std::vector<float> lm_head;
  std::vector<LayerWeights> layers;

  const std::vector<float>& LmHead() const {
    return lm_head.empty() ? embed_tokens : lm_head;
  }
};

// Checks that the config can be split over tp ranks (heads, KV heads and FFN divisible).
absl::Status ValidateTpShard(const ModelConfig& config, TpShard shard);

// Loads and converts (F32/F16/BF16 -> fp32) this rank's slice of every weight, checking every
// tensor's presence, dtype and shape against the config (InvalidArgument / NotFound naming the
// tensor on mismatch).
absl::StatusOr<ModelWeights> LoadModelWeights(const SafetensorsArchive& archive,
                                               const ModelConfig& config, TpShard shard);

// Deterministic random weights (N(0, init_std), norms near 1) for the built-in model and
// benchmarks. The full tensors are drawn from `seed` and then sliced, so every tp size sees the
// same model.
ModelWeights MakeRandomWeights(const ModelConfig& config, uint64_t seed, TpShard shard,
                               float init_std = 0.02f);

}  // namespace claa

#endif  // CLAA_ENGINE_MODEL_WEIGHTS_H_
