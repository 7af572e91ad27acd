// CLAA scoring kernels (DESIGN.md §2): per-layer window scores, the z-score / max aggregation
// and top-k selection. All are small next to the prefill itself (window = 8 queries against the
// prompt), so they favour simple, exact-to-fp32 code over speed: scores decide which tokens
// survive, and the GPU's choice should match the CPU's.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/launch.h"

namespace claa::gpu::internal {
namespace {

constexpr int kScoreThreads = 128;

// Logits of the window queries of head blockIdx.y against keys blockIdx.x * 128 + tid:
// logits[(h * window + i) * prompt_len + j] = scale * q_i . k_j, or -inf where window query i
// (position prefix_len + i) may not see key j. One thread per key, the queries in shared memory
// (read as broadcasts), up to kMaxWindow accumulators in registers.
__global__ void __launch_bounds__(kScoreThreads)
    WindowLogitsKernel(const __nv_bfloat16* __restrict__ q, int64_t q_stride,
                       const __nv_bfloat16* __restrict__ k, int64_t k_stride, int prompt_len,
                       int window, int group, int head_dim, float scale,
                       float* __restrict__ logits) {
  extern __shared__ float sq[];  // [window][head_dim]
  const int h = blockIdx.y;
  const int kv_head = h / group;
  for (int i = threadIdx.x; i < window * head_dim; i += blockDim.x) {
    const int w = i / head_dim, d = i % head_dim;
    sq[i] = __bfloat162float(q[int64_t(w) * q_stride + int64_t(h) * head_dim + d]);
  }
  __syncthreads();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= prompt_len) return;
  float acc[kMaxWindow];
#pragma unroll
  for (int i = 0; i < kMaxWindow; ++i) acc[i] = 0.f;
  const __nv_bfloat16* kr = k + int64_t(j) * k_stride + int64_t(kv_head) * head_dim;
  for (int d = 0; d < head_dim; d += 8) {
    float kf[8];
    Unpack8(Load8(kr + d), kf);
#pragma unroll
    for (int i = 0; i < kMaxWindow; ++i) {
      if (i < window) {
        const float4 a = *reinterpret_cast<const float4*>(sq + i * head_dim + d);
        const float4 b = *reinterpret_cast<const float4*>(sq + i * head_dim + d + 4);
        acc[i] += a.x * kf[0] + a.y * kf[1] + a.z * kf[2] + a.w * kf[3] + b.x * kf[4] +
                  b.y * kf[5] + b.z * kf[6] + b.w * kf[7];
      }
    }
  }
  const int prefix_len = prompt_len - window;
#pragma unroll
  for (int i = 0; i < kMaxWindow; ++i) {
    if (i < window) {
      logits[(int64_t(h) * window + i) * prompt_len + j] =
          j > prefix_len + i ? -INFINITY : acc[i] * scale;
    }
  }
}

// Softmax statistics of one logits row: stats = (max, 1 / sum exp(x - max)).
__global__ void RowSoftmaxStatsKernel(const float* __restrict__ logits, int len,
                                      float* __restrict__ stats) {
  __shared__ float red[32];
  const float* row = logits + int64_t(blockIdx.x) * len;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = BlockMax(mx, red);
  float sum = 0.f;
  for (int j = threadIdx.x; j < len; j += blockDim.x) sum += expf(row[j] - mx);
  sum = BlockSum(sum, red);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = mx;
    stats[2 * blockIdx.x + 1] = 1.f / sum;
  }
}

// raw[g][j] = sum over the group's query heads and the window queries of softmax(j), j < prefix.
__global__ void GroupProbSumKernel(const float* __restrict__ logits,
                                   const float* __restrict__ stats, int prompt_len, int window,
                                   int group, float* __restrict__ raw) {
  const int prefix_len = prompt_len - window;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const int g = blockIdx.y;
  if (j >= prefix_len) return;
  float sum = 0.f;
  for (int hh = 0; hh < group; ++hh) {
    const int h = g * group + hh;
    for (int i = 0; i < window; ++i) {
      const int row = h * window + i;
      sum += expf(logits[int64_t(row) * prompt_len + j] - stats[2 * row]) * stats[2 * row + 1];
    }
  }
  raw[int64_t(g) * prefix_len + j] = sum;
}

// avg_pool1d(kernel, stride 1, padding kernel / 2, count_include_pad=True) of each row.
__global__ void AvgPoolKernel(const float* __restrict__ raw, int len, int kernel,
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

// z-score statistics per row in double (as claa::ClaaScorer): (mean, 1 / population std, or 0
// for a constant row).
__global__ void ZStatsKernel(const float* __restrict__ scores, int len, int64_t row_stride,
                             double* __restrict__ stats) {
  __shared__ double red[32];
  const float* row = scores + int64_t(blockIdx.x) * row_stride;
  double sum = 0.0;
  for (int j = threadIdx.x; j < len; j += blockDim.x) sum += row[j];
  const double mean = BlockSum(sum, red) / len;
  double sq = 0.0;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const double d = row[j] - mean;
    sq += d * d;
  }
  const double sd = sqrt(BlockSum(sq, red) / len);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = mean;
    stats[2 * blockIdx.x + 1] = sd > 0.0 ? 1.0 / sd : 0.0;
  }
}

__global__ void ZMaxKernel(const float* __restrict__ scores, int num_rows, int len,
                           int64_t row_stride, const double* __restrict__ stats,
                           float* __restrict__ out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= len) return;
  float best = -INFINITY;
  for (int r = 0; r < num_rows; ++r) {
    const float z = float((scores[int64_t(r) * row_stride + j] - stats[2 * r]) * stats[2 * r + 1]);
    best = fmaxf(best, z);  // like std::max(best, z): a NaN z leaves best unchanged
  }
  out[j] = best;
}

// One 64-bit key per element whose order is the selection order: larger score first (NaN as
// -inf, -0 as +0), then lower index. All keys of a row are distinct, so the k largest keys are
// exactly the selection.
__device__ __forceinline__ uint64_t SelectKey(float x, int idx) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.f) x = 0.f;
  uint32_t bits = __float_as_uint(x);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (uint64_t(bits) << 32) | uint32_t(~uint32_t(idx));
}

constexpr int kTopKThreads = 1024;

// One block per row: radix-select the k-th largest key (8 passes of 8 bits, MSB first), then
// write the indices whose key is >= it in ascending order with a block-wide prefix sum.
__global__ void __launch_bounds__(kTopKThreads)
    TopKKernel(const float* __restrict__ scores, int n, int64_t row_stride, int k,
               int32_t* __restrict__ out, int64_t out_stride) {
  __shared__ unsigned hist[256];
  __shared__ uint64_t s_prefix;
  __shared__ int s_remaining;
  __shared__ int warp_count[32];
  const float* row = scores + int64_t(blockIdx.x) * row_stride;
  int32_t* dst = out + int64_t(blockIdx.x) * out_stride;
  if (k <= 0) return;

  uint64_t prefix = 0, mask = 0;
  int remaining = k;  // rank (1-based, from the top) of the wanted key among those matching
  for (int pass = 0; pass < 8; ++pass) {
    const int shift = 56 - 8 * pass;
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const uint64_t key = SelectKey(row[i], i);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + int(hist[d]) >= remaining) {
          s_prefix = prefix | (uint64_t(d) << shift);
          s_remaining = remaining - above;
          break;
        }
        above += hist[d];
      }
    }
    __syncthreads();
    prefix = s_prefix;
    remaining = s_remaining;
    mask |= uint64_t(0xff) << shift;
  }
  const uint64_t threshold = prefix;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int written = 0;
  for (int chunk = 0; chunk < n; chunk += blockDim.x) {
    const int i = chunk + threadIdx.x;
    const bool take = i < n && SelectKey(row[i], i) >= threshold;
    const unsigned ballot = __ballot_sync(0xffffffffu, take);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < int(blockDim.x >> 5); ++w) {
      const int c = warp_count[w];
      if (w < warp) before += c;
      total += c;
    }
    if (take) dst[written + before + __popc(ballot & ((1u << lane) - 1u))] = i;
    written += total;
    __syncthreads();  // warp_count is rewritten by the next chunk
  }
}

inline unsigned Blocks(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

inline size_t AlignUp(size_t x) { return (x + 255) & ~size_t(255); }

}  // namespace

size_t WindowScoresWorkspaceFloats(int prompt_len, int window, int num_heads, int num_kv_heads,
                                   size_t* logits_floats, size_t* stats_floats) {
  const int prefix = prompt_len > window ? prompt_len - window : 0;
  *logits_floats = AlignUp(size_t(num_heads) * window * prompt_len * sizeof(float)) / 4;
  *stats_floats = AlignUp(size_t(num_heads) * window * 2 * sizeof(float)) / 4;
  return *logits_floats + *stats_floats + size_t(num_kv_heads) * prefix;
}

cudaError_t LaunchWindowScores(const WindowScoresArgs& a, cudaStream_t stream) {
  const int prefix = a.prompt_len - a.window;
  if (prefix <= 0) return cudaSuccess;
  size_t logits_floats = 0, stats_floats = 0;
  WindowScoresWorkspaceFloats(a.prompt_len, a.window, a.num_heads, a.num_kv_heads,
                              &logits_floats, &stats_floats);
  float* logits = static_cast<float*>(a.workspace);
  float* stats = logits + logits_floats;
  float* raw = stats + stats_floats;
  const int group = a.num_heads / a.num_kv_heads;

  const size_t smem = size_t(a.window) * a.head_dim * sizeof(float);
  WindowLogitsKernel<<<dim3(Blocks(a.prompt_len, kScoreThreads), a.num_heads), kScoreThreads,
                       smem, stream>>>(AsNv(a.q_window), a.q_stride, AsNv(a.k), a.k_stride,
                                       a.prompt_len, a.window, group, a.head_dim, a.scale,
                                       logits);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  RowSoftmaxStatsKernel<<<a.num_heads * a.window, 256, 0, stream>>>(logits, a.prompt_len, stats);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  GroupProbSumKernel<<<dim3(Blocks(prefix, 256), a.num_kv_heads), 256, 0, stream>>>(
      logits, stats, a.prompt_len, a.window, group, raw);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  AvgPoolKernel<<<dim3(Blocks(prefix, 256), a.num_kv_heads), 256, 0, stream>>>(
      raw, prefix, a.pool_kernel, a.out, a.out_stride);
  return cudaGetLastError();
}

cudaError_t LaunchZScoreMax(const float* scores, int num_rows, int len, int64_t row_stride,
                            float* out, double* stats, cudaStream_t stream) {
  if (len <= 0) return cudaSuccess;
  if (num_rows > 0) {
    ZStatsKernel<<<num_rows, 256, 0, stream>>>(scores, len, row_stride, stats);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  ZMaxKernel<<<Blocks(len, 256), 256, 0, stream>>>(scores, num_rows, len, row_stride, stats, out);
  return cudaGetLastError();
}

cudaError_t LaunchTopKAscending(const float* scores, int num_rows, int n, int64_t row_stride,
                                int k, int32_t* out, int64_t out_stride, cudaStream_t stream) {
  if (num_rows <= 0 || k <= 0) return cudaSuccess;
  TopKKernel<<<num_rows, kTopKThreads, 0, stream>>>(scores, n, row_stride, k, out, out_stride);
  return cudaGetLastError();
}

}  // namespace claa::gpu::internal
