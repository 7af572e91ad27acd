// Kernels of the GPU model that kernels.h does not cover (model_kernels.h). All are small,
// memory-bound, one-pass kernels; none runs more than once per layer.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/model_launch.h"

namespace claa::gpu::internal {
namespace {

inline unsigned GridFor(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > (1 << 20)) blocks = 1 << 20;
  return unsigned(blocks);
}

__global__ void AddBiasRowsKernel(__nv_bfloat16* __restrict__ x, int64_t stride, int rows,
                                  int cols, const __nv_bfloat16* __restrict__ bias) {
  const int64_t total = int64_t(rows) * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int c = int(i % cols);
    __nv_bfloat16* p = x + r * stride + c;
    *p = __float2bfloat16(__bfloat162float(*p) + __bfloat162float(bias[c]));
  }
}

__global__ void SumRowsKernel(const float* __restrict__ in, int num_rows, int len,
                              int64_t row_stride, float* __restrict__ out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= len) return;
  float sum = 0.f;
  for (int r = 0; r < num_rows; ++r) sum += in[int64_t(r) * row_stride + j];
  out[j] = sum;
}

// raw[g][j] = sum over the group's heads h (in order) of q_h . k_j (fp32), one thread per key;
// the query heads sit in shared memory as floats and are read as broadcasts.
__global__ void LastQueryLogitsKernel(const __nv_bfloat16* __restrict__ q_last,
                                      const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                                      int prefix, int num_heads, int num_kv_heads, int head_dim,
                                      float* __restrict__ raw) {
  extern __shared__ float sq[];  // [num_heads][head_dim]
  for (int i = threadIdx.x; i < num_heads * head_dim; i += blockDim.x) {
    sq[i] = __bfloat162float(q_last[i]);
  }
  __syncthreads();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= prefix) return;
  const int group = num_heads / num_kv_heads;
  const __nv_bfloat16* kr = k + int64_t(j) * k_stride;
  for (int g = 0; g < num_kv_heads; ++g) {
    float acc = 0.f;
    for (int hh = 0; hh < group; ++hh) {
      const float* qh = sq + (g * group + hh) * head_dim;
      float dot = 0.f;
      for (int d = 0; d < head_dim; d += 8) {
        float kf[8];
        Unpack8(Load8(kr + g * head_dim + d), kf);
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += qh[d + e] * kf[e];
      }
      acc += dot;
    }
    raw[int64_t(g) * prefix + j] = acc;
  }
}

// avg_pool1d(kernel, stride 1, padding kernel / 2, count_include_pad=True) of each row.
__global__ void AvgPoolRowsKernel(const float* __restrict__ raw, int len, int kernel,
                                  float* __restrict__ out, int64_t out_stride) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const int g = blockIdx.y;
  if (j >= len) return;
  const int r = kernel / 2;
  const float* row = raw + int64_t(g) * len;
  float sum = 0.f;
  for (int t = max(0, j - r); t <= min(len - 1, j + r); ++t) sum += row[t];
  out[int64_t(g) * out_stride + j] = sum / float(kernel);
}

// Sequence blockIdx.y: 16-byte chunks of its first kv_lens[b] slots, paged -> contiguous.
__global__ void GatherPagedKvKernel(const __nv_bfloat16* __restrict__ k_pool,
                                    const __nv_bfloat16* __restrict__ v_pool,
                                    const int32_t* __restrict__ block_tables,
                                    int max_blocks_per_seq, int block_size, int row_elems,
                                    const int32_t* __restrict__ kv_lens,
                                    const int32_t* __restrict__ cu_dst,
                                    __nv_bfloat16* __restrict__ dst_k,
                                    __nv_bfloat16* __restrict__ dst_v, int64_t dst_stride) {
  const int b = blockIdx.y;
  const int chunks = row_elems / 8;
  const int64_t total = int64_t(kv_lens[b]) * chunks;
  const int32_t* table = block_tables + int64_t(b) * max_blocks_per_seq;
  const int64_t dst0 = cu_dst[b];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int s = int(i / chunks);
    const int c = int(i % chunks) * 8;
    const int64_t src = (int64_t(table[s / block_size]) * block_size + s % block_size) *
                            row_elems + c;
    const int64_t dst = (dst0 + s) * dst_stride + c;
    Store8(dst_k + dst, Load8(k_pool + src));
    Store8(dst_v + dst, Load8(v_pool + src));
  }
}

// One warp per (query row, head, sequence): lanes hold head dimensions (lane + 32 c), keys go
// one at a time with an online softmax in fp32. Slow but shape-agnostic: the attention of
// models whose head_dim the tensor-core kernels do not cover (stories260K: 8).
constexpr int kWarpAttnWarps = 4;
constexpr int kWarpAttnMaxChunks = 8;  // head_dim <= 256

__global__ void __launch_bounds__(kWarpAttnWarps * 32)
    VarlenAttentionWarpKernel(const VarlenAttentionArgs a) {
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z, h = blockIdx.y;
  const int q_start = a.cu_seqlens_q[b];
  const int q_len = a.cu_seqlens_q[b + 1] - q_start;
  const int* cu_k = a.cu_seqlens_k != nullptr ? a.cu_seqlens_k : a.cu_seqlens_q;
  const int k_start = cu_k[b];
  const int k_len = cu_k[b + 1] - k_start;
  const int i = blockIdx.x * kWarpAttnWarps + (threadIdx.x >> 5);
  if (i >= q_len) return;
  const int d = a.head_dim;
  const int g = h / (a.num_heads / a.num_kv_heads);
  const int visible = k_len - q_len + i + 1;  // bottom-right causal
  const __nv_bfloat16* q = AsNv(a.q) + int64_t(q_start + i) * a.q_stride + int64_t(h) * d;
  float qv[kWarpAttnMaxChunks], acc[kWarpAttnMaxChunks];
#pragma unroll
  for (int c = 0; c < kWarpAttnMaxChunks; ++c) {
    const int dim = lane + 32 * c;
    qv[c] = dim < d ? __bfloat162float(q[dim]) : 0.f;
    acc[c] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = 0; j < visible; ++j) {
    const __nv_bfloat16* k = AsNv(a.k) + int64_t(k_start + j) * a.k_stride + int64_t(g) * d;
    const __nv_bfloat16* v = AsNv(a.v) + int64_t(k_start + j) * a.v_stride + int64_t(g) * d;
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < kWarpAttnMaxChunks; ++c) {
      const int dim = lane + 32 * c;
      if (dim < d) s += qv[c] * __bfloat162float(k[dim]);
    }
    s = WarpSum(s) * a.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int c = 0; c < kWarpAttnMaxChunks; ++c) {
      const int dim = lane + 32 * c;
      if (dim < d) acc[c] = acc[c] * corr + p * __bfloat162float(v[dim]);
    }
    m = m_new;
  }
  __nv_bfloat16* out = AsNv(a.out) + int64_t(q_start + i) * a.out_stride + int64_t(h) * d;
  const float inv = visible > 0 ? 1.f / l : 0.f;
#pragma unroll
  for (int c = 0; c < kWarpAttnMaxChunks; ++c) {
    const int dim = lane + 32 * c;
    if (dim < d) out[dim] = __float2bfloat16(acc[c] * inv);
  }
}

__global__ void AddOffsetInt32Kernel(const int32_t* __restrict__ src, int n, int32_t offset,
                                     int32_t* __restrict__ dst) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    dst[i] = src[i] + offset;
  }
}

__device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void FillUniformBf16Kernel(__nv_bfloat16* __restrict__ p, size_t n, uint64_t seed,
                                      float lo, float span) {
  const uint64_t key = SplitMix64(seed);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t h = SplitMix64(key ^ uint64_t(i));
    const float u = float(h >> 40) * (1.0f / 16777216.0f);  // 24 bits -> [0, 1)
    p[i] = __float2bfloat16(lo + span * u);
  }
}

}  // namespace

cudaError_t LaunchAddBiasRows(Bf16* x, int64_t stride, int rows, int cols, const Bf16* bias,
                              cudaStream_t stream) {
  const int threads = 256;
  AddBiasRowsKernel<<<GridFor(int64_t(rows) * cols, threads), threads, 0, stream>>>(
      AsNv(x), stride, rows, cols, AsNv(bias));
  return cudaGetLastError();
}

cudaError_t LaunchSumRows(const float* in, int num_rows, int len, int64_t row_stride, float* out,
                          cudaStream_t stream) {
  const int threads = 256;
  SumRowsKernel<<<GridFor(len, threads), threads, 0, stream>>>(in, num_rows, len, row_stride,
                                                                out);
  return cudaGetLastError();
}

cudaError_t LaunchLastQueryScores(const LastQueryScoresArgs& a, cudaStream_t stream) {
  const int prefix = a.prompt_len - a.window;
  if (prefix <= 0) return cudaSuccess;
  float* raw = static_cast<float*>(a.workspace);
  const int threads = 128;
  const size_t smem = size_t(a.num_heads) * a.head_dim * sizeof(float);
  LastQueryLogitsKernel<<<GridFor(prefix, threads), threads, smem, stream>>>(
      AsNv(a.q_last), AsNv(a.k), a.k_stride, prefix, a.num_heads, a.num_kv_heads, a.head_dim,
      raw);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  AvgPoolRowsKernel<<<dim3(GridFor(prefix, 256), a.num_kv_heads), 256, 0, stream>>>(
      raw, prefix, a.pool_kernel, a.out, a.out_stride);
  return cudaGetLastError();
}

cudaError_t LaunchGatherPagedKv(const PagedKvLayer& layer, const int32_t* block_tables,
                                int max_blocks_per_seq, const int32_t* kv_lens,
                                const int32_t* cu_dst, int batch, int max_kv_len, Bf16* dst_k,
                                Bf16* dst_v, int64_t dst_stride, cudaStream_t stream) {
  const int row_elems = layer.num_kv_heads * layer.head_dim;
  const int threads = 256;
  unsigned bx = GridFor(int64_t(max_kv_len) * (row_elems / 8), threads);
  if (bx > 4096) bx = 4096;  // grid-stride beyond that; y carries the batch
  GatherPagedKvKernel<<<dim3(bx, batch), threads, 0, stream>>>(
      AsNv(layer.k), AsNv(layer.v), block_tables, max_blocks_per_seq, layer.block_size,
      row_elems, kv_lens, cu_dst, AsNv(dst_k), AsNv(dst_v), dst_stride);
  return cudaGetLastError();
}

cudaError_t LaunchVarlenAttentionWarp(const VarlenAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid((a.max_seqlen_q + kWarpAttnWarps - 1) / kWarpAttnWarps, a.num_heads, a.batch);
  VarlenAttentionWarpKernel<<<grid, kWarpAttnWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchAddOffsetInt32(const int32_t* src, int n, int32_t offset, int32_t* dst,
                                 cudaStream_t stream) {
  const int threads = 256;
  AddOffsetInt32Kernel<<<GridFor(n, threads), threads, 0, stream>>>(src, n, offset, dst);
  return cudaGetLastError();
}

cudaError_t LaunchFillUniformBf16(Bf16* p, size_t n, uint64_t seed, float lo, float hi,
                                  cudaStream_t stream) {
  const int threads = 256;
  int64_t blocks = (int64_t(n) + threads - 1) / threads;
  if (blocks > 132 * 64) blocks = 132 * 64;  // grid-stride loop over the rest
  FillUniformBf16Kernel<<<unsigned(blocks < 1 ? 1 : blocks), threads, 0, stream>>>(
      AsNv(p), n, seed, lo, hi - lo);
  return cudaGetLastError();
}

}  // namespace claa::gpu::internal
