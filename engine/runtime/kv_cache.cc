#include "engine/runtime/kv_cache.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"

namespace claa {

int SequenceKv::max_layer_length() const {
  int m = 0;
  for (int len : layer_lengths) m = std::max(m, len);
  return m;
}

absl::Status ReserveTokens(BlockManager& manager, SequenceKv* kv, int new_total) {
  if (new_total < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("cannot reserve %d tokens", new_total));
  }
  const int needed = manager.BlocksFor(new_total) - int(kv->blocks.size());
  if (needed <= 0) return absl::OkStatus();
  CLAA_ASSIGN_OR_RETURN(std::vector<int> fresh, manager.Allocate(needed));
  kv->blocks.insert(kv->blocks.end(), fresh.begin(), fresh.end());
  return absl::OkStatus();
}

void TrimBlocks(BlockManager& manager, SequenceKv* kv) {
  const size_t keep = size_t(manager.BlocksFor(kv->max_layer_length()));
  if (kv->blocks.size() <= keep) return;
  std::vector<int> spare(kv->blocks.begin() + keep, kv->blocks.end());
  kv->blocks.resize(keep);
  manager.Free(spare);
}

void ReleaseSequence(BlockManager& manager, SequenceKv* kv) {
  manager.Free(kv->blocks);
  kv->blocks.clear();
  std::fill(kv->layer_lengths.begin(), kv->layer_lengths.end(), 0);
  kv->num_positions = 0;
}

PagedKvCache::PagedKvCache(int num_layers, int num_blocks, int block_size, int num_kv_heads,
                           int head_dim)
    : num_layers_(num_layers),
      num_blocks_(num_blocks),
      block_size_(block_size),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      block_floats_(size_t(block_size) * num_kv_heads * head_dim),
      pool_floats_(size_t(num_layers) * num_blocks * block_floats_),
      k_(new float[pool_floats_]),
      v_(new float[pool_floats_]) {}

size_t PagedKvCache::BytesPerBlock(int num_layers, int block_size, int num_kv_heads,
                                   int head_dim) {
  return 2 * size_t(num_layers) * block_size * num_kv_heads * head_dim * sizeof(float);
}

}  // namespace claa
