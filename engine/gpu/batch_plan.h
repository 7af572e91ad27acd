#ifndef CLAA_ENGINE_GPU_BATCH_PLAN_H_
#define CLAA_ENGINE_GPU_BATCH_PLAN_H_

// Host-side plan of one GPU forward pass (CUDA-free, so it is unit-testable anywhere).
//
// Everything that decides the shape of the work is known before the first kernel runs: keep
// counts are functions of the prompt length (PruningConfig::KeepCount), so the row layout of
// every layer, every cache slot written, the offsets of the selections and the per-layer lengths
// afterwards are computed here, written into one int32 "blob" that goes to the device in a single
// copy, and the layer loop runs without a host synchronisation. Only the *which* of the pruning
// (kept token indices) is decided on the device.
//
// Row layout: the items' rows are stacked in batch order, as in LlamaModel. After an item's
// pruning layer (CLAA / FastKV / Oracle, token-selective propagation) its rows shrink to the
// kept ones and later items move up; offsets[l] gives the layout layer l runs on.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/pruning/pruning_config.h"

namespace claa::gpu {

struct ModelDims {
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  // Whether single-token batches may use paged decode attention (the kernel covers head_dim 64
  // and 128); otherwise they take the kMixed path.
  bool paged_decode = true;
};

// One item's pruning, resolved against its prompt (mirrors PrefillPruner's predicates).
struct ItemPruning {
  PruningMethod method = PruningMethod::kFull;
  int prompt_len = 0;
  int keep = 0;    // KeepCount(prompt_len)
  int window = 0;  // min(config window, prompt_len)
  int prefix = 0;  // prompt_len - window: the tokens that are ranked
  int pruning_layer = 0;
  int min_layer = 0;
  int agg = 1;  // CLAA's n (1 for FastKV)
  int pool = 7;

  // Pruning changes anything only when fewer tokens are kept than the prompt has (otherwise the
  // CPU path keeps every token and compacts nothing; the GPU skips the work).
  bool active() const { return method != PruningMethod::kFull && keep < prompt_len; }
  bool propagates() const {
    return active() && (method == PruningMethod::kClaa || method == PruningMethod::kFastKv ||
                        method == PruningMethod::kOracle);
  }
  // PrefillPruner::ScorerNeeds / CompactsCache / SelectsAt.
  bool ScorerNeeds(int layer) const {
    return propagates() && method != PruningMethod::kOracle && layer <= pruning_layer &&
           layer > pruning_layer - agg;
  }
  bool CompactsCache(int layer) const {
    return propagates() && layer >= min_layer && layer <= pruning_layer;
  }
  bool SelectsAt(int layer) const { return active() && layer == pruning_layer; }
};

ItemPruning ResolveItemPruning(const PruningConfig& config, int prompt_len);

// One item of a pass.
struct PassItemInput {
  int rows = 0;  // tokens fed
  int start_pos = 0;
  // Token ids; empty when the caller fills them on the device (GemFilter's re-run).
  absl::Span<const int32_t> host_tokens;
  absl::Span<const int> past;    // [model layers] slots cached before the pass
  absl::Span<const int> blocks;  // block table
  ItemPruning pruning;           // kFull: plain forward
  absl::Span<const float> oracle_scores;  // kOracle: one per prompt token
};

enum class AttnMode {
  kFresh,   // every item starts with an empty cache: attend within the batch's own K/V rows
  kDecode,  // every item feeds one token: paged decode attention
  kMixed,   // otherwise: gather cached + new K/V to contiguous rows, varlen attention
};

// The attention layout of one or more layers (layers with equal rows / past / writes share).
struct AttnLayout {
  AttnMode mode = AttnMode::kFresh;
  int total_rows = 0;
  int max_q = 0;
  int max_k = 0;
  int64_t total_k = 0;        // rows of the contiguous K/V a kMixed layer gathers
  bool writes_cache = false;  // false: no slot is written (the write launch is skipped)
  // int32 offsets into the blob:
  int64_t cu_q = -1;   // [B + 1]
  int64_t cu_k = -1;   // [B + 1], kMixed
  int64_t k_lens = -1;  // [B]: slots attended (past + rows), kDecode / kMixed
  int64_t slots = -1;  // [total_rows]: global cache slot per row, -1 = not written
};

// Device work of one active pruning item.
struct PruneWork {
  int item = 0;
  ItemPruning p;
  // int32 blob offsets. kept: [keep], the last `window` entries prefilled with the window
  // positions (the device writes the top-k in front). head_kept: [kv_heads][keep], same per
  // head (cache compaction). oracle: [prefix] float bits.
  int64_t kept = -1;
  int64_t head_kept = -1;
  int64_t oracle = -1;
  // Scratch byte offsets (floats): history [agg][kv_heads][prefix] (the scorer's layers),
  // temp [kv_heads][prefix] (compaction-only layers, GemFilter's pooled scores), token_scores
  // [prefix], raw [kv_heads][prefix] (GemFilter before pooling), zstats (16 B per row).
  size_t history = 0, temp = 0, token_scores = 0, raw = 0, zstats = 0;
};

// Token-selective propagation after `layer`'s MLP: new row r takes old row gather[r].
struct Compaction {
  int layer = 0;
  int new_total = 0;
  int64_t gather = -1;  // int32 blob offset, [new_total]; pruned segments filled on the device
  struct Segment {
    int work = 0;        // index into PassPlan::work
    int old_offset = 0;  // the item's first row before
    int new_offset = 0;  // and after
  };
  std::vector<Segment> pruned;
};

// Append-only int32 host buffer whose offsets are 256-byte aligned.
class Blob {
 public:
  int64_t Take(int64_t n);
  int32_t* at(int64_t offset) { return data_.data() + offset; }
  const std::vector<int32_t>& data() const { return data_; }
  size_t bytes() const { return data_.size() * sizeof(int32_t); }

 private:
  std::vector<int32_t> data_;
};

// Byte layout of device scratch; offsets 256-byte aligned.
class ScratchLayout {
 public:
  size_t Take(size_t bytes);
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

struct PassPlan {
  int num_items = 0;
  int num_layers = 0;         // layers this pass runs
  bool scoring_pass = false;  // GemFilter: stop after the last layer's attention, no cache
  int max_blocks = 1;         // block table row length
  int max_rows = 0;           // most rows any layer runs
  std::vector<int> rows_in;   // [item] rows fed
  std::vector<std::vector<int>> offsets;  // [layer 0..num_layers][item + 1]
  std::vector<int> layer_layout;          // [layer] -> layouts
  std::vector<AttnLayout> layouts;
  std::vector<PruneWork> work;
  std::vector<Compaction> compactions;    // in layer order
  std::vector<std::vector<int>> new_lengths;  // [item][model layer] after the pass
  // int32 blob offsets: token ids and positions [rows_in total], block tables
  // [B][max_blocks], last row of each item in the final layout [B].
  int64_t tokens = -1, positions = -1, block_tables = -1, last_rows = -1;

  int total_in() const { return offsets.front().back(); }
  int total_out() const { return offsets.back().back(); }
  // Work for item i at layer l, or -1.
  int WorkFor(int item) const;
};

// Plans one pass over `items` (scoring_pass: GemFilter's, a single fresh item whose pruning is
// kGemFilter; it runs layers 0..pruning_layer and writes no cache). Appends to blob and scratch.
PassPlan BuildPassPlan(absl::Span<const PassItemInput> items, const ModelDims& dims,
                       bool scoring_pass, Blob* blob, ScratchLayout* scratch);

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_BATCH_PLAN_H_
