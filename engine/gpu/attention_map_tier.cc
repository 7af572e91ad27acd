#include "engine/gpu/attention_map_tier.h"

#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"
#include "kernels/attention_maps.h"

namespace claa::gpu {

void AttentionMapTier::BeginForward() {
  for (Entry& e : lru_) e.pinned = false;
  temporary_.clear();
}

absl::Status AttentionMapTier::Upload(const HostAttentionMaps& maps, int n, int first_head,
                                      int local_heads, Bf16* dense, cudaStream_t stream) {
  const size_t src_tri = size_t(MapsTriangle(maps.length));
  const size_t dst_tri = size_t(MapsTriangle(n));
  CLAA_RETURN_IF_ERROR(staging_.Reserve(size_t(local_heads) * dst_tri * sizeof(uint16_t)));
  uint16_t* staging = staging_.get<uint16_t>();
  for (int l = 0; l < maps.layers; ++l) {
    // Each head's first n rows are the first Triangle(n) values of its triangle.
    const uint16_t* src = maps.data + (size_t(l) * maps.heads + first_head) * src_tri;
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
        staging, dst_tri * sizeof(uint16_t), src, src_tri * sizeof(uint16_t),
        dst_tri * sizeof(uint16_t), local_heads, cudaMemcpyHostToDevice, stream));
    CLAA_RETURN_IF_ERROR(UnpackMapsBf16(staging, int64_t(dst_tri), local_heads, n,
                                        dense + size_t(l) * local_heads * n * n, stream));
  }
  ++uploads_;
  return absl::OkStatus();
}

absl::StatusOr<const Bf16*> AttentionMapTier::Acquire(const HostAttentionMaps& maps, int n,
                                                      int first_head, int local_heads,
                                                      cudaStream_t stream) {
  if (maps.data == nullptr || n <= 0 || n > maps.length || first_head < 0 ||
      first_head + local_heads > maps.heads) {
    return absl::InternalError(absl::StrFormat(
        "attention maps of %d tokens x %d heads cannot serve %d tokens at heads %d..%d",
        maps.length, maps.heads, n, first_head, first_head + local_heads - 1));
  }
  if (maps.key >= 0) {
    for (auto it = lru_.begin(); it != lru_.end(); ++it) {
      if (it->key == maps.key && it->n == n && it->first_head == first_head) {
        lru_.splice(lru_.begin(), lru_, it);
        lru_.front().pinned = true;
        ++resident_hits_;
        return lru_.front().maps.get<const Bf16>();
      }
    }
  }
  const size_t bytes = size_t(maps.layers) * local_heads * size_t(n) * n * sizeof(Bf16);
  DeviceBuffer dense;
  if (maps.key >= 0 && bytes <= budget_) {
    // Make room from the least recently used end, skipping what this forward still reads.
    for (auto it = lru_.end(); resident_bytes_ + bytes > budget_ && it != lru_.begin();) {
      --it;
      if (it->pinned) continue;
      resident_bytes_ -= it->maps.bytes();
      it = lru_.erase(it);
      ++evictions_;
    }
  }
  CLAA_RETURN_IF_ERROR(dense.Reserve(bytes));
  Bf16* out = dense.get<Bf16>();
  CLAA_RETURN_IF_ERROR(Upload(maps, n, first_head, local_heads, out, stream));
  if (maps.key >= 0 && resident_bytes_ + bytes <= budget_) {
    Entry e;
    e.key = maps.key;
    e.n = n;
    e.first_head = first_head;
    e.maps = std::move(dense);
    e.pinned = true;
    resident_bytes_ += bytes;
    lru_.push_front(std::move(e));
  } else {
    temporary_.push_back(std::move(dense));
  }
  return static_cast<const Bf16*>(out);
}

}  // namespace claa::gpu
