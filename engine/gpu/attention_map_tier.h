#ifndef CLAA_ENGINE_GPU_ATTENTION_MAP_TIER_H_
#define CLAA_ENGINE_GPU_ATTENTION_MAP_TIER_H_

// AttnCache hits on the GPU need their stored maps in device memory. Copying an entry from the
// host store costs more than the prefill it would save (an 8-layer, 32-head, 1024-token entry is
// 270 MB of fp16), so the GPU keeps recently reused maps resident: dense bf16 squares of this
// rank's heads (twice the store's bytes), ready for the A @ V GEMMs of kernels/attention_maps.h,
// under a byte budget with the least recently used evicted first.
// Store entries never change once written, so an entry's id (HostAttentionMaps::key), the input
// length and the rank's first head identify resident maps exactly.
//
// Per forward: BeginForward(), then Acquire() for each hit item; maps acquired since the last
// BeginForward are never evicted, and maps that do not fit the budget live in temporary buffers
// until the next BeginForward. Not thread-safe (one per CudaLlamaModel, used inside Forward).
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gpu/cuda_util.h"
#include "engine/runtime/llama_model.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

class AttentionMapTier {
 public:
  explicit AttentionMapTier(size_t budget_bytes) : budget_(budget_bytes) {}

  void BeginForward();

  // Dense maps [maps.layers][local_heads][n][n] of heads first_head.. of `maps`, for an input of
  // n <= maps.length tokens (the first n rows of a causal map are its n-token prefix's map).
  // Resident when (maps.key, n, first_head) was acquired before and not evicted; else uploaded
  // on `stream` and kept when maps.key >= 0 and it fits the budget.
  absl::StatusOr<const Bf16*> Acquire(const HostAttentionMaps& maps, int n, int first_head,
                                      int local_heads, cudaStream_t stream);

  size_t resident_bytes() const { return resident_bytes_; }
  int64_t uploads() const { return uploads_; }
  int64_t resident_hits() const { return resident_hits_; }
  int64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    int64_t key = -1;
    int n = 0;
    int first_head = 0;
    DeviceBuffer maps;
    bool pinned = false;  // acquired in the current forward
  };
  absl::Status Upload(const HostAttentionMaps& maps, int n, int first_head, int local_heads,
                      Bf16* dense, cudaStream_t stream);

  size_t budget_;
  size_t resident_bytes_ = 0;
  std::list<Entry> lru_;  // most recently used first
  std::vector<DeviceBuffer> temporary_;
  DeviceBuffer staging_;  // one layer's packed fp16 maps on their way to dense
  int64_t uploads_ = 0, resident_hits_ = 0, evictions_ = 0;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_ATTENTION_MAP_TIER_H_
