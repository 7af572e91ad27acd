// Kernels of attention_maps.h: the causal softmax that packs captured maps, the unpacking of
// stored maps into dense squares, and the per-head copy of grouped V rows. All are memory-bound
// row kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/maps_launch.h"

namespace claa::gpu::internal {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t Tri(int64_t t) { return t * (t + 1) / 2; }

__device__ __forceinline__ float LoadHalf(const uint16_t* p) {
  return __half2float(__ushort_as_half(*p));
}

// Block-wide reduction through shared memory (kThreads threads).
template <bool kMax>
__device__ float BlockReduce(float v, float* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? shared[lane] : (kMax ? -INFINITY : 0.f);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float o = __shfl_xor_sync(0xffffffffu, v, offset);
      v = kMax ? fmaxf(v, o) : v + o;
    }
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const float result = shared[0];
  __syncthreads();  // shared is reused by the next reduction
  return result;
}

__global__ void CausalSoftmaxPackKernel(const float* __restrict__ scores,
                                        int64_t scores_head_stride, int n,
                                        uint16_t* __restrict__ out, int64_t out_head_stride) {
  __shared__ float shared[kThreads / 32];
  const int t = blockIdx.x;
  const int h = blockIdx.y;
  const float* row = scores + h * scores_head_stride + int64_t(t) * n;
  __half* dst = reinterpret_cast<__half*>(out + h * out_head_stride + Tri(t));
  const int len = t + 1;
  float m = -INFINITY;
  for (int s = threadIdx.x; s < len; s += kThreads) m = fmaxf(m, row[s]);
  m = BlockReduce<true>(m, shared);
  float sum = 0.f;
  for (int s = threadIdx.x; s < len; s += kThreads) sum += expf(row[s] - m);
  sum = BlockReduce<false>(sum, shared);
  const float inv = 1.f / sum;
  for (int s = threadIdx.x; s < len; s += kThreads) {
    dst[s] = __float2half_rn(expf(row[s] - m) * inv);
  }
}

__global__ void UnpackMapsKernel(const uint16_t* __restrict__ packed, int64_t packed_head_stride,
                                 int n, __nv_bfloat16* __restrict__ dense) {
  const int t = blockIdx.x;
  const int h = blockIdx.y;
  const uint16_t* src = packed + h * packed_head_stride + Tri(t);
  __nv_bfloat16* dst = dense + (int64_t(h) * n + t) * n;
  for (int s = threadIdx.x; s < n; s += kThreads) {
    dst[s] = __float2bfloat16_rn(s <= t ? LoadHalf(src + s) : 0.f);
  }
}

// dst[h][s][j] = src[s * src_stride + (h / group) * d + j], 8 bf16 (16 bytes) per thread.
__global__ void ExpandKvHeadsKernel(const Bf16x8* __restrict__ src, int64_t src_stride8, int n,
                                    int heads, int group, int d8, Bf16x8* __restrict__ dst) {
  const int64_t total = int64_t(heads) * n * d8;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int j = int(i % d8);
    const int64_t hs = i / d8;
    const int s = int(hs % n);
    const int h = int(hs / n);
    dst[i] = src[s * src_stride8 + int64_t(h / group) * d8 + j];
  }
}

}  // namespace

cudaError_t LaunchCausalSoftmaxPackFp16(const float* scores, int64_t scores_head_stride,
                                        int num_heads, int n, uint16_t* out,
                                        int64_t out_head_stride, cudaStream_t stream) {
  CausalSoftmaxPackKernel<<<dim3(n, num_heads), kThreads, 0, stream>>>(scores, scores_head_stride,
                                                                      n, out, out_head_stride);
  return cudaGetLastError();
}

cudaError_t LaunchUnpackMapsBf16(const uint16_t* packed, int64_t packed_head_stride,
                                 int num_heads, int n, Bf16* dense, cudaStream_t stream) {
  UnpackMapsKernel<<<dim3(n, num_heads), kThreads, 0, stream>>>(packed, packed_head_stride, n,
                                                               AsNv(dense));
  return cudaGetLastError();
}

cudaError_t LaunchExpandKvHeads(const Bf16* src, int64_t src_stride, int n, int heads, int group,
                                int head_dim, Bf16* dst, cudaStream_t stream) {
  const int64_t total = int64_t(heads) * n * (head_dim / 8);
  const int blocks = int(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  ExpandKvHeadsKernel<<<blocks, kThreads, 0, stream>>>(
      reinterpret_cast<const Bf16x8*>(src), src_stride / 8, n, heads, group, head_dim / 8,
      reinterpret_cast<Bf16x8*>(dst));
  return cudaGetLastError();
}

}  // namespace claa::gpu::internal
