#ifndef CLAA_KERNELS_MODEL_KERNELS_H_
#define CLAA_KERNELS_MODEL_KERNELS_H_

// Small kernels the GPU model (engine/gpu) needs besides those of kernels.h: bias adds, the
// score reductions of FastKV / GemFilter, paged-to-contiguous KV gathers for chunked prefill,
// index arithmetic for token-selective propagation, and device-side random weights. Same
// conventions as kernels.h (row-major, strides in elements, device pointers, absl::Status, every
// call enqueues on `stream` and returns at once).
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

// x[r, c] += bias[c] for rows x cols (bf16, fp32 add, one rounding).
absl::Status AddBiasRows(Bf16* x, int64_t stride, int rows, int cols, const Bf16* bias,
                         cudaStream_t stream);

// out[j] = sum over r < num_rows of in[r * row_stride + j], summed in row order in fp32 (as
// claa::HeadSumScorer does), for j < len.
absl::Status SumRows(const float* in, int num_rows, int len, int64_t row_stride, float* out,
                     cudaStream_t stream);

// GemFilter's signal (claa::LastQueryScores): the last prompt position's query (q_last, all
// num_heads heads back to back) against each prefix key j < prompt_len - window (rows k_stride
// apart), raw dot products (no scale, no softmax) summed over the query heads of each KV head's
// group, then avg-pooled (pool_kernel odd, zero padding counted). out: [num_kv_heads] rows of
// prefix floats, out_stride apart. Needs LastQueryScoresWorkspaceBytes of workspace.
struct LastQueryScoresArgs {
  const Bf16* q_last = nullptr;
  const Bf16* k = nullptr;
  int64_t k_stride = 0;
  int prompt_len = 0;
  int window = 8;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int pool_kernel = 5;
  float* out = nullptr;
  int64_t out_stride = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
size_t LastQueryScoresWorkspaceBytes(int prompt_len, int window, int num_kv_heads);
absl::Status LastQueryScores(const LastQueryScoresArgs& args, cudaStream_t stream);

// Paged cache -> contiguous rows, for attention over cached + new tokens (chunked prefill):
// for each sequence b < batch, slots [0, kv_lens[b]) of the layer (block table row b of
// block_tables, max_blocks_per_seq ids each) go to rows cu_dst[b] + s of dst_k / dst_v
// (dst_stride elements apart; kv_heads * head_dim values each). max_kv_len (host) bounds every
// kv_lens[b]. Rows 16-byte aligned.
absl::Status GatherPagedKv(const PagedKvLayer& layer, const int32_t* block_tables,
                           int max_blocks_per_seq, const int32_t* kv_lens, const int32_t* cu_dst,
                           int batch, int max_kv_len, Bf16* dst_k, Bf16* dst_v,
                           int64_t dst_stride, cudaStream_t stream);

// FlashAttentionPrefill's contract (kernels.h) for any head_dim <= 256 (multiple of 8; no
// tensor cores, one warp per query row, keys one at a time, P kept in fp32): the attention of
// models whose head_dim the fast kernels do not cover, e.g. stories260K's 8. Slow; fine for small
// models and as a reference.
absl::Status VarlenAttentionAnyHeadDim(const VarlenAttentionArgs& args, cudaStream_t stream);

// dst[i] = src[i] + offset for i < n (batch-relative row indices from item-relative ones).
absl::Status AddOffsetInt32(const int32_t* src, int n, int32_t offset, int32_t* dst,
                            cudaStream_t stream);

// p[i] = lo + (hi - lo) * u(seed, i), u uniform in [0, 1) from a counter-based hash, so the
// values depend only on (seed, i): random weights for timing without a host round trip.
absl::Status FillUniformBf16(Bf16* p, size_t n, uint64_t seed, float lo, float hi,
                             cudaStream_t stream);

}  // namespace claa::gpu

#endif  // CLAA_KERNELS_MODEL_KERNELS_H_
