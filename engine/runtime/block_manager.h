#ifndef CLAA_ENGINE_RUNTIME_BLOCK_MANAGER_H_
#define CLAA_ENGINE_RUNTIME_BLOCK_MANAGER_H_

// Free-list allocator of KV-cache block ids. A block id names the same slot range
// [id * block_size, (id + 1) * block_size) in every layer's K and V pool of every tensor-parallel
// rank (see kv_cache.h), so one BlockManager serves a whole TP group. Thread-safe: schedulers and
// request handlers may allocate and free concurrently.
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace claa {

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size);
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  // `count` free block ids, all or nothing: ResourceExhausted (and nothing allocated) when fewer
  // than `count` are free; InvalidArgument when count < 0. Ids come lowest-first from a fresh
  // manager; after frees, the most recently freed are reused first.
  absl::StatusOr<std::vector<int>> Allocate(int count);

  // Returns blocks to the free list. An id that is out of range or not allocated (double free,
  // foreign id) is a caller bug: it is logged to stderr and skipped, leaving the accounting intact.
  void Free(absl::Span<const int> blocks);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int num_free() const;
  int num_used() const;
  // Fraction of blocks in use, in [0, 1] (0 for a manager with no blocks).
  double usage() const;
  // Number of tokens (slots) `num_blocks` blocks hold, and blocks needed for `num_tokens`.
  int64_t TokensFor(int num_blocks) const { return int64_t(num_blocks) * block_size_; }
  int BlocksFor(int64_t num_tokens) const {
    return int((num_tokens + block_size_ - 1) / block_size_);
  }

 private:
  const int num_blocks_;
  const int block_size_;
  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, which
  // then misses absl::Mutex's synchronisation and reports false races; pthread is intercepted.
  mutable std::mutex mu_;
  std::vector<int> free_;        // Guarded by mu_. Stack: back() is handed out next.
  std::vector<uint8_t> in_use_;  // Guarded by mu_. Per block id.
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_BLOCK_MANAGER_H_
