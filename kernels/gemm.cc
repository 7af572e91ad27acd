// cuBLASLt bf16 GEMM: C[m, n] = A[m, k] * W[n, k]^T (+ beta * C), row-major.
//
// cuBLASLt is column-major, so the row-major product is computed as its transpose:
// C^T [n, m] = W [n, k] * A^T [k, m], where the row-major W is the column-major k x n matrix
// (hence op T) and the row-major A is the column-major k x m matrix (op N). This is the "TN"
// layout cuBLASLt is fastest at, and it needs no copies of the Hugging Face weights.
//
// Creating descriptors and asking the heuristic costs tens of microseconds, as much as a small
// decode GEMM, so plans are cached per (shape, strides, output type, alignment).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/kernels.h"
#include "kernels/host_status.h"

namespace claa::gpu {
namespace {

using internal::CudaStatus;

absl::Status LtStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("cuBLASLt %s: %s (%d)", what,
                                             cublasLtGetStatusString(s), int(s)));
}

// Largest power of two (<= 256) dividing the address: cuBLASLt assumes 256-byte aligned
// operands unless told otherwise, and a kernel picked under that assumption can fault on a
// column slice.
uint32_t Alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

#define CLAA_LT_RETURN_IF_ERROR(expr, what)                    \
  do {                                                         \
    if (absl::Status s_ = LtStatus((expr), what); !s_.ok()) {  \
      return s_;                                               \
    }                                                          \
  } while (0)

}  // namespace

struct BlasLtGemm::Impl {
  struct Key {
    int m, n, k;
    int64_t lda, ldw, ldc;
    int out_type;
    uint32_t align_a, align_w, align_c;
    bool beta_nonzero;
    auto Tie() const {
      return std::tie(m, n, k, lda, ldw, ldc, out_type, align_a, align_w, align_c, beta_nonzero);
    }
    bool operator<(const Key& o) const { return Tie() < o.Tie(); }
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr, a_layout = nullptr, c_layout = nullptr;
    cublasLtMatmulAlgo_t algo{};
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {
      if (c_layout != nullptr) cublasLtMatrixLayoutDestroy(c_layout);
      if (a_layout != nullptr) cublasLtMatrixLayoutDestroy(a_layout);
      if (w_layout != nullptr) cublasLtMatrixLayoutDestroy(w_layout);
      if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    }
  };

  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<Key, std::unique_ptr<Plan>> plans;

  ~Impl() {
    plans.clear();
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> GetPlan(const Key& key) {
    if (auto it = plans.find(key); it != plans.end()) return it->second.get();
    auto plan = std::make_unique<Plan>();
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                            "MatmulDescCreate");
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                           &op_t, sizeof(op_t)),
                            "set TRANSA");
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                           &op_n, sizeof(op_n)),
                            "set TRANSB");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatrixLayoutCreate(&plan->w_layout, CUDA_R_16BF, key.k, key.n, key.ldw),
        "layout W");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatrixLayoutCreate(&plan->a_layout, CUDA_R_16BF, key.k, key.m, key.lda),
        "layout A");
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c_layout,
                                                       static_cast<cudaDataType_t>(key.out_type),
                                                       key.n, key.m, key.ldc),
                            "layout C");
    cublasLtMatmulPreference_t pref = nullptr;
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    // Own the preference for the rest of this function.
    std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                    decltype(&cublasLtMatmulPreferenceDestroy)>
        pref_owner(pref, &cublasLtMatmulPreferenceDestroy);
    const uint64_t ws = workspace_bytes;
    CLAA_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
                                pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                            "set workspace");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                             &key.align_w, sizeof(key.align_w)),
        "set align A");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &key.align_a, sizeof(key.align_a)),
        "set align B");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                             &key.align_c, sizeof(key.align_c)),
        "set align C");
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                             &key.align_c, sizeof(key.align_c)),
        "set align D");
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->w_layout, plan->a_layout,
                                       plan->c_layout, plan->c_layout, pref, 1, &result,
                                       &returned),
        "AlgoGetHeuristic");
    if (returned == 0) {
      return absl::UnimplementedError(absl::StrFormat(
          "cuBLASLt has no algorithm for m=%d n=%d k=%d lda=%d ldw=%d ldc=%d", key.m, key.n,
          key.k, key.lda, key.ldw, key.ldc));
    }
    plan->algo = result.algo;
    const Plan* raw = plan.get();
    plans.emplace(key, std::move(plan));
    return raw;
  }

  absl::Status Run(const Bf16* a, int64_t lda, const Bf16* w, int64_t ldw, void* c, int64_t ldc,
                   cudaDataType_t out_type, size_t out_size, int m, int n, int k, float beta,
                   cudaStream_t stream) {
    if (m < 0 || n < 0 || k < 0 || lda < k || ldw < k || ldc < n) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "BlasLtGemm: m=%d n=%d k=%d lda=%d ldw=%d ldc=%d", m, n, k, lda, ldw, ldc));
    }
    if (m == 0 || n == 0) return absl::OkStatus();
    if (c == nullptr || (k > 0 && (a == nullptr || w == nullptr))) {
      return absl::InvalidArgumentError("BlasLtGemm: null pointer");
    }
    if (k == 0) {
      // An empty sum: cuBLASLt rejects k = 0, so do C = beta * C by hand for the cases that
      // make sense.
      if (beta == 1.0f) return absl::OkStatus();
      if (beta != 0.0f) return absl::InvalidArgumentError("BlasLtGemm: k = 0 with beta != 0, 1");
      return CudaStatus(cudaMemset2DAsync(c, size_t(ldc) * out_size, 0, size_t(n) * out_size,
                                          size_t(m), stream),
                        "BlasLtGemm memset");
    }
    const Key key{m,          n,           k,           lda,         ldw,
                  ldc,        int(out_type), Alignment(a), Alignment(w), Alignment(c),
                  beta != 0.0f};
    absl::StatusOr<const Plan*> plan = GetPlan(key);
    if (!plan.ok()) return plan.status();
    const float alpha = 1.0f;
    CLAA_LT_RETURN_IF_ERROR(
        cublasLtMatmul(handle, (*plan)->desc, &alpha, w, (*plan)->w_layout, a, (*plan)->a_layout,
                       &beta, c, (*plan)->c_layout, c, (*plan)->c_layout, &(*plan)->algo,
                       workspace, workspace_bytes, stream),
        "Matmul");
    return absl::OkStatus();
  }
};

BlasLtGemm::BlasLtGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BlasLtGemm::~BlasLtGemm() = default;

absl::StatusOr<std::unique_ptr<BlasLtGemm>> BlasLtGemm::Create(size_t workspace_bytes) {
  auto impl = std::make_unique<Impl>();
  CLAA_LT_RETURN_IF_ERROR(cublasLtCreate(&impl->handle), "Create");
  if (workspace_bytes > 0) {
    if (absl::Status s = CudaStatus(cudaMalloc(&impl->workspace, workspace_bytes),
                                    "BlasLtGemm workspace");
        !s.ok()) {
      return s;
    }
    impl->workspace_bytes = workspace_bytes;
  }
  return std::unique_ptr<BlasLtGemm>(new BlasLtGemm(std::move(impl)));
}

absl::Status BlasLtGemm::Run(const Bf16* a, int64_t lda, const Bf16* w, int64_t ldw, Bf16* c,
                             int64_t ldc, int m, int n, int k, float beta, cudaStream_t stream) {
  return impl_->Run(a, lda, w, ldw, c, ldc, CUDA_R_16BF, sizeof(Bf16), m, n, k, beta, stream);
}

absl::Status BlasLtGemm::Run(const Bf16* a, int64_t lda, const Bf16* w, int64_t ldw, float* c,
                             int64_t ldc, int m, int n, int k, float beta, cudaStream_t stream) {
  return impl_->Run(a, lda, w, ldw, c, ldc, CUDA_R_32F, sizeof(float), m, n, k, beta, stream);
}

}  // namespace claa::gpu
