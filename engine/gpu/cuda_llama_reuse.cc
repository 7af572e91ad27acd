// CudaLlamaModel's AttnCache side (DESIGN.md §3): a hit item's attention output is A @ V from
// its stored maps; a capture item's maps are computed from its RoPE'd Q/K. The same arithmetic
// as the CPU path (engine/attncache/attention_reuse.h), in bf16 with fp32 accumulation.
#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/util/status_macros.h"

namespace claa::gpu {

absl::StatusOr<CudaLlamaModel::ReusePlan> CudaLlamaModel::PlanReuse(
    absl::Span<const ForwardItem> batch) {
  ReusePlan reuse;
  const int b = int(batch.size());
  reuse.hit_maps.assign(b, nullptr);
  reuse.capture.assign(b, nullptr);
  map_tier_.BeginForward();
  const int local_heads = config_.num_heads;
  const int first_head = tp_.rank * local_heads;
  int hits = 0;
  size_t capture_values = 0;
  int capture_n = 0;
  for (int i = 0; i < b; ++i) {
    AttentionReuse* r = batch[i].attention_reuse;
    if (r == nullptr) continue;
    const int n = int(batch[i].tokens.size());
    if (r->replaces_attention()) {
      CLAA_ASSIGN_OR_RETURN(reuse.hit_maps[i],
                            map_tier_.Acquire(r->host_maps(), n, first_head, local_heads,
                                              stream_));
      ++hits;
    } else if (r->captures()) {
      capture_values += size_t(config_.num_layers) * local_heads * MapsTriangle(n);
      capture_n = std::max(capture_n, n);
    }
  }
  reuse.any = hits > 0 || capture_values > 0;
  reuse.all_hits = b > 0 && hits == b;
  if (capture_values > 0) {
    CLAA_RETURN_IF_ERROR(capture_maps_.Reserve(capture_values * sizeof(uint16_t)));
    CLAA_RETURN_IF_ERROR(capture_scores_.Reserve(size_t(config_.num_kv_heads) * capture_n *
                                                 capture_n * sizeof(float)));
    reuse.scores = capture_scores_.get<float>();
    size_t at = 0;
    for (int i = 0; i < b; ++i) {
      AttentionReuse* r = batch[i].attention_reuse;
      if (r == nullptr || r->replaces_attention() || !r->captures()) continue;
      reuse.capture[i] = capture_maps_.get<uint16_t>() + at;
      at += size_t(config_.num_layers) * local_heads * MapsTriangle(batch[i].tokens.size());
    }
  }
  if (reuse.any && maps_gemm_ == nullptr) {
    CLAA_ASSIGN_OR_RETURN(maps_gemm_, MapsGemm::Create());
  }
  if (maps_gemm_ != nullptr) maps_gemm_->set_row_blocks(maps_row_blocks_);
  return reuse;
}

absl::Status CudaLlamaModel::ReuseAttention(const PassPlan& plan, const ReusePlan& reuse,
                                            int layer) {
  const ModelConfig& c = config_;
  const int d = c.head_dim;
  const int heads = c.num_heads;
  const int kv_heads = c.num_kv_heads;
  const int q_dim = heads * d;
  const int kv_dim = kv_heads * d;
  const int qkv_dim = q_dim + 2 * kv_dim;
  const int group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(float(d));
  Bf16* qkv = qkv_.get<Bf16>();
  Bf16* attn = attn_.get<Bf16>();
  for (int i = 0; i < plan.num_items; ++i) {
    // Reuse items are whole fresh prompts without pruning: the same rows at every layer.
    const int64_t row = plan.offsets[layer][i];
    const int n = plan.offsets[layer][i + 1] - plan.offsets[layer][i];
    const Bf16* q = qkv + row * qkv_dim;
    const int64_t tri = MapsTriangle(n);
    if (const Bf16* maps = reuse.hit_maps[i]; maps != nullptr) {
      const Bf16* layer_maps = maps + int64_t(layer) * heads * n * n;
      CLAA_RETURN_IF_ERROR(maps_gemm_->MapsTimesV(layer_maps, q + q_dim + kv_dim, qkv_dim, n,
                                                  heads, kv_heads, d, attn + row * q_dim,
                                                  q_dim, stream_));
    } else if (uint16_t* out = reuse.capture[i]; out != nullptr) {
      uint16_t* layer_out = out + int64_t(layer) * heads * tri;
      // One member of every KV head's group at a time bounds the fp32 scratch at
      // kv_heads * n * n.
      for (int member = 0; member < group; ++member) {
        CLAA_RETURN_IF_ERROR(maps_gemm_->GroupScores(q, qkv_dim, q + q_dim, qkv_dim, n, heads,
                                                     kv_heads, d, member, scale, reuse.scores,
                                                     stream_));
        CLAA_RETURN_IF_ERROR(CausalSoftmaxPackFp16(reuse.scores, int64_t(n) * n, kv_heads, n,
                                                   layer_out + member * tri, group * tri,
                                                   stream_));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::DownloadCaptures(absl::Span<const ForwardItem> batch,
                                              const ReusePlan& reuse) {
  const int local_heads = config_.num_heads;
  const int heads = full_config_.num_heads;
  const int first_head = tp_.rank * local_heads;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (reuse.capture[i] == nullptr) continue;
    const size_t tri = size_t(MapsTriangle(batch[i].tokens.size()));
    uint16_t* host = batch[i].attention_reuse->capture_output();
    if (host == nullptr) return absl::InternalError("attention capture lost its output buffer");
    // Host layout [layer][all heads][tri]; this rank fills heads first_head.. of each layer.
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
        host + size_t(first_head) * tri, size_t(heads) * tri * sizeof(uint16_t),
        reuse.capture[i], size_t(local_heads) * tri * sizeof(uint16_t),
        size_t(local_heads) * tri * sizeof(uint16_t), config_.num_layers,
        cudaMemcpyDeviceToHost, stream_));
  }
  return absl::OkStatus();
}

}  // namespace claa::gpu
