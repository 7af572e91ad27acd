// Host API of model_ops.cu: argument checks, then the launchers. CUDA errors become
// InternalError; nothing throws.
#include "kernels/model_kernels.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "kernels/model_launch.h"
#include "kernels/host_status.h"

namespace claa::gpu {
namespace {

using internal::Aligned16;
using internal::CudaStatus;
using internal::Invalid;

// Largest shared memory a block gets without opting in.
constexpr size_t kDefaultSharedBytes = 48 << 10;

}  // namespace

absl::Status AddBiasRows(Bf16* x, int64_t stride, int rows, int cols, const Bf16* bias,
                         cudaStream_t stream) {
  constexpr const char* kWhat = "AddBiasRows";
  if (rows < 0 || cols < 0 || stride < cols) {
    return Invalid(kWhat, absl::StrFormat("rows=%d cols=%d stride=%d", rows, cols, stride));
  }
  if (rows == 0 || cols == 0) return absl::OkStatus();
  if (x == nullptr || bias == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchAddBiasRows(x, stride, rows, cols, bias, stream), kWhat);
}

absl::Status SumRows(const float* in, int num_rows, int len, int64_t row_stride, float* out,
                     cudaStream_t stream) {
  constexpr const char* kWhat = "SumRows";
  if (num_rows < 0 || len < 0 || (num_rows > 1 && row_stride < len)) {
    return Invalid(kWhat, absl::StrFormat("num_rows=%d len=%d row_stride=%d", num_rows, len,
                                          row_stride));
  }
  if (len == 0) return absl::OkStatus();
  if (out == nullptr || (num_rows > 0 && in == nullptr)) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchSumRows(in, num_rows, len, row_stride, out, stream), kWhat);
}

size_t LastQueryScoresWorkspaceBytes(int prompt_len, int window, int num_kv_heads) {
  const int prefix = prompt_len - window;
  if (prefix <= 0 || num_kv_heads <= 0) return 0;
  return size_t(prefix) * num_kv_heads * sizeof(float);
}

absl::Status LastQueryScores(const LastQueryScoresArgs& a, cudaStream_t stream) {
  constexpr const char* kWhat = "LastQueryScores";
  if (a.window < 0 || a.prompt_len < 0 || a.num_heads <= 0 || a.num_kv_heads <= 0 ||
      a.num_heads % a.num_kv_heads != 0 || a.head_dim <= 0 || a.head_dim % 8 != 0 ||
      a.pool_kernel < 1 || a.pool_kernel % 2 == 0 ||
      size_t(a.num_heads) * a.head_dim * sizeof(float) > kDefaultSharedBytes) {
    return Invalid(kWhat, absl::StrFormat("window=%d prompt_len=%d heads=%d kv_heads=%d "
                                          "head_dim=%d pool_kernel=%d",
                                          a.window, a.prompt_len, a.num_heads, a.num_kv_heads,
                                          a.head_dim, a.pool_kernel));
  }
  const int prefix = a.prompt_len - a.window;
  if (prefix <= 0) return absl::OkStatus();
  if (a.k_stride < int64_t(a.num_kv_heads) * a.head_dim || a.out_stride < prefix) {
    return Invalid(kWhat, "a row stride is too short");
  }
  if (a.q_last == nullptr || a.k == nullptr || a.out == nullptr || a.workspace == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (a.workspace_bytes < LastQueryScoresWorkspaceBytes(a.prompt_len, a.window, a.num_kv_heads)) {
    return Invalid(kWhat, "workspace too small");
  }
  if (!Aligned16(a.k) || a.k_stride % 8 != 0) return Invalid(kWhat, "key rows not 16-byte aligned");
  return CudaStatus(internal::LaunchLastQueryScores(a, stream), kWhat);
}

absl::Status GatherPagedKv(const PagedKvLayer& layer, const int32_t* block_tables,
                           int max_blocks_per_seq, const int32_t* kv_lens, const int32_t* cu_dst,
                           int batch, int max_kv_len, Bf16* dst_k, Bf16* dst_v,
                           int64_t dst_stride, cudaStream_t stream) {
  constexpr const char* kWhat = "GatherPagedKv";
  if (layer.k == nullptr || layer.v == nullptr || layer.block_size <= 0 ||
      layer.num_kv_heads <= 0 || layer.head_dim <= 0 || layer.head_dim % 8 != 0) {
    return Invalid(kWhat, "bad cache layer");
  }
  const int64_t row = int64_t(layer.num_kv_heads) * layer.head_dim;
  if (batch < 0 || batch > 65535 || max_kv_len < 0 || max_blocks_per_seq < 0 ||
      int64_t(max_blocks_per_seq) * layer.block_size < max_kv_len || dst_stride < row) {
    return Invalid(kWhat, absl::StrFormat("batch=%d max_kv_len=%d max_blocks_per_seq=%d "
                                          "dst_stride=%d",
                                          batch, max_kv_len, max_blocks_per_seq, dst_stride));
  }
  if (batch == 0 || max_kv_len == 0) return absl::OkStatus();
  if (block_tables == nullptr || kv_lens == nullptr || cu_dst == nullptr || dst_k == nullptr ||
      dst_v == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (!Aligned16(layer.k) || !Aligned16(layer.v) || !Aligned16(dst_k) || !Aligned16(dst_v) ||
      dst_stride % 8 != 0) {
    return Invalid(kWhat, "rows not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchGatherPagedKv(layer, block_tables, max_blocks_per_seq,
                                                  kv_lens, cu_dst, batch, max_kv_len, dst_k,
                                                  dst_v, dst_stride, stream),
                    kWhat);
}

absl::Status VarlenAttentionAnyHeadDim(const VarlenAttentionArgs& a, cudaStream_t stream) {
  constexpr const char* kWhat = "VarlenAttentionAnyHeadDim";
  if (a.head_dim <= 0 || a.head_dim > 256 || a.head_dim % 8 != 0) {
    return Invalid(kWhat, absl::StrFormat("head_dim %d (multiple of 8, <= 256)", a.head_dim));
  }
  if (a.batch < 0 || a.batch > 65535 || a.max_seqlen_q < 0 || a.num_heads <= 0 ||
      a.num_heads > 65535 || a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0 ||
      !(a.scale > 0.f)) {
    return Invalid(kWhat, absl::StrFormat("batch=%d max_seqlen_q=%d heads=%d kv_heads=%d",
                                          a.batch, a.max_seqlen_q, a.num_heads, a.num_kv_heads));
  }
  if (a.batch == 0 || a.max_seqlen_q == 0) return absl::OkStatus();
  if (a.q == nullptr || a.k == nullptr || a.v == nullptr || a.out == nullptr ||
      a.cu_seqlens_q == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  const int64_t q_row = int64_t(a.num_heads) * a.head_dim;
  const int64_t kv_row = int64_t(a.num_kv_heads) * a.head_dim;
  if (a.q_stride < q_row || a.out_stride < q_row || a.k_stride < kv_row || a.v_stride < kv_row) {
    return Invalid(kWhat, "a row stride is shorter than its heads");
  }
  return CudaStatus(internal::LaunchVarlenAttentionWarp(a, stream), kWhat);
}

absl::Status AddOffsetInt32(const int32_t* src, int n, int32_t offset, int32_t* dst,
                            cudaStream_t stream) {
  constexpr const char* kWhat = "AddOffsetInt32";
  if (n < 0) return Invalid(kWhat, absl::StrFormat("n=%d", n));
  if (n == 0) return absl::OkStatus();
  if (src == nullptr || dst == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchAddOffsetInt32(src, n, offset, dst, stream), kWhat);
}

absl::Status FillUniformBf16(Bf16* p, size_t n, uint64_t seed, float lo, float hi,
                             cudaStream_t stream) {
  constexpr const char* kWhat = "FillUniformBf16";
  if (!(lo <= hi)) return Invalid(kWhat, absl::StrFormat("lo=%g hi=%g", lo, hi));
  if (n == 0) return absl::OkStatus();
  if (p == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchFillUniformBf16(p, n, seed, lo, hi, stream), kWhat);
}

}  // namespace claa::gpu
