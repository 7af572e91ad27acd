// Host API of attention_maps.h: argument checks, the launchers of attention_maps.cu, and the
// batched map GEMMs on cuBLAS. CUDA and cuBLAS errors become InternalError; nothing throws.
#include "kernels/attention_maps.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/device_buffer.h"
#include "kernels/maps_launch.h"
#include "kernels/host_status.h"

namespace claa::gpu {
namespace {

using internal::CudaStatus;
using internal::Invalid;

absl::Status BlasStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%s: cuBLAS error %d (%s)", what, int(s),
                                             cublasGetStatusString(s)));
}

// GQA shapes the GEMMs address: whole groups, positive sizes, int-sized leading dimensions.
absl::Status CheckHeads(const char* what, int n, int num_heads, int num_kv_heads, int head_dim) {
  if (n <= 0 || num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 ||
      num_heads % num_kv_heads != 0) {
    return Invalid(what, absl::StrFormat("n=%d heads=%d kv_heads=%d head_dim=%d", n, num_heads,
                                         num_kv_heads, head_dim));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CausalSoftmaxPackFp16(const float* scores, int64_t scores_head_stride,
                                   int num_heads, int n, uint16_t* out, int64_t out_head_stride,
                                   cudaStream_t stream) {
  constexpr const char* kWhat = "CausalSoftmaxPackFp16";
  if (n < 0 || num_heads < 0 || (num_heads > 1 && (scores_head_stride < int64_t(n) * n ||
                                                   out_head_stride < MapsTriangle(n)))) {
    return Invalid(kWhat, absl::StrFormat("n=%d heads=%d strides %d / %d", n, num_heads,
                                          scores_head_stride, out_head_stride));
  }
  if (n == 0 || num_heads == 0) return absl::OkStatus();
  if (scores == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(internal::LaunchCausalSoftmaxPackFp16(scores, scores_head_stride, num_heads,
                                                          n, out, out_head_stride, stream),
                    kWhat);
}

absl::Status UnpackMapsBf16(const uint16_t* packed, int64_t packed_head_stride, int num_heads,
                            int n, Bf16* dense, cudaStream_t stream) {
  constexpr const char* kWhat = "UnpackMapsBf16";
  if (n < 0 || num_heads < 0 || (num_heads > 1 && packed_head_stride < MapsTriangle(n))) {
    return Invalid(kWhat, absl::StrFormat("n=%d heads=%d stride %d", n, num_heads,
                                          packed_head_stride));
  }
  if (n == 0 || num_heads == 0) return absl::OkStatus();
  if (packed == nullptr || dense == nullptr) return Invalid(kWhat, "null pointer");
  return CudaStatus(
      internal::LaunchUnpackMapsBf16(packed, packed_head_stride, num_heads, n, dense, stream),
      kWhat);
}

struct MapsGemm::Impl {
  cublasHandle_t handle = nullptr;
  // GQA: V expanded to one [n][head_dim] matrix per query head (so one batched GEMM covers
  // every head with constant strides); grows between uses only.
  DeviceBuffer v_heads;
  ~Impl() {
    if (handle != nullptr) cublasDestroy(handle);
  }
};

namespace {
// Query rows per GEMM of MapsTimesV: row block [t0, t0 + rows) needs only keys s < t0 + rows,
// so part of the maps' zero upper triangle is skipped (4 blocks read 5/8 of the square). More,
// smaller blocks read less but fill the GPU worse: on an H100, 512-row blocks, at most 4, were
// fastest at 1024-4096 tokens (docs/benchmarks.md, the row-block sweep).
constexpr int kMinRowsPerGemm = 512;
constexpr int kMaxRowBlocks = 4;
}  // namespace

MapsGemm::MapsGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MapsGemm::~MapsGemm() = default;

absl::StatusOr<std::unique_ptr<MapsGemm>> MapsGemm::Create() {
  auto impl = std::make_unique<Impl>();
  if (absl::Status s = BlasStatus(cublasCreate(&impl->handle), "cublasCreate"); !s.ok()) return s;
  return std::unique_ptr<MapsGemm>(new MapsGemm(std::move(impl)));
}

// cuBLAS is column-major: a row-major [rows][cols] matrix with row stride ld is the column-major
// cols x rows matrix with leading dimension ld, so each product below is written transposed.
absl::Status MapsGemm::MapsTimesV(const Bf16* maps, const Bf16* v, int64_t v_stride, int n,
                                  int num_heads, int num_kv_heads, int head_dim, Bf16* out,
                                  int64_t out_stride, cudaStream_t stream) {
  constexpr const char* kWhat = "MapsTimesV";
  if (absl::Status s = CheckHeads(kWhat, n, num_heads, num_kv_heads, head_dim); !s.ok()) return s;
  if (v_stride < int64_t(num_kv_heads) * head_dim || out_stride < int64_t(num_heads) * head_dim ||
      v_stride > INT32_MAX || out_stride > INT32_MAX) {
    return Invalid(kWhat, absl::StrFormat("v_stride=%d out_stride=%d", v_stride, out_stride));
  }
  if (maps == nullptr || v == nullptr || out == nullptr) return Invalid(kWhat, "null pointer");
  if (absl::Status s = BlasStatus(cublasSetStream(impl_->handle, stream), "cublasSetStream");
      !s.ok()) {
    return s;
  }
  const int group = num_heads / num_kv_heads;
  const int64_t square = int64_t(n) * n;
  // V per query head: the caller's rows when there is no grouping, else an expanded copy.
  const Bf16* v_heads = v;
  int64_t v_ld = v_stride, v_head_stride = head_dim;
  if (group > 1) {
    if (head_dim % 8 != 0 || v_stride % 8 != 0 ||
        (reinterpret_cast<uintptr_t>(v) & 15) != 0) {
      return Invalid(kWhat, "GQA needs 16-byte aligned V rows (head_dim and stride % 8 == 0)");
    }
    if (absl::Status s = impl_->v_heads.Reserve(size_t(num_heads) * n * head_dim * sizeof(Bf16));
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("MapsTimesV: ", s.message()));
    }
    Bf16* expanded = impl_->v_heads.get<Bf16>();
    if (absl::Status s = CudaStatus(internal::LaunchExpandKvHeads(v, v_stride, n, num_heads,
                                                                  group, head_dim, expanded,
                                                                  stream),
                                    kWhat);
        !s.ok()) {
      return s;
    }
    v_heads = expanded;
    v_ld = head_dim;
    v_head_stride = int64_t(n) * head_dim;
  }
  const int rows_per_gemm =
      row_blocks_ > 0 ? (n + row_blocks_ - 1) / row_blocks_
                      : std::max(kMinRowsPerGemm, (n + kMaxRowBlocks - 1) / kMaxRowBlocks);
  const float one = 1.f, zero = 0.f;
  // Rows [t0, t0 + rows) of every head: out^T [d x rows] = V_h^T [d x keys] * A_h^T [keys x rows]
  // with keys = t0 + rows (the causal map is zero beyond), batched over the query heads.
  for (int t0 = 0; t0 < n; t0 += rows_per_gemm) {
    const int rows = std::min(rows_per_gemm, n - t0);
    const int keys = t0 + rows;
    const cublasStatus_t st = cublasGemmStridedBatchedEx(
        impl_->handle, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, rows, keys, &one, v_heads,
        CUDA_R_16BF, int(v_ld), v_head_stride, maps + int64_t(t0) * n, CUDA_R_16BF, n, square,
        &zero, out + int64_t(t0) * out_stride, CUDA_R_16BF, int(out_stride), head_dim,
        num_heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (absl::Status s = BlasStatus(st, kWhat); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status MapsGemm::GroupScores(const Bf16* q, int64_t q_stride, const Bf16* k,
                                   int64_t k_stride, int n, int num_heads, int num_kv_heads,
                                   int head_dim, int member, float scale, float* scores,
                                   cudaStream_t stream) {
  constexpr const char* kWhat = "GroupScores";
  if (absl::Status s = CheckHeads(kWhat, n, num_heads, num_kv_heads, head_dim); !s.ok()) return s;
  const int group = num_heads / num_kv_heads;
  if (member < 0 || member >= group || q_stride < int64_t(num_heads) * head_dim ||
      k_stride < int64_t(num_kv_heads) * head_dim || q_stride > INT32_MAX ||
      k_stride > INT32_MAX) {
    return Invalid(kWhat, absl::StrFormat("member=%d q_stride=%d k_stride=%d", member, q_stride,
                                          k_stride));
  }
  if (q == nullptr || k == nullptr || scores == nullptr) return Invalid(kWhat, "null pointer");
  if (absl::Status s = BlasStatus(cublasSetStream(impl_->handle, stream), "cublasSetStream");
      !s.ok()) {
    return s;
  }
  const float zero = 0.f;
  // scores^T [n(s) x n(t)] = K_kv [n x d] * Q_h^T [d x n].
  const cublasStatus_t st = cublasGemmStridedBatchedEx(
      impl_->handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, head_dim, &scale, k, CUDA_R_16BF,
      int(k_stride), head_dim, q + int64_t(member) * head_dim, CUDA_R_16BF, int(q_stride),
      int64_t(group) * head_dim, &zero, scores, CUDA_R_32F, n, int64_t(n) * n, num_kv_heads,
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return BlasStatus(st, kWhat);
}

}  // namespace claa::gpu
