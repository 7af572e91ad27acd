#ifndef CLAA_KERNELS_ATTENTION_MAPS_H_
#define CLAA_KERNELS_ATTENTION_MAPS_H_

// AttnCache on the GPU (DESIGN.md §3): the kernels that capture a prompt's softmax attention
// maps and reuse them (out = A @ V) instead of Q/K attention. Conventions as kernels.h; the maps
// are fp16 in AttnCache's store layout (engine/attncache/attention_maps.h): per head the packed
// causal lower triangle, row t holding its t + 1 values, row t starting at Triangle(t) =
// t (t + 1) / 2. The first n rows of a head's triangle are its first Triangle(n) values, so an
// entry's maps serve any shorter prefix as they are. On the device a reused map is unpacked to a
// dense bf16 [n][n] square (zeros above the diagonal), so the product runs on cuBLAS's
// tensor-core GEMMs (a hand-written kernel reading the packed triangle measured 2-5x slower on an
// H100; docs/benchmarks.md).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

inline int64_t MapsTriangle(int64_t n) { return n * (n + 1) / 2; }

// For heads h < num_heads and rows t < n: softmax over s <= t of scores[h * scores_head_stride
// + t * n + s] (fp32, already scaled; max subtracted, as the CPU path), written as fp16 to
// out[h * out_head_stride + Triangle(t) + s].
absl::Status CausalSoftmaxPackFp16(const float* scores, int64_t scores_head_stride,
                                   int num_heads, int n, uint16_t* out, int64_t out_head_stride,
                                   cudaStream_t stream);

// dense[h][t][s] (bf16, [num_heads][n][n]) = packed[h * packed_head_stride + Triangle(t) + s]
// for s <= t, 0 above the diagonal. packed_head_stride may exceed Triangle(n): the first n rows
// of a longer entry's map are the map of its n-token prefix.
absl::Status UnpackMapsBf16(const uint16_t* packed, int64_t packed_head_stride, int num_heads,
                            int n, Bf16* dense, cudaStream_t stream);

// Batched GEMMs of attention maps through cuBLAS (tensor cores, fp32 accumulation). GQA: query
// head h reads KV head h / (num_heads / num_kv_heads). Not thread-safe: one per stream.
class MapsGemm {
 public:
  static absl::StatusOr<std::unique_ptr<MapsGemm>> Create();
  ~MapsGemm();
  MapsGemm(const MapsGemm&) = delete;
  MapsGemm& operator=(const MapsGemm&) = delete;

  // out[t][h * d + j] = sum_{s <= t} maps[h][t][s] * v[s][(h / group) * d + j]: the attention
  // output from dense maps ([num_heads][n][n], bf16). Row blocks skip most of the zero upper
  // triangle. GQA needs 16-byte aligned V rows (V is first copied to one matrix per query head).
  absl::Status MapsTimesV(const Bf16* maps, const Bf16* v, int64_t v_stride, int n,
                          int num_heads, int num_kv_heads, int head_dim, Bf16* out,
                          int64_t out_stride, cudaStream_t stream);
  // Benchmarks: split MapsTimesV's rows into this many GEMMs (0: the default, 512-row blocks,
  // at most 4).
  void set_row_blocks(int blocks) { row_blocks_ = blocks; }

  // The scores of the query heads h = kv * group + member, kv < num_kv_heads (one member of
  // every KV head's group, so that num_kv_heads squares of scratch suffice):
  // scores[kv][t][s] = scale * q[t][h * d ..] . k[s][kv * d ..] for t, s < n (fp32, the full
  // square; the causal softmax reads only s <= t).
  absl::Status GroupScores(const Bf16* q, int64_t q_stride, const Bf16* k, int64_t k_stride,
                           int n, int num_heads, int num_kv_heads, int head_dim, int member,
                           float scale, float* scores, cudaStream_t stream);

  struct Impl;

 private:
  explicit MapsGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int row_blocks_ = 0;
};

}  // namespace claa::gpu

#endif  // CLAA_KERNELS_ATTENTION_MAPS_H_
