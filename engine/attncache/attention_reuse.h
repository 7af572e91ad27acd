#ifndef CLAA_ENGINE_ATTNCACHE_ATTENTION_REUSE_H_
#define CLAA_ENGINE_ATTNCACHE_ATTENTION_REUSE_H_

// The CPU side of AttnCache in the forward pass (LlamaModel's AttentionReuse hook):
//  - CachedAttention (a hit): every layer's attention output is A_cached @ V;
//  - AttentionCapture (a miss to be inserted): after normal attention, the layer's softmax
//    probabilities are recomputed from the RoPE'd Q and K and kept in fp16.
// Both serve all TP ranks of one item at once: rank r touches only its query heads.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/attncache/attention_maps.h"
#include "engine/pruning/attention_scores.h"
#include "engine/runtime/llama_model.h"

namespace claa::attncache {

// out[t][h * d ...] = sum_{s <= t} A[layer][first_head + h][t][s] * v[s][(h / group) * d ...] for
// t < num_tokens (group = local_heads / local_kv_heads). maps must hold >= num_tokens rows.
void ApplyCachedMaps(const MapsView& maps, int layer, int first_head, int local_heads,
                     int local_kv_heads, int head_dim, const float* v, int v_stride,
                     int num_tokens, float* out, int out_stride);

// Softmax(q k^T / sqrt(d)) with the causal mask for the local heads of one layer, written in
// fp16 into maps (shape.length == qk.prompt_len) at heads first_head.. .
void ComputeMaps(const PromptQk& qk, int layer, int first_head, const MapsShape& shape,
                 uint16_t* maps);

// A hit: reuses `maps` (which must outlive the forward pass).
class CachedAttention final : public AttentionReuse {
 public:
  // key: a stable id of these maps (the store entry's), so a GPU may keep them resident.
  explicit CachedAttention(MapsView maps, int64_t key = -1) : maps_(maps), key_(key) {}
  absl::Status Validate(int num_tokens, int num_layers, int num_heads) const override;
  bool replaces_attention() const override { return true; }
  absl::Status ApplyCached(int layer, int first_head, int local_heads, int local_kv_heads,
                           int head_dim, const float* v, int v_stride, int num_tokens, float* out,
                           int out_stride) override;
  HostAttentionMaps host_maps() const override {
    return {maps_.data, maps_.shape.layers, maps_.shape.heads, maps_.shape.length, key_};
  }

 private:
  MapsView maps_;
  int64_t key_;
};

// A miss whose maps are kept: runs attention normally and fills maps() ([layers][heads] of the
// whole model; each rank writes its own heads).
class AttentionCapture final : public AttentionReuse {
 public:
  AttentionCapture(int num_layers, int num_heads, int num_tokens);
  absl::Status Validate(int num_tokens, int num_layers, int num_heads) const override;
  bool replaces_attention() const override { return false; }
  bool captures() const override { return true; }
  absl::Status ApplyCached(int, int, int, int, int, const float*, int, int, float*,
                           int) override;
  absl::Status Capture(int layer, int first_head, const PromptQk& qk) override;
  uint16_t* capture_output() override { return maps_.data(); }

  const MapsShape& shape() const { return shape_; }
  const std::vector<uint16_t>& maps() const { return maps_; }
  MapsView view() const { return MapsView{maps_.data(), shape_}; }

 private:
  MapsShape shape_;
  std::vector<uint16_t> maps_;
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_ATTENTION_REUSE_H_
