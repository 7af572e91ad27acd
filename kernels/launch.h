#ifndef CLAA_KERNELS_LAUNCH_H_
#define CLAA_KERNELS_LAUNCH_H_

// Internal: the launchers that the .cu files define and kernels.cc wraps. They assume arguments
// were validated (kernels.cc does that) and return the launch's cudaError_t. Kept free of Abseil
// so that nvcc never parses Abseil headers (faster, and no host-compiler quirks).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_types.h"

namespace claa::gpu::internal {

// Maximum window size of the window-score kernel (register array bound).
inline constexpr int kMaxWindow = 32;
inline constexpr int kMaxScoreHeadDim = 256;

cudaError_t LaunchCopyRows(const Bf16* src, int64_t src_stride, int src_rows,
                           const int32_t* indices, int num_indices, int cols, Bf16* dst,
                           int64_t dst_stride, cudaStream_t stream);
cudaError_t LaunchGatherInt32(const int32_t* src, int src_len, const int32_t* indices,
                              int num_indices, int32_t* dst, cudaStream_t stream);
cudaError_t LaunchAddRmsNorm(Bf16* residual, const Bf16* x, const Bf16* weight, int num_rows,
                             int hidden, float eps, Bf16* out, cudaStream_t stream);
cudaError_t LaunchRope(Bf16* x, int num_tokens, int num_heads, int head_dim, int64_t row_stride,
                       const int32_t* positions, const float* inv_freq, cudaStream_t stream);
cudaError_t LaunchSwiGlu(const Bf16* gate, int64_t gate_stride, const Bf16* up,
                         int64_t up_stride, int rows, int cols, Bf16* out, int64_t out_stride,
                         cudaStream_t stream);
cudaError_t LaunchArgmax(const float* logits, int64_t stride, int rows, int vocab, int32_t* out,
                         cudaStream_t stream);
cudaError_t LaunchArgmax(const Bf16* logits, int64_t stride, int rows, int vocab, int32_t* out,
                         cudaStream_t stream);
cudaError_t LaunchWritePagedKv(const PagedKvLayer& layer, const Bf16* k, int64_t k_stride,
                               const Bf16* v, int64_t v_stride, const int32_t* slot_mapping,
                               int num_tokens, cudaStream_t stream);
cudaError_t LaunchCompactKvByHead(const Bf16* src_k, const Bf16* src_v, int64_t src_stride,
                                  const int32_t* src_block_table, const int32_t* indices,
                                  int count, const PagedKvLayer& dst,
                                  const int32_t* dst_block_table, cudaStream_t stream);

cudaError_t LaunchFlashAttentionPrefill(const VarlenAttentionArgs& args, cudaStream_t stream);

// Partial results of one split: m (running max, log2 domain), l (sum), acc[head_dim].
size_t DecodePartialFloats(int head_dim);
// Most splits over keys the decode kernel uses for a context of max_kv_len.
int DecodeMaxSplits(int max_kv_len);
// Chooses the split count from the SM count, max_kv_len and the workspace size.
cudaError_t LaunchPagedDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);

// Workspace layout of the window scores: logits [heads][window][prompt_len], row stats
// [heads][window][2], group sums [kv_heads][prefix_len] (floats).
// Returns the total floats; logits and stats sizes are 256-byte aligned.
size_t WindowScoresWorkspaceFloats(int prompt_len, int window, int num_heads, int num_kv_heads,
                                   size_t* logits_floats, size_t* stats_floats);
cudaError_t LaunchWindowScores(const WindowScoresArgs& args, cudaStream_t stream);
cudaError_t LaunchZScoreMax(const float* scores, int num_rows, int len, int64_t row_stride,
                            float* out, double* stats, cudaStream_t stream);
cudaError_t LaunchTopKAscending(const float* scores, int num_rows, int n, int64_t row_stride,
                                int k, int32_t* out, int64_t out_stride, cudaStream_t stream);

}  // namespace claa::gpu::internal

#endif  // CLAA_KERNELS_LAUNCH_H_
