// Causal flash-attention prefill for variable-length batches (GQA, head_dim 64 / 128).
//
// One thread block computes a 128-query tile of one head of one sequence; 8 warps each own 16
// query rows. Keys and values stream through shared memory in 64-key tiles, double-buffered with
// cp.async so the next tile loads while the tensor cores work on this one. Per key tile:
//   S = Q K^T (mma.sync m16n8k16, Q fragments kept in registers for the whole loop),
//   online softmax in fp32 registers (log2 domain: exp2 of pre-scaled scores),
//   O += P V with P re-packed to bf16 straight from the S accumulators (the C fragment of two
//   adjacent n8 tiles is exactly the A fragment of one k16 step, so P never touches memory).
// Shared-memory rows are padded by 16 bytes so that the 8 row addresses of every ldmatrix land
// in distinct bank groups. This is a portable sm_80/sm_90 kernel (no wgmma/TMA): the Hopper-only
// path is future work (see kernels/README.md).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/launch.h"
#include "kernels/mma_util.cuh"

namespace claa::gpu::internal {
namespace {

constexpr int kBlockM = 128;
constexpr int kBlockN = 64;
constexpr int kWarps = kBlockM / 16;
constexpr int kThreads = kWarps * 32;

template <int kD>
struct FaLayout {
  static constexpr int kPad = kD + 8;  // row stride in elements
  static constexpr int kQElems = kBlockM * kPad;
  static constexpr int kKvElems = kBlockN * kPad;
  static constexpr size_t kBytes = size_t(kQElems + 4 * kKvElems) * sizeof(__nv_bfloat16);
};

template <int kD>
__global__ void __launch_bounds__(kThreads)
    FlashPrefillKernel(const VarlenAttentionArgs args, float scale_log2) {
  using L = FaLayout<kD>;
  constexpr int kPad = L::kPad;
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* sk = sq + L::kQElems;        // [2][kBlockN][kPad]
  __nv_bfloat16* sv = sk + 2 * L::kKvElems;   // [2][kBlockN][kPad]

  const int b = blockIdx.z;
  const int h = blockIdx.y;
  // Later query tiles see more keys: launch them first so the tail of the grid is short.
  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int q_start = args.cu_seqlens_q[b];
  const int q_len = args.cu_seqlens_q[b + 1] - q_start;
  const int* cu_k = args.cu_seqlens_k != nullptr ? args.cu_seqlens_k : args.cu_seqlens_q;
  const int k_start = cu_k[b];
  const int k_len = cu_k[b + 1] - k_start;
  const int m0 = m_block * kBlockM;
  if (m0 >= q_len) return;
  const int kv_head = h / (args.num_heads / args.num_kv_heads);
  // Bottom-right causal alignment: query i sees keys <= i + shift.
  const int shift = k_len - q_len;
  const int key_end = min(k_len, m0 + kBlockM + shift);
  const int n_blocks = key_end > 0 ? (key_end + kBlockN - 1) / kBlockN : 0;

  const __nv_bfloat16* qg = AsNv(args.q) + int64_t(q_start) * args.q_stride + int64_t(h) * kD;
  const __nv_bfloat16* kg = AsNv(args.k) + int64_t(k_start) * args.k_stride + int64_t(kv_head) * kD;
  const __nv_bfloat16* vg = AsNv(args.v) + int64_t(k_start) * args.v_stride + int64_t(kv_head) * kD;

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;

  for (int i = tid; i < kBlockM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool valid = m0 + r < q_len;
    CpAsync16(sq + r * kPad + c, qg + int64_t(valid ? m0 + r : 0) * args.q_stride + c, valid);
  }
  auto load_kv = [&](int nb, int stage) {
    __nv_bfloat16* dk = sk + stage * L::kKvElems;
    __nv_bfloat16* dv = sv + stage * L::kKvElems;
    for (int i = tid; i < kBlockN * kChunks; i += kThreads) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const int key = nb * kBlockN + r;
      const bool valid = key < k_len;
      const int64_t row = valid ? key : 0;
      CpAsync16(dk + r * kPad + c, kg + row * args.k_stride + c, valid);
      CpAsync16(dv + r * kPad + c, vg + row * args.v_stride + c, valid);
    }
  };
  if (n_blocks > 0) load_kv(0, 0);
  CpAsyncCommit();

  float o[kD / 8][4];
#pragma unroll
  for (int j = 0; j < kD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};  // per-thread partial sums; reduced over the quad at the end
  uint32_t qf[kD / 16][4];

  // This thread's two query rows (C-fragment rows g and g + 8 of the warp's 16).
  const int row_a = m0 + warp * 16 + (lane >> 2);
  const int ldm_mat = lane >> 3, ldm_row = lane & 7;

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int stage = nb & 1;
    if (nb + 1 < n_blocks) {
      load_kv(nb + 1, stage ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    if (nb == 0) {
#pragma unroll
      for (int ks = 0; ks < kD / 16; ++ks) {
        const __nv_bfloat16* p = sq + (warp * 16 + (lane & 15)) * kPad + ks * 16 + (lane >> 4) * 8;
        LdMatrixX4(qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3], p);
      }
    }
    const __nv_bfloat16* skb = sk + stage * L::kKvElems;
    const __nv_bfloat16* svb = sv + stage * L::kKvElems;

    float s[kBlockN / 8][4];
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        const __nv_bfloat16* p =
            skb + (np * 16 + (ldm_mat >> 1) * 8 + ldm_row) * kPad + ks * 16 + (ldm_mat & 1) * 8;
        LdMatrixX4(b0, b1, b2, b3, p);
        MmaBf16(s[2 * np], qf[ks], b0, b1);
        MmaBf16(s[2 * np + 1], qf[ks], b2, b3);
      }
    }

    // Scale into the log2 domain and mask. Only tiles that cross the diagonal or the end of the
    // keys need the per-element test (the condition is uniform over the block).
    const bool need_mask = (nb + 1) * kBlockN > min(k_len, m0 + shift + 1);
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = s[j][e] * scale_log2;
        if (need_mask) {
          const int col = nb * kBlockN + j * 8 + 2 * (lane & 3) + (e & 1);
          const int row = row_a + (e >> 1) * 8;
          if (col > row + shift || col >= k_len) v = -INFINITY;
        }
        s[j][e] = v;
      }
    }

    // Online softmax for the thread's two rows.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float new_max = fmaxf(row_max[r], mx);
      // A row that has seen only masked keys keeps max -inf; subtract 0 instead so exp2 gives 0
      // rather than NaN (-inf - -inf).
      const float base = new_max == -INFINITY ? 0.f : new_max;
      const float corr = exp2f(row_max[r] - base);
      row_max[r] = new_max;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) {
        s[j][2 * r] = exp2f(s[j][2 * r] - base);
        s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - base);
        sum += s[j][2 * r] + s[j][2 * r + 1];
      }
      row_sum[r] = row_sum[r] * corr + sum;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) {
        o[j][2 * r] *= corr;
        o[j][2 * r + 1] *= corr;
      }
    }

    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t a[4];
      a[0] = PackBf16x2(s[2 * kk][0], s[2 * kk][1]);
      a[1] = PackBf16x2(s[2 * kk][2], s[2 * kk][3]);
      a[2] = PackBf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = PackBf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < kD / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        const __nv_bfloat16* p =
            svb + (kk * 16 + (ldm_mat & 1) * 8 + ldm_row) * kPad + dp * 16 + (ldm_mat >> 1) * 8;
        LdMatrixX4Trans(b0, b1, b2, b3, p);
        MmaBf16(o[2 * dp], a, b0, b1);
        MmaBf16(o[2 * dp + 1], a, b2, b3);
      }
    }
    // The next iteration's prefetch overwrites the stage read here.
    __syncthreads();
  }
  // With n_blocks == 0 the Q copies are still in flight, issued by threads of every warp: wait
  // for them block-wide before the epilogue reuses the Q buffer.
  CpAsyncWait<0>();
  __syncthreads();

  // Epilogue: normalise, stage the warp's 16 rows in its own rows of the Q buffer (only this
  // warp ever read them), then write 16-byte chunks.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.f ? 1.f / l : 0.f;
  }
  __syncwarp();
  __nv_bfloat16* so = sq + warp * 16 * kPad;
#pragma unroll
  for (int j = 0; j < kD / 8; ++j) {
    const int col = j * 8 + 2 * (lane & 3);
    *reinterpret_cast<__nv_bfloat162*>(so + (lane >> 2) * kPad + col) =
        __floats2bfloat162_rn(o[j][0] * inv[0], o[j][1] * inv[0]);
    *reinterpret_cast<__nv_bfloat162*>(so + ((lane >> 2) + 8) * kPad + col) =
        __floats2bfloat162_rn(o[j][2] * inv[1], o[j][3] * inv[1]);
  }
  __syncwarp();
  __nv_bfloat16* og = AsNv(args.out) + int64_t(q_start) * args.out_stride + int64_t(h) * kD;
  for (int i = lane; i < 16 * kChunks; i += 32) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const int row = m0 + warp * 16 + r;
    if (row < q_len) Store8(og + int64_t(row) * args.out_stride + c, Load8(so + r * kPad + c));
  }
}

template <int kD>
cudaError_t LaunchFa(const VarlenAttentionArgs& args, cudaStream_t stream) {
  const size_t smem = FaLayout<kD>::kBytes;
  // Above 48 KB of dynamic shared memory a kernel must opt in; cheap enough to do per launch
  // (and it must be done per device anyway).
  cudaError_t err =
      cudaFuncSetAttribute(FlashPrefillKernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid((args.max_seqlen_q + kBlockM - 1) / kBlockM, args.num_heads, args.batch);
  const float scale_log2 = args.scale * 1.4426950408889634f;
  FlashPrefillKernel<kD><<<grid, kThreads, smem, stream>>>(args, scale_log2);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchFlashAttentionPrefill(const VarlenAttentionArgs& args, cudaStream_t stream) {
  if (args.batch <= 0 || args.max_seqlen_q <= 0) return cudaSuccess;
  switch (args.head_dim) {
    case 64: return LaunchFa<64>(args, stream);
    case 128: return LaunchFa<128>(args, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace claa::gpu::internal
