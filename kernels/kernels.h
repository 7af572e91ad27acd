#ifndef CLAA_KERNELS_KERNELS_H_
#define CLAA_KERNELS_KERNELS_H_

// CUDA kernels of the GPU backend: bf16 storage, fp32 accumulation. Every function enqueues work
// on `stream` and returns at once; the returned status covers argument checks and the launch
// (an asynchronous fault shows up in a later call or synchronisation). Nothing here throws.
//
// Conventions (same as the CPU path in engine/runtime):
//  - Matrices are row-major; a "stride" is the distance in elements between consecutive rows,
//    so callers can address column slices of wider buffers (e.g. Q inside a fused QKV row).
//  - A row of query/key vectors holds heads back to back: head h at columns
//    [h * head_dim, (h + 1) * head_dim). GQA: query head h reads KV head h / (heads / kv_heads).
//  - Paged KV pools of one layer are [num_blocks][block_size][kv_heads][head_dim] (kv_cache.h);
//    slot s of a sequence lives in block table[s / block_size] at offset s % block_size.
//  - All pointers are device pointers unless a parameter says "host".
//  - Vectorised paths load 16 bytes at a time: where a function says "16-byte aligned", every
//    row start it touches must be (base pointer aligned and stride a multiple of 8 elements).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

// Round-to-nearest-even float -> bf16 (NaN stays NaN), and the exact widening back.
Bf16 FloatToBf16(float f);
float Bf16ToFloat(Bf16 b);

// Number of CUDA devices; 0 (not an error) when there is no driver or no device.
int CudaDeviceCount();

// ---------------------------------------------------------------------------------------------
// Element-wise and row kernels.

// out[t] = table[ids[t]] for t < num_tokens ([vocab, hidden] table, out rows of hidden). An id
// outside [0, vocab) gives a zero row (the kernel cannot report it; no memory outside is read).
absl::Status EmbeddingGather(const Bf16* table, int vocab, int hidden, const int32_t* ids,
                             int num_tokens, Bf16* out, cudaStream_t stream);

// Pre-norm step of a decoder layer, per row of `hidden` values:
//   residual += x (rounded to bf16, as a bf16 model stores its residual stream);
//   out = rmsnorm(residual) * weight, rmsnorm in fp32: r * rsqrt(mean(r^2) + eps).
// x may be null: then residual is only normalised (first layer, final norm). out may not alias
// residual or x. Rows are contiguous (stride = hidden).
absl::Status AddRmsNorm(Bf16* residual, const Bf16* x, const Bf16* weight, int num_rows,
                        int hidden, float eps, Bf16* out, cudaStream_t stream);

// Rotary embedding in place, Hugging Face "rotate half" (engine/runtime/cpu_ops.h
// RotaryEmbedding): for each head vector and i < head_dim / 2, with a = p * inv_freq[i] in fp32,
//   x[i] <- x[i] cos a - x[i + half] sin a,  x[i + half] <- x[i + half] cos a + x[i] sin a.
// inv_freq (device, head_dim / 2 floats) carries the rope scaling: upload
// claa::ComputeRopeInvFreq(config). positions: one per token (original positions survive
// token-selective propagation).
absl::Status ApplyRope(Bf16* x, int num_tokens, int num_heads, int head_dim, int64_t row_stride,
                       const int32_t* positions, const float* inv_freq, cudaStream_t stream);

// out[r, c] = silu(gate[r, c]) * up[r, c] for rows x cols. out may alias gate or up.
absl::Status SwiGlu(const Bf16* gate, int64_t gate_stride, const Bf16* up, int64_t up_stride,
                    int rows, int cols, Bf16* out, int64_t out_stride, cudaStream_t stream);

// Token-selective propagation: dst row r = src row indices[r] (cols values each), for
// r < num_indices. An index outside [0, src_rows) gives a zero row.
absl::Status GatherRows(const Bf16* src, int64_t src_stride, int src_rows,
                        const int32_t* indices, int num_indices, int cols, Bf16* dst,
                        int64_t dst_stride, cudaStream_t stream);
// Same for int32 scalars (position ids): dst[r] = src[indices[r]] (0 when out of range).
absl::Status GatherInt32(const int32_t* src, int src_len, const int32_t* indices,
                         int num_indices, int32_t* dst, cudaStream_t stream);

// Greedy sampling: out[r] = argmax of logits row r (vocab values; ties -> lowest id, NaN never
// wins, as claa::Sampler's greedy path).
absl::Status ArgmaxRows(const float* logits, int64_t stride, int rows, int vocab, int32_t* out,
                        cudaStream_t stream);
absl::Status ArgmaxRows(const Bf16* logits, int64_t stride, int rows, int vocab, int32_t* out,
                        cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// KV cache (layer geometry: PagedKvLayer in kernel_types.h).

// Writes num_tokens new K/V rows (kv_heads * head_dim values each, rows k_stride / v_stride apart)
// into the layer's pools: row t goes to global slot slot_mapping[t] = block * block_size + offset
// (negative: skipped). head_dim % 8 == 0; rows 16-byte aligned.
absl::Status WritePagedKv(const PagedKvLayer& layer, const Bf16* k, int64_t k_stride,
                          const Bf16* v, int64_t v_stride, const int32_t* slot_mapping,
                          int num_tokens, cudaStream_t stream);

// Per-KV-head compaction of one layer (CLAA layers min_layer..tsp): for each KV head h and
// t < count, destination slot t of head h (under dst_block_table) receives source slot
// indices[h * count + t] of head h. The source is either paged (src_block_table != null, same
// geometry as dst) or contiguous rows of src_k / src_v with src_stride elements per token
// (src_block_table == null; the prefill's K/V buffers). Only head h's head_dim values move.
// Source and destination must not overlap.
absl::Status CompactKvByHead(const Bf16* src_k, const Bf16* src_v, int64_t src_stride,
                             const int32_t* src_block_table, const int32_t* indices, int count,
                             const PagedKvLayer& dst, const int32_t* dst_block_table,
                             cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Attention (argument structs in kernel_types.h).

// Causal flash-attention prefill over a variable-length batch (cu_seqlens convention).
// Sequence b's queries are rows [cu_seqlens_q[b], cu_seqlens_q[b + 1]) of q and out, its keys
// and values rows [cu_seqlens_k[b], cu_seqlens_k[b + 1]) of k and v (cu_seqlens_k may be null:
// same as q). With q_len <= k_len, query i sees keys 0 .. k_len - q_len + i (bottom-right
// causal, so a chunk of new tokens after k_len - q_len cached ones works). Scores are
// scale * q.k, softmax in fp32. head_dim 64 or 128; rows 16-byte aligned. max_seqlen_q bounds
// every q_len (host value: it sizes the grid). out must not alias q, k or v.
absl::Status FlashAttentionPrefill(const VarlenAttentionArgs& args, cudaStream_t stream);

// Decode attention: one new query per sequence against its paged KV cache at one layer. Each
// layer has its own lengths (CLAA keeps fewer tokens in later layers); with per_head_lengths
// kv_lens is [batch][kv_heads] (each KV head its own length), else [batch]. The new token's K/V
// must already be in the cache (WritePagedKv). block_tables is [batch][max_blocks_per_seq].
// max_kv_len (host) bounds every length: it sizes the split over keys. Long contexts are split
// over several thread blocks and merged (flash-decoding); that needs `workspace` of
// DecodeAttentionWorkspaceBytes(...) bytes; with less (or null) fewer splits are used.
// head_dim 64 or 128; q/out rows 16-byte aligned.
size_t DecodeAttentionWorkspaceBytes(int batch, int num_heads, int head_dim, int max_kv_len);
absl::Status PagedDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// CLAA scoring (DESIGN.md §2).

// Per-layer window score (SnapKV-style): the `window` queries q_window (the prompt's last window
// positions after RoPE, rows q_stride apart) attend to all prompt_len keys (rows k_stride apart):
// scaled q.k, causal inside the window (window query i sees keys 0 .. prefix_len + i,
// prefix_len = prompt_len - window), fp32 softmax over keys; the probabilities of the prefix keys
// are summed over the window queries, average-pooled (pool_kernel odd, zero padding counted:
// avg_pool1d(padding = kernel / 2, count_include_pad = True)) and summed over the query heads of
// each KV head's group. out: [num_kv_heads] rows of prefix_len floats, out_stride apart.
// window <= 32, head_dim % 8 == 0 and <= 256, rows 16-byte aligned. Needs workspace of
// WindowScoresWorkspaceBytes(...) bytes. prompt_len <= window: nothing to do.
size_t WindowScoresWorkspaceBytes(int prompt_len, int window, int num_heads, int num_kv_heads);
absl::Status WindowScores(const WindowScoresArgs& args, cudaStream_t stream);

// CLAA aggregation: z-score each of num_rows rows (len values, row_stride apart; the last n
// layers x KV heads) with its population mean and std (a constant row contributes zeros), then
// out[j] = max over rows. Matches claa::ClaaScorer. Needs 16 * num_rows bytes of workspace.
absl::Status ZScoreMax(const float* scores, int num_rows, int len, int64_t row_stride,
                       float* out, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream);

// For each of num_rows rows of n scores (row_stride apart): the indices of the k largest
// (ties -> lower index; NaN ranks lowest; -0 == +0), written in ascending index order to
// out + r * out_stride. 0 <= k <= n. Matches claa::TopIndicesAscending.
absl::Status TopKAscending(const float* scores, int num_rows, int n, int64_t row_stride, int k,
                           int32_t* out, int64_t out_stride, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// GEMM through cuBLASLt: C[m, n] = A[m, k] * W[n, k]^T (+ beta * C), W in the Hugging Face
// [out_features, in_features] layout, bf16 inputs, fp32 accumulation, bf16 or fp32 output.
// Leading dimensions are row strides in elements. Not thread-safe: one instance per stream
// (it caches algorithm choices per shape and owns a workspace).
class BlasLtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<BlasLtGemm>> Create(size_t workspace_bytes = 32 << 20);
  ~BlasLtGemm();
  BlasLtGemm(const BlasLtGemm&) = delete;
  BlasLtGemm& operator=(const BlasLtGemm&) = delete;

  absl::Status Run(const Bf16* a, int64_t lda, const Bf16* w, int64_t ldw, Bf16* c, int64_t ldc,
                   int m, int n, int k, float beta, cudaStream_t stream);
  absl::Status Run(const Bf16* a, int64_t lda, const Bf16* w, int64_t ldw, float* c,
                   int64_t ldc, int m, int n, int k, float beta, cudaStream_t stream);

  struct Impl;

 private:
  explicit BlasLtGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claa::gpu

#endif  // CLAA_KERNELS_KERNELS_H_
