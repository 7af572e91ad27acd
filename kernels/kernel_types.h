#ifndef CLAA_KERNELS_KERNEL_TYPES_H_
#define CLAA_KERNELS_KERNEL_TYPES_H_

// Plain argument types of the kernel API (kernels.h). Free of Abseil and CUDA headers so that
// both the nvcc-compiled kernels and host callers can include it.
#include <cstddef>
#include <cstdint>

// The one CUDA type callers need; identical to the runtime's own declaration, so including
// cuda_runtime_api.h as well is fine.
typedef struct CUstream_st* cudaStream_t;

namespace claa::gpu {

// bf16 storage type (same bits as __nv_bfloat16); host code only moves it around.
struct Bf16 {
  uint16_t bits;
};
static_assert(sizeof(Bf16) == 2);

// Geometry of one layer's paged pools ([num_blocks][block_size][kv_heads][head_dim]).
struct PagedKvLayer {
  Bf16* k = nullptr;
  Bf16* v = nullptr;
  int num_blocks = 0;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// Arguments of FlashAttentionPrefill (kernels.h).
struct VarlenAttentionArgs {
  const Bf16* q = nullptr;
  int64_t q_stride = 0;
  const Bf16* k = nullptr;
  int64_t k_stride = 0;
  const Bf16* v = nullptr;
  int64_t v_stride = 0;
  Bf16* out = nullptr;
  int64_t out_stride = 0;
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1], device
  const int32_t* cu_seqlens_k = nullptr;  // [batch + 1], device, or null
  int batch = 0;
  int max_seqlen_q = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;  // usually 1 / sqrt(head_dim)
};

// Arguments of PagedDecodeAttention (kernels.h).
struct DecodeAttentionArgs {
  const Bf16* q = nullptr;  // [batch][q_stride], heads back to back
  int64_t q_stride = 0;
  PagedKvLayer cache;
  const int32_t* block_tables = nullptr;
  int max_blocks_per_seq = 0;
  const int32_t* kv_lens = nullptr;
  bool per_head_lengths = false;
  int max_kv_len = 0;
  int batch = 0;
  int num_heads = 0;
  float scale = 0.0f;
  Bf16* out = nullptr;
  int64_t out_stride = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Arguments of WindowScores (kernels.h).
struct WindowScoresArgs {
  const Bf16* q_window = nullptr;
  int64_t q_stride = 0;
  const Bf16* k = nullptr;
  int64_t k_stride = 0;
  int prompt_len = 0;
  int window = 8;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;
  int pool_kernel = 7;
  float* out = nullptr;
  int64_t out_stride = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

}  // namespace claa::gpu

#endif  // CLAA_KERNELS_KERNEL_TYPES_H_
