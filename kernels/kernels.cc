// Host API of the kernels: argument checks, then the launchers in the .cu files. Every CUDA
// status becomes an absl::Status here; nothing throws.
#include "kernels/kernels.h"

#include <cuda_runtime_api.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/launch.h"
#include "kernels/host_status.h"

namespace claa::gpu {
namespace {

using internal::Aligned16;
using internal::CudaStatus;
using internal::Invalid;

// Rows starting at p, stride elements apart, all 16-byte aligned.
bool RowsAligned16(const void* p, int64_t stride) { return Aligned16(p) && stride % 8 == 0; }

}  // namespace

Bf16 FloatToBf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return Bf16{uint16_t(u >> 16)};
}

float Bf16ToFloat(Bf16 b) { return std::bit_cast<float>(uint32_t(b.bits) << 16); }

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

absl::Status EmbeddingGather(const Bf16* table, int vocab, int hidden, const int32_t* ids,
                             int num_tokens, Bf16* out, cudaStream_t stream) {
  constexpr const char* kWhat = "EmbeddingGather";
  if (vocab <= 0 || hidden <= 0 || num_tokens < 0) {
    return Invalid(kWhat, absl::StrFormat("vocab=%d hidden=%d num_tokens=%d", vocab, hidden,
                                          num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (table == nullptr || ids == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchCopyRows(table, hidden, vocab, ids, num_tokens, hidden, out,
                                             hidden, stream),
                    kWhat);
}

absl::Status AddRmsNorm(Bf16* residual, const Bf16* x, const Bf16* weight, int num_rows,
                        int hidden, float eps, Bf16* out, cudaStream_t stream) {
  constexpr const char* kWhat = "AddRmsNorm";
  if (num_rows < 0 || hidden <= 0 || !(eps >= 0.f)) {
    return Invalid(kWhat, absl::StrFormat("num_rows=%d hidden=%d eps=%g", num_rows, hidden, eps));
  }
  if (num_rows == 0) return absl::OkStatus();
  if (residual == nullptr || weight == nullptr || out == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (out == residual || (x != nullptr && out == x)) return Invalid(kWhat, "out aliases input");
  return CudaStatus(
      internal::LaunchAddRmsNorm(residual, x, weight, num_rows, hidden, eps, out, stream), kWhat);
}

absl::Status ApplyRope(Bf16* x, int num_tokens, int num_heads, int head_dim, int64_t row_stride,
                       const int32_t* positions, const float* inv_freq, cudaStream_t stream) {
  constexpr const char* kWhat = "ApplyRope";
  if (num_tokens < 0 || num_heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 ||
      row_stride < int64_t(num_heads) * head_dim) {
    return Invalid(kWhat, absl::StrFormat("num_tokens=%d num_heads=%d head_dim=%d row_stride=%d",
                                          num_tokens, num_heads, head_dim, row_stride));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (x == nullptr || positions == nullptr || inv_freq == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  return CudaStatus(internal::LaunchRope(x, num_tokens, num_heads, head_dim, row_stride,
                                         positions, inv_freq, stream),
                    kWhat);
}

absl::Status SwiGlu(const Bf16* gate, int64_t gate_stride, const Bf16* up, int64_t up_stride,
                    int rows, int cols, Bf16* out, int64_t out_stride, cudaStream_t stream) {
  constexpr const char* kWhat = "SwiGlu";
  if (rows < 0 || cols < 0 || gate_stride < cols || up_stride < cols || out_stride < cols) {
    return Invalid(kWhat, absl::StrFormat("rows=%d cols=%d strides %d/%d/%d", rows, cols,
                                          gate_stride, up_stride, out_stride));
  }
  if (rows == 0 || cols == 0) return absl::OkStatus();
  if (gate == nullptr || up == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchSwiGlu(gate, gate_stride, up, up_stride, rows, cols, out,
                                           out_stride, stream),
                    kWhat);
}

absl::Status GatherRows(const Bf16* src, int64_t src_stride, int src_rows,
                        const int32_t* indices, int num_indices, int cols, Bf16* dst,
                        int64_t dst_stride, cudaStream_t stream) {
  constexpr const char* kWhat = "GatherRows";
  if (src_rows < 0 || num_indices < 0 || cols <= 0 || src_stride < cols || dst_stride < cols) {
    return Invalid(kWhat, absl::StrFormat("src_rows=%d num_indices=%d cols=%d strides %d/%d",
                                          src_rows, num_indices, cols, src_stride, dst_stride));
  }
  if (num_indices == 0) return absl::OkStatus();
  if (src == nullptr || indices == nullptr || dst == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchCopyRows(src, src_stride, src_rows, indices, num_indices,
                                             cols, dst, dst_stride, stream),
                    kWhat);
}

absl::Status GatherInt32(const int32_t* src, int src_len, const int32_t* indices,
                         int num_indices, int32_t* dst, cudaStream_t stream) {
  constexpr const char* kWhat = "GatherInt32";
  if (src_len < 0 || num_indices < 0) {
    return Invalid(kWhat, absl::StrFormat("src_len=%d num_indices=%d", src_len, num_indices));
  }
  if (num_indices == 0) return absl::OkStatus();
  if (src == nullptr || indices == nullptr || dst == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(
      internal::LaunchGatherInt32(src, src_len, indices, num_indices, dst, stream), kWhat);
}

namespace {
template <typename T>
absl::Status ArgmaxImpl(const T* logits, int64_t stride, int rows, int vocab, int32_t* out,
                        cudaStream_t stream) {
  constexpr const char* kWhat = "ArgmaxRows";
  if (rows < 0 || vocab <= 0 || stride < vocab) {
    return Invalid(kWhat,
                   absl::StrFormat("rows=%d vocab=%d stride=%d", rows, vocab, stride));
  }
  if (rows == 0) return absl::OkStatus();
  if (logits == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchArgmax(logits, stride, rows, vocab, out, stream), kWhat);
}
}  // namespace

absl::Status ArgmaxRows(const float* logits, int64_t stride, int rows, int vocab, int32_t* out,
                        cudaStream_t stream) {
  return ArgmaxImpl(logits, stride, rows, vocab, out, stream);
}
absl::Status ArgmaxRows(const Bf16* logits, int64_t stride, int rows, int vocab, int32_t* out,
                        cudaStream_t stream) {
  return ArgmaxImpl(logits, stride, rows, vocab, out, stream);
}

namespace {
absl::Status CheckLayer(const char* what, const PagedKvLayer& l) {
  if (l.k == nullptr || l.v == nullptr || l.num_blocks <= 0 || l.block_size <= 0 ||
      l.num_kv_heads <= 0 || l.head_dim <= 0 || l.head_dim % 8 != 0) {
    return Invalid(what, absl::StrFormat("bad cache layer: blocks=%d block_size=%d kv_heads=%d "
                                         "head_dim=%d (head_dim %% 8 == 0 required)",
                                         l.num_blocks, l.block_size, l.num_kv_heads, l.head_dim));
  }
  if (!Aligned16(l.k) || !Aligned16(l.v)) return Invalid(what, "cache pools not 16-byte aligned");
  return absl::OkStatus();
}
}  // namespace

absl::Status WritePagedKv(const PagedKvLayer& layer, const Bf16* k, int64_t k_stride,
                          const Bf16* v, int64_t v_stride, const int32_t* slot_mapping,
                          int num_tokens, cudaStream_t stream) {
  constexpr const char* kWhat = "WritePagedKv";
  if (absl::Status s = CheckLayer(kWhat, layer); !s.ok()) return s;
  const int64_t row = int64_t(layer.num_kv_heads) * layer.head_dim;
  if (num_tokens < 0 || k_stride < row || v_stride < row) {
    return Invalid(kWhat, absl::StrFormat("num_tokens=%d strides %d/%d < %d", num_tokens,
                                          k_stride, v_stride, row));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (k == nullptr || v == nullptr || slot_mapping == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (!RowsAligned16(k, k_stride) || !RowsAligned16(v, v_stride)) {
    return Invalid(kWhat, "K/V rows not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchWritePagedKv(layer, k, k_stride, v, v_stride, slot_mapping,
                                                 num_tokens, stream),
                    kWhat);
}

absl::Status CompactKvByHead(const Bf16* src_k, const Bf16* src_v, int64_t src_stride,
                             const int32_t* src_block_table, const int32_t* indices, int count,
                             const PagedKvLayer& dst, const int32_t* dst_block_table,
                             cudaStream_t stream) {
  constexpr const char* kWhat = "CompactKvByHead";
  if (absl::Status s = CheckLayer(kWhat, dst); !s.ok()) return s;
  if (count < 0) return Invalid(kWhat, absl::StrFormat("count=%d", count));
  if (count == 0) return absl::OkStatus();
  if (src_k == nullptr || src_v == nullptr || indices == nullptr || dst_block_table == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (src_block_table == nullptr) {
    if (src_stride < int64_t(dst.num_kv_heads) * dst.head_dim) {
      return Invalid(kWhat, absl::StrFormat("src_stride=%d", src_stride));
    }
    if (!RowsAligned16(src_k, src_stride) || !RowsAligned16(src_v, src_stride)) {
      return Invalid(kWhat, "source rows not 16-byte aligned");
    }
  } else if (!Aligned16(src_k) || !Aligned16(src_v)) {
    return Invalid(kWhat, "source pools not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchCompactKvByHead(src_k, src_v, src_stride, src_block_table,
                                                    indices, count, dst, dst_block_table,
                                                    stream),
                    kWhat);
}

absl::Status FlashAttentionPrefill(const VarlenAttentionArgs& a, cudaStream_t stream) {
  constexpr const char* kWhat = "FlashAttentionPrefill";
  if (a.head_dim != 64 && a.head_dim != 128) {
    return Invalid(kWhat, absl::StrFormat("head_dim %d (64 or 128 supported)", a.head_dim));
  }
  if (a.batch < 0 || a.batch > 65535 || a.max_seqlen_q < 0 || a.num_heads <= 0 ||
      a.num_heads > 65535 || a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0) {
    return Invalid(kWhat, absl::StrFormat("batch=%d max_seqlen_q=%d heads=%d kv_heads=%d",
                                          a.batch, a.max_seqlen_q, a.num_heads, a.num_kv_heads));
  }
  if (!(a.scale > 0.f) || !std::isfinite(a.scale)) {
    return Invalid(kWhat, absl::StrFormat("scale=%g", a.scale));
  }
  if (a.batch == 0 || a.max_seqlen_q == 0) return absl::OkStatus();
  const int64_t q_row = int64_t(a.num_heads) * a.head_dim;
  const int64_t kv_row = int64_t(a.num_kv_heads) * a.head_dim;
  if (a.q_stride < q_row || a.out_stride < q_row || a.k_stride < kv_row || a.v_stride < kv_row) {
    return Invalid(kWhat, "a row stride is shorter than its heads");
  }
  if (a.q == nullptr || a.k == nullptr || a.v == nullptr || a.out == nullptr ||
      a.cu_seqlens_q == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (!RowsAligned16(a.q, a.q_stride) || !RowsAligned16(a.k, a.k_stride) ||
      !RowsAligned16(a.v, a.v_stride) || !RowsAligned16(a.out, a.out_stride)) {
    return Invalid(kWhat, "rows not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchFlashAttentionPrefill(a, stream), kWhat);
}

size_t DecodeAttentionWorkspaceBytes(int batch, int num_heads, int head_dim, int max_kv_len) {
  if (batch <= 0 || num_heads <= 0 || head_dim <= 0) return 0;
  return size_t(batch) * num_heads * internal::DecodeMaxSplits(max_kv_len) *
         internal::DecodePartialFloats(head_dim) * sizeof(float);
}

absl::Status PagedDecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  constexpr const char* kWhat = "PagedDecodeAttention";
  if (absl::Status s = CheckLayer(kWhat, a.cache); !s.ok()) return s;
  const int d = a.cache.head_dim;
  if (d != 64 && d != 128) {
    return Invalid(kWhat, absl::StrFormat("head_dim %d (64 or 128 supported)", d));
  }
  if (a.batch < 0 || a.batch > 65535 || a.num_heads <= 0 ||
      a.num_heads % a.cache.num_kv_heads != 0 || a.max_kv_len < 0 ||
      a.max_blocks_per_seq < 0 ||
      int64_t(a.max_blocks_per_seq) * a.cache.block_size < a.max_kv_len) {
    return Invalid(kWhat, absl::StrFormat("batch=%d heads=%d kv_heads=%d max_kv_len=%d "
                                          "max_blocks_per_seq=%d",
                                          a.batch, a.num_heads, a.cache.num_kv_heads,
                                          a.max_kv_len, a.max_blocks_per_seq));
  }
  if (!(a.scale > 0.f) || !std::isfinite(a.scale)) {
    return Invalid(kWhat, absl::StrFormat("scale=%g", a.scale));
  }
  if (a.batch == 0) return absl::OkStatus();
  const int64_t q_row = int64_t(a.num_heads) * d;
  if (a.q_stride < q_row || a.out_stride < q_row) {
    return Invalid(kWhat, "a row stride is shorter than its heads");
  }
  if (a.q == nullptr || a.out == nullptr || a.block_tables == nullptr || a.kv_lens == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  if (!RowsAligned16(a.q, a.q_stride)) return Invalid(kWhat, "q rows not 16-byte aligned");
  if (a.workspace != nullptr && !Aligned16(a.workspace)) {
    return Invalid(kWhat, "workspace not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchPagedDecodeAttention(a, stream), kWhat);
}

size_t WindowScoresWorkspaceBytes(int prompt_len, int window, int num_heads, int num_kv_heads) {
  if (prompt_len <= 0 || window <= 0 || num_heads <= 0 || num_kv_heads <= 0) return 0;
  size_t logits = 0, stats = 0;
  return internal::WindowScoresWorkspaceFloats(prompt_len, window, num_heads, num_kv_heads,
                                               &logits, &stats) *
         sizeof(float);
}

absl::Status WindowScores(const WindowScoresArgs& a, cudaStream_t stream) {
  constexpr const char* kWhat = "WindowScores";
  if (a.window < 1 || a.window > internal::kMaxWindow || a.head_dim <= 0 || a.head_dim % 8 != 0 ||
      a.head_dim > internal::kMaxScoreHeadDim || a.num_heads <= 0 || a.num_kv_heads <= 0 ||
      a.num_heads % a.num_kv_heads != 0 || a.prompt_len < 0 || a.pool_kernel < 1 ||
      a.pool_kernel % 2 == 0 || a.num_heads > 65535) {
    return Invalid(kWhat, absl::StrFormat("window=%d (1..%d) head_dim=%d heads=%d kv_heads=%d "
                                          "prompt_len=%d pool_kernel=%d (odd)",
                                          a.window, internal::kMaxWindow, a.head_dim,
                                          a.num_heads, a.num_kv_heads, a.prompt_len,
                                          a.pool_kernel));
  }
  if (!(a.scale > 0.f) || !std::isfinite(a.scale)) {
    return Invalid(kWhat, absl::StrFormat("scale=%g", a.scale));
  }
  const int prefix = a.prompt_len - a.window;
  if (prefix <= 0) return absl::OkStatus();
  if (a.q_stride < int64_t(a.num_heads) * a.head_dim ||
      a.k_stride < int64_t(a.num_kv_heads) * a.head_dim || a.out_stride < prefix) {
    return Invalid(kWhat, "a row stride is too short");
  }
  if (a.q_window == nullptr || a.k == nullptr || a.out == nullptr || a.workspace == nullptr) {
    return Invalid(kWhat, "null pointer");
  }
  const size_t need = WindowScoresWorkspaceBytes(a.prompt_len, a.window, a.num_heads,
                                                 a.num_kv_heads);
  if (a.workspace_bytes < need) {
    return Invalid(kWhat, absl::StrFormat("workspace %d bytes < %d", a.workspace_bytes, need));
  }
  if (!Aligned16(a.workspace) || !RowsAligned16(a.k, a.k_stride)) {
    return Invalid(kWhat, "workspace or key rows not 16-byte aligned");
  }
  return CudaStatus(internal::LaunchWindowScores(a, stream), kWhat);
}

absl::Status ZScoreMax(const float* scores, int num_rows, int len, int64_t row_stride,
                       float* out, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  constexpr const char* kWhat = "ZScoreMax";
  if (num_rows < 0 || len < 0 || (num_rows > 0 && row_stride < len)) {
    return Invalid(kWhat, absl::StrFormat("num_rows=%d len=%d row_stride=%d", num_rows, len,
                                          row_stride));
  }
  if (len == 0) return absl::OkStatus();
  if (out == nullptr || (num_rows > 0 && (scores == nullptr || workspace == nullptr))) {
    return Invalid(kWhat, "null pointer");
  }
  if (workspace_bytes < 16 * size_t(num_rows) || (reinterpret_cast<uintptr_t>(workspace) & 7)) {
    return Invalid(kWhat, "workspace too small or not 8-byte aligned");
  }
  return CudaStatus(internal::LaunchZScoreMax(scores, num_rows, len, row_stride, out,
                                              static_cast<double*>(workspace), stream),
                    kWhat);
}

absl::Status TopKAscending(const float* scores, int num_rows, int n, int64_t row_stride, int k,
                           int32_t* out, int64_t out_stride, cudaStream_t stream) {
  constexpr const char* kWhat = "TopKAscending";
  if (num_rows < 0 || n < 0 || k < 0 || k > n || (num_rows > 1 && (row_stride < n ||
                                                                   out_stride < k))) {
    return Invalid(kWhat, absl::StrFormat("num_rows=%d n=%d k=%d strides %d/%d", num_rows, n, k,
                                          row_stride, out_stride));
  }
  if (num_rows == 0 || k == 0) return absl::OkStatus();
  if (scores == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(
      internal::LaunchTopKAscending(scores, num_rows, n, row_stride, k, out, out_stride, stream),
      kWhat);
}

}  // namespace claa::gpu
