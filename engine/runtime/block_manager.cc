#include "engine/runtime/block_manager.h"

#include <algorithm>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace claa {

BlockManager::BlockManager(int num_blocks, int block_size)
    : num_blocks_(num_blocks < 0 ? 0 : num_blocks), block_size_(block_size < 1 ? 1 : block_size) {
  if (num_blocks < 0 || block_size < 1) {
    std::fprintf(stderr, "BlockManager: invalid num_blocks=%d block_size=%d (clamped)\n",
                 num_blocks, block_size);
  }
  free_.reserve(num_blocks_);
  // Reverse order so that a fresh manager hands out 0, 1, 2, ... (easier to read in logs).
  for (int id = num_blocks_ - 1; id >= 0; --id) free_.push_back(id);
  in_use_.assign(num_blocks_, 0);
}

absl::StatusOr<std::vector<int>> BlockManager::Allocate(int count) {
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("cannot allocate %d blocks", count));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (size_t(count) > free_.size()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "KV cache: %d blocks requested, %d of %d free", count, free_.size(), num_blocks_));
  }
  std::vector<int> out(free_.end() - count, free_.end());
  free_.resize(free_.size() - count);
  // The stack's back is handed out first.
  std::reverse(out.begin(), out.end());
  for (int id : out) in_use_[id] = 1;
  return out;
}

void BlockManager::Free(absl::Span<const int> blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int id : blocks) {
    if (id < 0 || id >= num_blocks_) {
      std::fprintf(stderr, "BlockManager::Free: block id %d out of range [0, %d); ignored\n", id,
                   num_blocks_);
      continue;
    }
    if (!in_use_[id]) {
      std::fprintf(stderr, "BlockManager::Free: block %d is not allocated (double free?); ignored\n",
                   id);
      continue;
    }
    in_use_[id] = 0;
    free_.push_back(id);
  }
}

int BlockManager::num_free() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(free_.size());
}

int BlockManager::num_used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_blocks_ - int(free_.size());
}

double BlockManager::usage() const {
  if (num_blocks_ == 0) return 0.0;
  return double(num_used()) / num_blocks_;
}

}  // namespace claa
