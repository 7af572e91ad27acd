// Loads Hugging Face Llama/Mistral/Qwen2 checkpoints into per-rank fp32 ModelWeights.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/config.h"
#include "engine/model/model_loader.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "engine/util/status_macros.h"

namespace claa {
namespace {

constexpr char kEmbed[] = "model.embed_tokens.weight";
constexpr char kFinalNorm[] = "model.norm.weight";
constexpr char kLmHead[] = "lm_head.weight";

// A [vocab, hidden] matrix whose row count disagrees with config.json usually means the config
// and weights come from different models; say so explicitly rather than as a bare shape error.
absl::Status CheckVocabRows(const SafetensorsArchive& archive, const char* name,
                            const ModelConfig& config) {
  const TensorInfo* t = archive.Find(name);
  if (t == nullptr) return absl::OkStatus();  // The read reports the missing tensor.
  if (t->shape.size() == 2 && t->shape[0] != config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab mismatch: ", name, " in ", t->file, " has ", t->shape[0],
        " rows but config.json vocab_size is ", config.vocab_size));
  }
  return absl::OkStatus();
}

// Reads one decoder layer's slice for this rank. Column-parallel matrices (q/k/v, gate/up) keep
// the rank's contiguous block of output rows, i.e. whole heads; row-parallel ones (o, down) keep
// the matching block of input columns.
absl::Status LoadLayer(const SafetensorsArchive& a, const ModelWeights& w, int i,
                       LayerWeights* l) {
  const ModelConfig& c = w.config;
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t hidden = c.hidden_size;
  const int64_t hd = c.head_dim;
  const int64_t q_rows = int64_t{c.num_heads} * hd;
  const int64_t kv_rows = int64_t{c.num_kv_heads} * hd;
  const int64_t ffn = c.intermediate_size;
  const int64_t r = w.shard.rank;
  const int64_t q_begin = r * w.local_heads * hd, q_end = q_begin + w.local_heads * hd;
  const int64_t kv_begin = r * w.local_kv_heads * hd, kv_end = kv_begin + w.local_kv_heads * hd;
  const int64_t f_begin = r * w.local_ffn, f_end = f_begin + w.local_ffn;

  CLAA_RETURN_IF_ERROR(a.ReadF32(p + "input_layernorm.weight", {hidden}, &l->input_norm));
  CLAA_RETURN_IF_ERROR(
      a.ReadF32(p + "post_attention_layernorm.weight", {hidden}, &l->post_attention_norm));

  const std::string attn = p + "self_attn.";
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Rows(attn + "q_proj.weight", {q_rows, hidden}, q_begin, q_end, &l->q_proj));
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Rows(attn + "k_proj.weight", {kv_rows, hidden}, kv_begin, kv_end, &l->k_proj));
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Rows(attn + "v_proj.weight", {kv_rows, hidden}, kv_begin, kv_end, &l->v_proj));
  if (c.qkv_bias) {
    CLAA_RETURN_IF_ERROR(a.ReadF32Rows(attn + "q_proj.bias", {q_rows}, q_begin, q_end, &l->q_bias));
    CLAA_RETURN_IF_ERROR(
        a.ReadF32Rows(attn + "k_proj.bias", {kv_rows}, kv_begin, kv_end, &l->k_bias));
    CLAA_RETURN_IF_ERROR(
        a.ReadF32Rows(attn + "v_proj.bias", {kv_rows}, kv_begin, kv_end, &l->v_bias));
  }
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Cols(attn + "o_proj.weight", {hidden, q_rows}, q_begin, q_end, &l->o_proj));
  if (c.o_bias) {
    // Replicated: added once after the all-reduce of the partial o_proj outputs.
    CLAA_RETURN_IF_ERROR(a.ReadF32(attn + "o_proj.bias", {hidden}, &l->o_bias));
  }

  const std::string mlp = p + "mlp.";
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Rows(mlp + "gate_proj.weight", {ffn, hidden}, f_begin, f_end, &l->gate_proj));
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Rows(mlp + "up_proj.weight", {ffn, hidden}, f_begin, f_end, &l->up_proj));
  CLAA_RETURN_IF_ERROR(
      a.ReadF32Cols(mlp + "down_proj.weight", {hidden, ffn}, f_begin, f_end, &l->down_proj));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const SafetensorsArchive& archive,
                                               const ModelConfig& config, TpShard shard) {
  CLAA_RETURN_IF_ERROR(ValidateTpShard(config, shard));
  ModelWeights w;
  w.config = config;
  w.shard = shard;
  w.local_heads = config.num_heads / shard.size;
  w.local_kv_heads = config.num_kv_heads / shard.size;
  w.local_ffn = config.intermediate_size / shard.size;

  const int64_t vocab = config.vocab_size;
  const int64_t hidden = config.hidden_size;
  CLAA_RETURN_IF_ERROR(CheckVocabRows(archive, kEmbed, config));
  CLAA_RETURN_IF_ERROR(archive.ReadF32(kEmbed, {vocab, hidden}, &w.embed_tokens));
  CLAA_RETURN_IF_ERROR(archive.ReadF32(kFinalNorm, {hidden}, &w.final_norm));

  // With tied embeddings transformers ignores any stored lm_head (some exports still write a
  // copy), so we do too and leave lm_head empty: LmHead() then returns embed_tokens.
  if (!config.tie_word_embeddings) {
    if (archive.Find(kLmHead) == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "tensor '", kLmHead, "' not found and config.json tie_word_embeddings is false"));
    }
    CLAA_RETURN_IF_ERROR(CheckVocabRows(archive, kLmHead, config));
    CLAA_RETURN_IF_ERROR(archive.ReadF32(kLmHead, {vocab, hidden}, &w.lm_head));
  }

  w.layers.resize(config.num_layers);
  for (int i = 0; i < config.num_layers; ++i) {
    CLAA_RETURN_IF_ERROR(LoadLayer(archive, w, i, &w.layers[i]));
  }
  return w;
}

absl::StatusOr<ModelWeights> LoadModelDir(const std::filesystem::path& dir, TpShard shard) {
  CLAA_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  CLAA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsArchive> archive,
                        SafetensorsArchive::OpenDir(dir));
  return LoadModelWeights(*archive, config, shard);
}

}  // namespace claa
