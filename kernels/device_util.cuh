#ifndef CLAA_KERNELS_DEVICE_UTIL_CUH_
#define CLAA_KERNELS_DEVICE_UTIL_CUH_

// Device helpers shared by the .cu files: bf16 <-> float, 16-byte vectors of 8 bf16, warp and
// block reductions.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace claa::gpu::internal {

__host__ __device__ __forceinline__ const __nv_bfloat16* AsNv(const Bf16* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}
__host__ __device__ __forceinline__ __nv_bfloat16* AsNv(Bf16* p) {
  return reinterpret_cast<__nv_bfloat16*>(p);
}

// Whether a pointer allows 16-byte vector accesses (null counts as aligned: it is not read).
inline bool IsAligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Eight bf16 values moved as one 16-byte access.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};

__device__ __forceinline__ void Unpack8(const Bf16x8& v, float* f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(v.h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

__device__ __forceinline__ Bf16x8 Pack8(const float* f) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

__device__ __forceinline__ Bf16x8 Load8(const __nv_bfloat16* p) {
  return *reinterpret_cast<const Bf16x8*>(p);
}
__device__ __forceinline__ void Store8(__nv_bfloat16* p, const Bf16x8& v) {
  *reinterpret_cast<Bf16x8*>(p) = v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max; every thread gets the result. `shared` holds >= 32 values. Must be
// called by all threads of the block (blockDim.x a multiple of 32).
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // `shared` may still be read by a previous reduction.
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  T r = lane < warps ? shared[lane] : T(0);
  return WarpSum(r);
}
__device__ __forceinline__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float r = lane < warps ? shared[lane] : -INFINITY;
  return WarpMax(r);
}

}  // namespace claa::gpu::internal

#endif  // CLAA_KERNELS_DEVICE_UTIL_CUH_
