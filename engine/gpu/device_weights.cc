#include "engine/gpu/device_weights.h"

#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"
#include "kernels/kernels.h"
#include "kernels/model_kernels.h"

namespace claa::gpu {
namespace {

// Sizes (elements) of every tensor, in one place, so the upload and the random fill agree.
struct Shapes {
  int64_t hidden, q_dim, kv_dim, ffn, vocab;
  int64_t qkv() const { return (q_dim + 2 * kv_dim) * hidden; }
  int64_t o() const { return hidden * q_dim; }
  int64_t gate_up() const { return 2 * ffn * hidden; }
  int64_t down() const { return hidden * ffn; }
};

Shapes ShapesOf(const ModelConfig& c) {
  return Shapes{c.hidden_size, int64_t(c.num_heads) * c.head_dim,
                int64_t(c.num_kv_heads) * c.head_dim, c.intermediate_size, c.vocab_size};
}

// Lays every tensor out in one allocation (256-byte aligned) and sets the pointers.
absl::StatusOr<DeviceWeights> Allocate(const ModelConfig& c) {
  const Shapes s = ShapesOf(c);
  std::vector<std::pair<Bf16**, int64_t>> tensors;
  DeviceWeights w;
  w.layers.resize(c.num_layers);
  tensors.push_back({&w.embed, s.vocab * s.hidden});
  tensors.push_back({&w.final_norm, s.hidden});
  if (!c.tie_word_embeddings) tensors.push_back({&w.lm_head, s.vocab * s.hidden});
  for (DeviceLayerWeights& l : w.layers) {
    tensors.push_back({&l.input_norm, s.hidden});
    tensors.push_back({&l.post_norm, s.hidden});
    tensors.push_back({&l.qkv, s.qkv()});
    if (c.qkv_bias) tensors.push_back({&l.qkv_bias, s.q_dim + 2 * s.kv_dim});
    tensors.push_back({&l.o, s.o()});
    if (c.o_bias) tensors.push_back({&l.o_bias, s.hidden});
    tensors.push_back({&l.gate_up, s.gate_up()});
    tensors.push_back({&l.down, s.down()});
  }
  std::vector<size_t> offsets;
  size_t bytes = 0;
  for (const auto& t : tensors) {
    offsets.push_back(bytes);
    bytes += (size_t(t.second) * sizeof(Bf16) + 255) & ~size_t(255);
  }
  CLAA_RETURN_IF_ERROR(w.storage.Reserve(bytes));
  for (size_t i = 0; i < tensors.size(); ++i) {
    *tensors[i].first = w.storage.get<Bf16>(offsets[i]);
  }
  if (c.tie_word_embeddings) w.lm_head = w.embed;
  w.bytes = bytes;
  return w;
}

// Converts the concatenation of `parts` to bf16 and copies it to dst.
absl::Status Upload(Bf16* dst, std::initializer_list<const std::vector<float>*> parts,
                    std::vector<Bf16>& staging) {
  staging.clear();
  for (const std::vector<float>* p : parts) {
    for (float f : *p) staging.push_back(FloatToBf16(f));
  }
  CLAA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(dst, staging.data(), staging.size() * sizeof(Bf16), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DeviceWeights> UploadWeights(const ModelWeights& mw, cudaStream_t stream) {
  if (mw.shard.size < 1 || mw.config.num_heads % mw.shard.size != 0 ||
      mw.local_heads != mw.config.num_heads / mw.shard.size ||
      mw.local_kv_heads != mw.config.num_kv_heads / mw.shard.size ||
      mw.local_ffn != mw.config.intermediate_size / mw.shard.size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "TP shard %d of %d: local sizes (%d heads, %d KV heads, %d FFN) do not split the config",
        mw.shard.rank, mw.shard.size, mw.local_heads, mw.local_kv_heads, mw.local_ffn));
  }
  // This rank's shapes: the row-parallel o_proj / down_proj hold [hidden, local] columns.
  ModelConfig c = mw.config;
  c.num_heads = mw.local_heads;
  c.num_kv_heads = mw.local_kv_heads;
  c.intermediate_size = mw.local_ffn;
  if (int(mw.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError("weights have a different layer count than the config");
  }
  CLAA_ASSIGN_OR_RETURN(DeviceWeights w, Allocate(c));
  std::vector<Bf16> staging;
  CLAA_RETURN_IF_ERROR(Upload(w.embed, {&mw.embed_tokens}, staging));
  CLAA_RETURN_IF_ERROR(Upload(w.final_norm, {&mw.final_norm}, staging));
  if (!c.tie_word_embeddings) {
    CLAA_RETURN_IF_ERROR(Upload(w.lm_head, {&mw.LmHead()}, staging));
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& src = mw.layers[l];
    DeviceLayerWeights& dst = w.layers[l];
    CLAA_RETURN_IF_ERROR(Upload(dst.input_norm, {&src.input_norm}, staging));
    CLAA_RETURN_IF_ERROR(Upload(dst.post_norm, {&src.post_attention_norm}, staging));
    CLAA_RETURN_IF_ERROR(Upload(dst.qkv, {&src.q_proj, &src.k_proj, &src.v_proj}, staging));
    if (c.qkv_bias) {
      CLAA_RETURN_IF_ERROR(Upload(dst.qkv_bias, {&src.q_bias, &src.k_bias, &src.v_bias}, staging));
    }
    CLAA_RETURN_IF_ERROR(Upload(dst.o, {&src.o_proj}, staging));
    if (c.o_bias) CLAA_RETURN_IF_ERROR(Upload(dst.o_bias, {&src.o_bias}, staging));
    CLAA_RETURN_IF_ERROR(Upload(dst.gate_up, {&src.gate_proj, &src.up_proj}, staging));
    CLAA_RETURN_IF_ERROR(Upload(dst.down, {&src.down_proj}, staging));
  }
  (void)stream;  // synchronous copies: loading is not on any hot path
  return w;
}

absl::StatusOr<DeviceWeights> RandomDeviceWeights(const ModelConfig& c, uint64_t seed,
                                                  float init_std, cudaStream_t stream,
                                                  uint64_t layer_seed_salt) {
  CLAA_ASSIGN_OR_RETURN(DeviceWeights w, Allocate(c));
  const Shapes s = ShapesOf(c);
  // Uniform [-a, a] has standard deviation a / sqrt(3).
  const float a = init_std * std::sqrt(3.0f);
  // Two seed sequences: replicated tensors (embedding, norms, LM head, o_proj bias) draw from
  // `shared`, identical on every tensor-parallel rank; sliced ones from `sliced`, salted.
  uint64_t shared = 0;
  uint64_t sliced = (layer_seed_salt + 1) * 0x9e3779b97f4a7c15ull;
  auto fill = [&](uint64_t& counter, Bf16* p, int64_t n, float lo, float hi) {
    return FillUniformBf16(p, size_t(n), seed * 0x100000001b3ull + counter++, lo, hi, stream);
  };
  CLAA_RETURN_IF_ERROR(fill(shared, w.embed, s.vocab * s.hidden, -a, a));
  CLAA_RETURN_IF_ERROR(fill(shared, w.final_norm, s.hidden, 0.9f, 1.1f));
  if (!c.tie_word_embeddings) {
    CLAA_RETURN_IF_ERROR(fill(shared, w.lm_head, s.vocab * s.hidden, -a, a));
  }
  for (DeviceLayerWeights& l : w.layers) {
    CLAA_RETURN_IF_ERROR(fill(shared, l.input_norm, s.hidden, 0.9f, 1.1f));
    CLAA_RETURN_IF_ERROR(fill(shared, l.post_norm, s.hidden, 0.9f, 1.1f));
    CLAA_RETURN_IF_ERROR(fill(sliced, l.qkv, s.qkv(), -a, a));
    if (l.qkv_bias) {
      CLAA_RETURN_IF_ERROR(fill(sliced, l.qkv_bias, s.q_dim + 2 * s.kv_dim, -a, a));
    }
    CLAA_RETURN_IF_ERROR(fill(sliced, l.o, s.o(), -a, a));
    if (l.o_bias) CLAA_RETURN_IF_ERROR(fill(shared, l.o_bias, s.hidden, -a, a));
    CLAA_RETURN_IF_ERROR(fill(sliced, l.gate_up, s.gate_up(), -a, a));
    CLAA_RETURN_IF_ERROR(fill(sliced, l.down, s.down(), -a, a));
  }
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return w;
}

}  // namespace claa::gpu
