// Memory-bound kernels: row gathers, fused residual add + RMSNorm, RoPE, SwiGLU, argmax and the
// KV-cache writes. All are single passes over their data with 16-byte accesses where the
// caller's alignment allows; none of them is worth tensor cores.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/launch.h"

namespace claa::gpu::internal {
namespace {

// Grid size for a grid-stride loop over `n` items: enough blocks to fill the GPU many times over
// but no more than the hardware limit.
inline unsigned GridFor(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > (1 << 20)) blocks = 1 << 20;
  return unsigned(blocks);
}

// ---------------------------------------------------------------------------------------------
// Row gathers. One block per destination row.

template <bool kVec>
__global__ void CopyRowsKernel(const __nv_bfloat16* __restrict__ src, int64_t src_stride,
                               int src_rows, const int32_t* __restrict__ indices, int cols,
                               __nv_bfloat16* __restrict__ dst, int64_t dst_stride) {
  const int r = blockIdx.x;
  const int idx = indices[r];
  const bool valid = idx >= 0 && idx < src_rows;
  const __nv_bfloat16* s = src + int64_t(valid ? idx : 0) * src_stride;
  __nv_bfloat16* d = dst + int64_t(r) * dst_stride;
  if constexpr (kVec) {
    Bf16x8 zero;
#pragma unroll
    for (int i = 0; i < 4; ++i) zero.h[i] = __floats2bfloat162_rn(0.f, 0.f);
    for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
      Store8(d + c, valid ? Load8(s + c) : zero);
    }
  } else {
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      d[c] = valid ? s[c] : __float2bfloat16(0.f);
    }
  }
}

__global__ void GatherInt32Kernel(const int32_t* __restrict__ src, int src_len,
                                  const int32_t* __restrict__ indices, int n,
                                  int32_t* __restrict__ dst) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int idx = indices[i];
    dst[i] = (idx >= 0 && idx < src_len) ? src[idx] : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// residual += x; out = rmsnorm(residual) * weight. One block per row; the row is read twice
// (the second time from L1/L2, which is cheaper than staging a whole row in shared memory).

template <bool kVec>
__global__ void AddRmsNormKernel(__nv_bfloat16* __restrict__ residual,
                                 const __nv_bfloat16* __restrict__ x,
                                 const __nv_bfloat16* __restrict__ weight, int hidden, float eps,
                                 __nv_bfloat16* __restrict__ out) {
  __shared__ float red[32];
  const int64_t base = int64_t(blockIdx.x) * hidden;
  __nv_bfloat16* res = residual + base;
  float sum_sq = 0.f;
  if constexpr (kVec) {
    for (int c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
      float r[8];
      Unpack8(Load8(res + c), r);
      if (x != nullptr) {
        float a[8];
        Unpack8(Load8(x + base + c), a);
#pragma unroll
        for (int i = 0; i < 8; ++i) r[i] += a[i];
        const Bf16x8 rounded = Pack8(r);
        Store8(res + c, rounded);
        Unpack8(rounded, r);  // Normalise what is stored, as a bf16 model does.
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) sum_sq += r[i] * r[i];
    }
  } else {
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      float r = __bfloat162float(res[c]);
      if (x != nullptr) {
        const __nv_bfloat16 rounded = __float2bfloat16(r + __bfloat162float(x[base + c]));
        res[c] = rounded;
        r = __bfloat162float(rounded);
      }
      sum_sq += r * r;
    }
  }
  sum_sq = BlockSum(sum_sq, red);
  const float inv = rsqrtf(sum_sq / float(hidden) + eps);
  if constexpr (kVec) {
    for (int c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
      float r[8], w[8];
      Unpack8(Load8(res + c), r);
      Unpack8(Load8(weight + c), w);
#pragma unroll
      for (int i = 0; i < 8; ++i) r[i] = w[i] * (r[i] * inv);
      Store8(out + base + c, Pack8(r));
    }
  } else {
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      out[base + c] =
          __float2bfloat16(__bfloat162float(weight[c]) * (__bfloat162float(res[c]) * inv));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE: one thread per (token, head, i < half) pair. The angle is rounded to fp32 first, as the
// CPU path and Hugging Face do; sincosf (not the fast intrinsic) keeps cos/sin accurate for the
// large angles of long contexts.

__global__ void RopeKernel(__nv_bfloat16* __restrict__ x, int num_tokens, int num_heads,
                           int half, int64_t row_stride, const int32_t* __restrict__ positions,
                           const float* __restrict__ inv_freq) {
  const int64_t total = int64_t(num_tokens) * num_heads * half;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int f = int(i % half);
    const int64_t th = i / half;
    const int h = int(th % num_heads);
    const int t = int(th / num_heads);
    const float angle = float(positions[t]) * inv_freq[f];
    float s, c;
    sincosf(angle, &s, &c);
    __nv_bfloat16* a = x + int64_t(t) * row_stride + int64_t(h) * 2 * half + f;
    const float x1 = __bfloat162float(a[0]);
    const float x2 = __bfloat162float(a[half]);
    a[0] = __float2bfloat16(x1 * c - x2 * s);
    a[half] = __float2bfloat16(x2 * c + x1 * s);
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU.

__device__ __forceinline__ float Silu(float g) { return g / (1.0f + __expf(-g)); }

template <bool kVec>
__global__ void SwiGluKernel(const __nv_bfloat16* __restrict__ gate, int64_t gate_stride,
                             const __nv_bfloat16* __restrict__ up, int64_t up_stride, int rows,
                             int cols, __nv_bfloat16* out, int64_t out_stride) {
  constexpr int kW = kVec ? 8 : 1;
  const int chunks = cols / kW;
  const int64_t total = int64_t(rows) * chunks;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / chunks;
    const int c = int(i % chunks) * kW;
    if constexpr (kVec) {
      float g[8], u[8];
      Unpack8(Load8(gate + r * gate_stride + c), g);
      Unpack8(Load8(up + r * up_stride + c), u);
#pragma unroll
      for (int j = 0; j < 8; ++j) g[j] = Silu(g[j]) * u[j];
      Store8(out + r * out_stride + c, Pack8(g));
    } else {
      const float g = __bfloat162float(gate[r * gate_stride + c]);
      const float u = __bfloat162float(up[r * up_stride + c]);
      out[r * out_stride + c] = __float2bfloat16(Silu(g) * u);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Argmax, one block per row. (value, index) pairs merge by larger value, then lower index; NaN
// is read as -inf so it never wins, and -0 == +0 under float comparison.

__device__ __forceinline__ float LoadLogit(const float* p) { return *p; }
__device__ __forceinline__ float LoadLogit(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__device__ __forceinline__ void ArgmaxMerge(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

template <typename T>
__global__ void ArgmaxKernel(const T* __restrict__ logits, int64_t stride, int vocab,
                             int32_t* __restrict__ out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const T* row = logits + int64_t(blockIdx.x) * stride;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
    float v = LoadLogit(row + c);
    if (isnan(v)) v = -INFINITY;
    ArgmaxMerge(best, best_i, v, c);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    ArgmaxMerge(best, best_i, ov, oi);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? sv[lane] : -INFINITY;
    best_i = lane < warps ? si[lane] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
      ArgmaxMerge(best, best_i, ov, oi);
    }
    if (lane == 0) out[blockIdx.x] = best_i;
  }
}

// ---------------------------------------------------------------------------------------------
// KV cache writes. One thread per 8 values (16 bytes).

__global__ void WritePagedKvKernel(__nv_bfloat16* __restrict__ k_pool,
                                   __nv_bfloat16* __restrict__ v_pool,
                                   const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                                   const __nv_bfloat16* __restrict__ v, int64_t v_stride,
                                   const int32_t* __restrict__ slot_mapping, int num_tokens,
                                   int row_elems) {
  const int chunks = row_elems / 8;
  const int64_t total = int64_t(num_tokens) * chunks;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int t = int(i / chunks);
    const int c = int(i % chunks) * 8;
    const int slot = slot_mapping[t];
    if (slot < 0) continue;
    const int64_t dst = int64_t(slot) * row_elems + c;
    Store8(k_pool + dst, Load8(k + int64_t(t) * k_stride + c));
    Store8(v_pool + dst, Load8(v + int64_t(t) * v_stride + c));
  }
}

__global__ void CompactKvByHeadKernel(const __nv_bfloat16* __restrict__ src_k,
                                      const __nv_bfloat16* __restrict__ src_v,
                                      int64_t src_stride,
                                      const int32_t* __restrict__ src_block_table,
                                      const int32_t* __restrict__ indices, int count,
                                      __nv_bfloat16* __restrict__ dst_k,
                                      __nv_bfloat16* __restrict__ dst_v,
                                      const int32_t* __restrict__ dst_block_table,
                                      int block_size, int kv_heads, int head_dim) {
  const int chunks = head_dim / 8;
  const int64_t total = int64_t(kv_heads) * count * chunks;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % chunks) * 8;
    const int64_t ht = i / chunks;
    const int t = int(ht % count);
    const int h = int(ht / count);
    const int s = indices[int64_t(h) * count + t];
    int64_t src;
    if (src_block_table != nullptr) {
      const int64_t gslot = int64_t(src_block_table[s / block_size]) * block_size + s % block_size;
      src = (gslot * kv_heads + h) * head_dim + c;
    } else {
      src = int64_t(s) * src_stride + int64_t(h) * head_dim + c;
    }
    const int64_t dslot = int64_t(dst_block_table[t / block_size]) * block_size + t % block_size;
    const int64_t dst = (dslot * kv_heads + h) * head_dim + c;
    Store8(dst_k + dst, Load8(src_k + src));
    Store8(dst_v + dst, Load8(src_v + src));
  }
}

}  // namespace

cudaError_t LaunchCopyRows(const Bf16* src, int64_t src_stride, int src_rows,
                           const int32_t* indices, int num_indices, int cols, Bf16* dst,
                           int64_t dst_stride, cudaStream_t stream) {
  if (num_indices <= 0) return cudaSuccess;
  const int threads = 128;
  const bool vectorized = cols % 8 == 0 && src_stride % 8 == 0 && dst_stride % 8 == 0 &&
                          IsAligned16(src) && IsAligned16(dst);
  if (vectorized) {
    CopyRowsKernel<true><<<num_indices, threads, 0, stream>>>(
        AsNv(src), src_stride, src_rows, indices, cols, AsNv(dst), dst_stride);
  } else {
    CopyRowsKernel<false><<<num_indices, threads, 0, stream>>>(
        AsNv(src), src_stride, src_rows, indices, cols, AsNv(dst), dst_stride);
  }
  return cudaGetLastError();
}

cudaError_t LaunchGatherInt32(const int32_t* src, int src_len, const int32_t* indices,
                              int num_indices, int32_t* dst, cudaStream_t stream) {
  if (num_indices <= 0) return cudaSuccess;
  GatherInt32Kernel<<<GridFor(num_indices, 256), 256, 0, stream>>>(src, src_len, indices,
                                                                   num_indices, dst);
  return cudaGetLastError();
}

cudaError_t LaunchAddRmsNorm(Bf16* residual, const Bf16* x, const Bf16* weight, int num_rows,
                             int hidden, float eps, Bf16* out, cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  const bool vectorized = hidden % 8 == 0 && IsAligned16(residual) && IsAligned16(x) &&
                          IsAligned16(weight) && IsAligned16(out);
  // Enough threads that each handles a few 16-byte vectors of a typical 2k-8k row.
  const int vecs = vectorized ? hidden / 8 : hidden;
  int threads = 32;
  while (threads < 1024 && threads * 4 < vecs) threads *= 2;
  if (vectorized) {
    AddRmsNormKernel<true><<<num_rows, threads, 0, stream>>>(
        AsNv(residual), AsNv(x), AsNv(weight), hidden, eps, AsNv(out));
  } else {
    AddRmsNormKernel<false><<<num_rows, threads, 0, stream>>>(
        AsNv(residual), AsNv(x), AsNv(weight), hidden, eps, AsNv(out));
  }
  return cudaGetLastError();
}

cudaError_t LaunchRope(Bf16* x, int num_tokens, int num_heads, int head_dim, int64_t row_stride,
                       const int32_t* positions, const float* inv_freq, cudaStream_t stream) {
  const int64_t total = int64_t(num_tokens) * num_heads * (head_dim / 2);
  if (total <= 0) return cudaSuccess;
  RopeKernel<<<GridFor(total, 256), 256, 0, stream>>>(AsNv(x), num_tokens, num_heads,
                                                      head_dim / 2, row_stride, positions,
                                                      inv_freq);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const Bf16* gate, int64_t gate_stride, const Bf16* up,
                         int64_t up_stride, int rows, int cols, Bf16* out, int64_t out_stride,
                         cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const bool vec = cols % 8 == 0 && gate_stride % 8 == 0 && up_stride % 8 == 0 &&
                   out_stride % 8 == 0 && IsAligned16(gate) && IsAligned16(up) &&
                   IsAligned16(out);
  const int64_t total = int64_t(rows) * (vec ? cols / 8 : cols);
  if (vec) {
    SwiGluKernel<true><<<GridFor(total, 256), 256, 0, stream>>>(
        AsNv(gate), gate_stride, AsNv(up), up_stride, rows, cols, AsNv(out),
        out_stride);
  } else {
    SwiGluKernel<false><<<GridFor(total, 256), 256, 0, stream>>>(
        AsNv(gate), gate_stride, AsNv(up), up_stride, rows, cols, AsNv(out),
        out_stride);
  }
  return cudaGetLastError();
}

cudaError_t LaunchArgmax(const float* logits, int64_t stride, int rows, int vocab, int32_t* out,
                         cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  ArgmaxKernel<float><<<rows, 1024, 0, stream>>>(logits, stride, vocab, out);
  return cudaGetLastError();
}

cudaError_t LaunchArgmax(const Bf16* logits, int64_t stride, int rows, int vocab, int32_t* out,
                         cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  ArgmaxKernel<__nv_bfloat16><<<rows, 1024, 0, stream>>>(AsNv(logits), stride, vocab, out);
  return cudaGetLastError();
}

cudaError_t LaunchWritePagedKv(const PagedKvLayer& layer, const Bf16* k, int64_t k_stride,
                               const Bf16* v, int64_t v_stride, const int32_t* slot_mapping,
                               int num_tokens, cudaStream_t stream) {
  const int row = layer.num_kv_heads * layer.head_dim;
  const int64_t total = int64_t(num_tokens) * (row / 8);
  if (total <= 0) return cudaSuccess;
  WritePagedKvKernel<<<GridFor(total, 256), 256, 0, stream>>>(
      AsNv(layer.k), AsNv(layer.v), AsNv(k), k_stride, AsNv(v), v_stride,
      slot_mapping, num_tokens, row);
  return cudaGetLastError();
}

cudaError_t LaunchCompactKvByHead(const Bf16* src_k, const Bf16* src_v, int64_t src_stride,
                                  const int32_t* src_block_table, const int32_t* indices,
                                  int count, const PagedKvLayer& dst,
                                  const int32_t* dst_block_table, cudaStream_t stream) {
  const int64_t total = int64_t(dst.num_kv_heads) * count * (dst.head_dim / 8);
  if (total <= 0) return cudaSuccess;
  CompactKvByHeadKernel<<<GridFor(total, 256), 256, 0, stream>>>(
      AsNv(src_k), AsNv(src_v), src_stride, src_block_table, indices, count,
      AsNv(dst.k), AsNv(dst.v), dst_block_table, dst.block_size, dst.num_kv_heads,
      dst.head_dim);
  return cudaGetLastError();
}

}  // namespace claa::gpu::internal
