#ifndef CLAA_KERNELS_MODEL_LAUNCH_H_
#define CLAA_KERNELS_MODEL_LAUNCH_H_

// Internal: launchers of model_ops.cu, wrapped by model_kernels.cc (see launch.h for why the
// .cu files stay free of Abseil). Arguments are validated by the wrappers.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_types.h"
#include "kernels/model_kernels.h"

namespace claa::gpu::internal {

cudaError_t LaunchAddBiasRows(Bf16* x, int64_t stride, int rows, int cols, const Bf16* bias,
                              cudaStream_t stream);
cudaError_t LaunchSumRows(const float* in, int num_rows, int len, int64_t row_stride, float* out,
                          cudaStream_t stream);
cudaError_t LaunchLastQueryScores(const LastQueryScoresArgs& args, cudaStream_t stream);
cudaError_t LaunchGatherPagedKv(const PagedKvLayer& layer, const int32_t* block_tables,
                                int max_blocks_per_seq, const int32_t* kv_lens,
                                const int32_t* cu_dst, int batch, int max_kv_len, Bf16* dst_k,
                                Bf16* dst_v, int64_t dst_stride, cudaStream_t stream);
cudaError_t LaunchVarlenAttentionWarp(const VarlenAttentionArgs& args, cudaStream_t stream);
cudaError_t LaunchAddOffsetInt32(const int32_t* src, int n, int32_t offset, int32_t* dst,
                                 cudaStream_t stream);
cudaError_t LaunchFillUniformBf16(Bf16* p, size_t n, uint64_t seed, float lo, float hi,
                                  cudaStream_t stream);

}  // namespace claa::gpu::internal

#endif  // CLAA_KERNELS_MODEL_LAUNCH_H_
