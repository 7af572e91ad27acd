#ifndef CLAA_ENGINE_RUNTIME_KV_CACHE_H_
#define CLAA_ENGINE_RUNTIME_KV_CACHE_H_

// Paged KV cache (fp32) of one tensor-parallel rank, and the per-sequence bookkeeping.
//
// Scheme: a block id covers block_size token slots in EVERY layer. Each layer has its own K pool
// and V pool, and the same block id indexes all of them, so a sequence has one block table and
// needs ceil(max layer length / block_size) blocks. Slot s of a sequence lives in block
// blocks[s / block_size] at offset s % block_size.
//
// Memory layout (per rank, allocated once): K and V are each one array
//   [num_layers][num_blocks][block_size][local_kv_heads][head_dim]   (fp32, row-major)
// so one token's K for all local KV heads of a layer is head_dim * local_kv_heads contiguous
// floats, and one block of one layer is a contiguous [block_size][kv_heads][head_dim] tile.
//
// Layers keep their own lengths because CLAA pruning keeps fewer tokens in later layers; a slot
// index is then not a position. Without pruning all layers grow together and slot == position.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/runtime/block_manager.h"

namespace claa {

struct SequenceKv {
  SequenceKv() = default;
  explicit SequenceKv(int num_layers) : layer_lengths(num_layers, 0) {}

  // Block table shared by all layers (and all TP ranks).
  std::vector<int> blocks;
  // Filled slots per layer.
  std::vector<int> layer_lengths;
  // Tokens run through the model so far: the position of the next token. Equals every layer's
  // length unless layers were pruned.
  int num_positions = 0;

  int max_layer_length() const;
  int64_t capacity(int block_size) const { return int64_t(blocks.size()) * block_size; }
};

// Grows kv->blocks so that it holds at least new_total slots (never shrinks). All or nothing:
// ResourceExhausted from the manager leaves kv unchanged.
absl::Status ReserveTokens(BlockManager& manager, SequenceKv* kv, int new_total);

// Frees the blocks past what the longest layer needs (a pruned prefill leaves fewer slots in
// use than it reserved).
void TrimBlocks(BlockManager& manager, SequenceKv* kv);

// Frees all of kv's blocks and resets its lengths and position to 0 (the layer count stays).
void ReleaseSequence(BlockManager& manager, SequenceKv* kv);

class PagedKvCache {
 public:
  PagedKvCache(int num_layers, int num_blocks, int block_size, int num_kv_heads, int head_dim);
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  int num_layers() const { return num_layers_; }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int num_kv_heads() const { return num_kv_heads_; }  // Local to this rank.
  int head_dim() const { return head_dim_; }
  // Floats per token slot of one layer: num_kv_heads * head_dim.
  int token_stride() const { return num_kv_heads_ * head_dim_; }

  // Start of block `block` of `layer`: [block_size][num_kv_heads][head_dim].
  float* k_block(int layer, int block) { return k_.get() + BlockOffset(layer, block); }
  float* v_block(int layer, int block) { return v_.get() + BlockOffset(layer, block); }
  const float* k_block(int layer, int block) const { return k_.get() + BlockOffset(layer, block); }
  const float* v_block(int layer, int block) const { return v_.get() + BlockOffset(layer, block); }

  // Slot `slot` of a sequence with block table `blocks`: token_stride() floats.
  float* k_slot(int layer, absl::Span<const int> blocks, int slot) {
    return k_block(layer, blocks[slot / block_size_]) + size_t(slot % block_size_) * token_stride();
  }
  float* v_slot(int layer, absl::Span<const int> blocks, int slot) {
    return v_block(layer, blocks[slot / block_size_]) + size_t(slot % block_size_) * token_stride();
  }

  // Bytes of K + V for one block id over all layers (what a block costs on this rank).
  static size_t BytesPerBlock(int num_layers, int block_size, int num_kv_heads, int head_dim);
  size_t bytes() const { return 2 * pool_floats_ * sizeof(float); }

 private:
  size_t BlockOffset(int layer, int block) const {
    return (size_t(layer) * num_blocks_ + size_t(block)) * block_floats_;
  }

  int num_layers_, num_blocks_, block_size_, num_kv_heads_, head_dim_;
  size_t block_floats_;  // block_size * num_kv_heads * head_dim
  size_t pool_floats_;   // num_layers * num_blocks * block_floats_
  // Left uninitialised: a slot is always written before attention reads it.
  std::unique_ptr<float[]> k_, v_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_KV_CACHE_H_
