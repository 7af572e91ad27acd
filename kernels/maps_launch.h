#ifndef CLAA_KERNELS_MAPS_LAUNCH_H_
#define CLAA_KERNELS_MAPS_LAUNCH_H_

// Internal: the launchers of attention_maps.cu, which attention_maps.cc wraps after checking the
// arguments (see launch.h for why this stays free of Abseil).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace claa::gpu::internal {

cudaError_t LaunchCausalSoftmaxPackFp16(const float* scores, int64_t scores_head_stride,
                                        int num_heads, int n, uint16_t* out,
                                        int64_t out_head_stride, cudaStream_t stream);
cudaError_t LaunchUnpackMapsBf16(const uint16_t* packed, int64_t packed_head_stride,
                                 int num_heads, int n, Bf16* dense, cudaStream_t stream);
// src and its stride 16-byte aligned, head_dim a multiple of 8 (attention_maps.cc checks).
cudaError_t LaunchExpandKvHeads(const Bf16* src, int64_t src_stride, int n, int heads, int group,
                                int head_dim, Bf16* dst, cudaStream_t stream);

}  // namespace claa::gpu::internal

#endif  // CLAA_KERNELS_MAPS_LAUNCH_H_
