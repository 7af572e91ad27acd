// Decode attention over the paged KV cache (one query per sequence), flash-decoding style.
//
// Decode is memory-bound: every cached K/V byte is read once per step, and there is one query
// row per head, too little for tensor cores. So the kernel streams keys with 16-byte loads and
// does the dot products on CUDA cores:
//  - a thread block handles kG query heads that share one KV head (GQA), so each K/V row is read
//    once for the whole group;
//  - head_dim / 8 lanes cover one key row (8 values each), so a warp processes 2 (d = 128) or 4
//    (d = 64) keys per step and the dot product needs only log2(d / 8) shuffles;
//  - each lane group keeps its own online-softmax state; the block merges them in shared memory;
//  - long contexts are split over several blocks (grid.z), whose partial (max, sum, acc) go to a
//    workspace and are merged by a second small kernel.
// Lengths come from kv_lens per sequence or per (sequence, KV head): CLAA layers hold different
// token counts, so nothing here assumes slot == position.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/launch.h"

namespace claa::gpu::internal {
namespace {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int kMinKeysPerSplit = 256;
constexpr int kMaxSplits = 64;

template <int kD, int kG>
__global__ void __launch_bounds__(kDecodeThreads)
    PagedDecodeKernel(const DecodeAttentionArgs args, int chunk, float scale_log2,
                      float* __restrict__ partial) {
  constexpr int kT = kD / 8;                     // lanes per key row
  constexpr int kKeysPerWarp = 32 / kT;
  constexpr int kGroups = kDecodeWarps * kKeysPerWarp;  // lane groups per block
  __shared__ float sm_m[kGroups][kG];
  __shared__ float sm_l[kGroups][kG];
  __shared__ float sm_acc[kGroups][kG][kD];

  const int head0 = blockIdx.x * kG;
  const int b = blockIdx.y;
  const int split = blockIdx.z;
  const int num_splits = gridDim.z;
  const int kv_heads = args.cache.num_kv_heads;
  const int kv_head = head0 / (args.num_heads / kv_heads);
  const int len = args.per_head_lengths ? args.kv_lens[b * kv_heads + kv_head] : args.kv_lens[b];
  const int s0 = split * chunk;
  const int s1 = min(len, s0 + chunk);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sub = lane % kT;            // which 8 dims of the row
  const int key_in_warp = lane / kT;    // which key of the warp's step
  const int group_id = warp * kKeysPerWarp + key_in_warp;

  float q[kG][8];
  const __nv_bfloat16* qb = AsNv(args.q) + int64_t(b) * args.q_stride + sub * 8;
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    Unpack8(Load8(qb + int64_t(head0 + g) * kD), q[g]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[g][i] *= scale_log2;
  }
  float m[kG], l[kG], acc[kG][8];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.f;
  }

  const int bs = args.cache.block_size;
  const int32_t* table = args.block_tables + int64_t(b) * args.max_blocks_per_seq;
  const __nv_bfloat16* kpool = AsNv(args.cache.k);
  const __nv_bfloat16* vpool = AsNv(args.cache.v);
  // The loop bound is uniform over the warp (the shuffles below need every lane).
  for (int base = s0 + warp * kKeysPerWarp; base < s1; base += kDecodeWarps * kKeysPerWarp) {
    const int key = base + key_in_warp;
    const bool valid = key < s1;
    float kf[8], vf[8];
    if (valid) {
      const int64_t slot = int64_t(table[key / bs]) * bs + key % bs;
      const int64_t off = (slot * kv_heads + kv_head) * kD + sub * 8;
      const Bf16x8 kv = Load8(kpool + off);
      const Bf16x8 vv = Load8(vpool + off);
      Unpack8(kv, kf);
      Unpack8(vv, vf);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) kf[i] = vf[i] = 0.f;
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      float dot = 0.f;
#pragma unroll
      for (int i = 0; i < 8; ++i) dot += q[g][i] * kf[i];
#pragma unroll
      for (int o = kT / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      if (valid) {
        const float new_m = fmaxf(m[g], dot);
        const float corr = exp2f(m[g] - new_m);
        const float p = exp2f(dot - new_m);
        m[g] = new_m;
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = acc[g][i] * corr + p * vf[i];
      }
    }
  }

  // Merge the lane groups of the block.
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    if (sub == 0) {
      sm_m[group_id][g] = m[g];
      sm_l[group_id][g] = l[g];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) sm_acc[group_id][g][sub * 8 + i] = acc[g][i];
  }
  __syncthreads();
  for (int t = threadIdx.x; t < kG * kD; t += kDecodeThreads) {
    const int g = t / kD, d = t % kD;
    float mx = -INFINITY;
    for (int i = 0; i < kGroups; ++i) mx = fmaxf(mx, sm_m[i][g]);
    float sum = 0.f, a = 0.f;
    if (mx != -INFINITY) {
      for (int i = 0; i < kGroups; ++i) {
        const float w = exp2f(sm_m[i][g] - mx);  // 0 for groups that saw no key
        sum += sm_l[i][g] * w;
        a += sm_acc[i][g][d] * w;
      }
    }
    const int head = head0 + g;
    if (num_splits == 1) {
      const float out = sum > 0.f ? a / sum : 0.f;
      AsNv(args.out)[int64_t(b) * args.out_stride + int64_t(head) * kD + d] = __float2bfloat16(out);
    } else {
      float* p = partial + ((int64_t(b) * args.num_heads + head) * num_splits + split) * (kD + 2);
      if (d == 0) {
        p[0] = mx;
        p[1] = sum;
      }
      p[2 + d] = a;
    }
  }
}

// Merges the splits of one (sequence, head): one thread per output dimension.
template <int kD>
__global__ void DecodeCombineKernel(const float* __restrict__ partial, int num_heads,
                                    int num_splits, Bf16* out, int64_t out_stride) {
  const int head = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  const float* p = partial + (int64_t(b) * num_heads + head) * num_splits * (kD + 2);
  float mx = -INFINITY;
  for (int s = 0; s < num_splits; ++s) mx = fmaxf(mx, p[s * (kD + 2)]);
  float sum = 0.f, a = 0.f;
  if (mx != -INFINITY) {
    for (int s = 0; s < num_splits; ++s) {
      const float w = exp2f(p[s * (kD + 2)] - mx);
      sum += p[s * (kD + 2) + 1] * w;
      a += p[s * (kD + 2) + 2 + d] * w;
    }
  }
  AsNv(out)[int64_t(b) * out_stride + int64_t(head) * kD + d] =
      __float2bfloat16(sum > 0.f ? a / sum : 0.f);
}

template <int kD, int kG>
cudaError_t LaunchDecode(const DecodeAttentionArgs& args, int num_splits, cudaStream_t stream) {
  const int chunk = (args.max_kv_len + num_splits - 1) / num_splits;
  const dim3 grid(args.num_heads / kG, args.batch, num_splits);
  const float scale_log2 = args.scale * 1.4426950408889634f;
  float* partial = static_cast<float*>(args.workspace);
  PagedDecodeKernel<kD, kG><<<grid, kDecodeThreads, 0, stream>>>(args, chunk, scale_log2, partial);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || num_splits == 1) return err;
  DecodeCombineKernel<kD><<<dim3(args.num_heads, args.batch), kD, 0, stream>>>(
      partial, args.num_heads, num_splits, args.out, args.out_stride);
  return cudaGetLastError();
}

template <int kD>
cudaError_t DispatchGroup(const DecodeAttentionArgs& args, int num_splits, cudaStream_t stream) {
  // The largest head count per block that divides the GQA group: every block then reads one KV
  // head, and the common groups (1, 2, 4, 8, and their multiples) need one template each.
  const int group = args.num_heads / args.cache.num_kv_heads;
  if (group % 8 == 0) return LaunchDecode<kD, 8>(args, num_splits, stream);
  if (group % 4 == 0) return LaunchDecode<kD, 4>(args, num_splits, stream);
  if (group % 2 == 0) return LaunchDecode<kD, 2>(args, num_splits, stream);
  return LaunchDecode<kD, 1>(args, num_splits, stream);
}

}  // namespace

size_t DecodePartialFloats(int head_dim) { return size_t(head_dim) + 2; }

int DecodeMaxSplits(int max_kv_len) {
  const int by_len = (max_kv_len + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  return std::clamp(by_len, 1, kMaxSplits);
}

cudaError_t LaunchPagedDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream) {
  if (args.batch <= 0 || args.num_heads <= 0) return cudaSuccess;
  // Splits: enough blocks for about two waves over the SMs, each split at least
  // kMinKeysPerSplit keys (below that the merge costs more than it saves), and no more than the
  // caller's workspace holds.
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  const int group = args.num_heads / args.cache.num_kv_heads;
  const int per_block = group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
  const int64_t blocks = int64_t(args.batch) * (args.num_heads / per_block);
  int splits = int(std::min<int64_t>((2 * sms + blocks - 1) / blocks, kMaxSplits));
  splits = std::min(splits, DecodeMaxSplits(args.max_kv_len));
  const size_t per_split = size_t(args.batch) * args.num_heads *
                           DecodePartialFloats(args.cache.head_dim) * sizeof(float);
  const int64_t by_workspace = args.workspace == nullptr ? 1 : args.workspace_bytes / per_split;
  splits = int(std::max<int64_t>(1, std::min<int64_t>(splits, by_workspace)));
  switch (args.cache.head_dim) {
    case 64: return DispatchGroup<64>(args, splits, stream);
    case 128: return DispatchGroup<128>(args, splits, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace claa::gpu::internal
