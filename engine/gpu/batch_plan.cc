#include "engine/gpu/batch_plan.h"

#include <algorithm>
#include <cstring>

namespace claa::gpu {
namespace {

constexpr int64_t kAlignInts = 64;  // 256 bytes

// What makes two layers' attention layouts equal.
struct LayoutKey {
  std::vector<int> rows, past;
  std::vector<char> skip;
  bool operator==(const LayoutKey&) const = default;
};

int SlotOf(absl::Span<const int> blocks, int block_size, int s) {
  return blocks[s / block_size] * block_size + s % block_size;
}

}  // namespace

int64_t Blob::Take(int64_t n) {
  const int64_t offset = (int64_t(data_.size()) + kAlignInts - 1) / kAlignInts * kAlignInts;
  data_.resize(size_t(offset + std::max<int64_t>(n, 1)), 0);
  return offset;
}

size_t ScratchLayout::Take(size_t bytes) {
  const size_t offset = (bytes_ + 255) & ~size_t(255);
  bytes_ = offset + std::max<size_t>(bytes, 1);
  return offset;
}

ItemPruning ResolveItemPruning(const PruningConfig& c, int prompt_len) {
  ItemPruning p;
  p.method = c.method;
  p.prompt_len = prompt_len;
  p.keep = c.prunes() ? c.KeepCount(prompt_len) : prompt_len;
  p.window = std::min(c.window, prompt_len);
  p.prefix = prompt_len - p.window;
  p.pruning_layer = c.pruning_layer;
  p.min_layer = c.min_layer;
  p.agg = c.method == PruningMethod::kClaa ? c.aggregation_layers : 1;
  p.pool = c.pooling_kernel;
  return p;
}

int PassPlan::WorkFor(int item) const {
  for (size_t w = 0; w < work.size(); ++w) {
    if (work[w].item == item) return int(w);
  }
  return -1;
}

PassPlan BuildPassPlan(absl::Span<const PassItemInput> items, const ModelDims& dims,
                       bool scoring_pass, Blob* blob, ScratchLayout* scratch) {
  PassPlan plan;
  const int b = int(items.size());
  plan.num_items = b;
  plan.scoring_pass = scoring_pass;
  plan.num_layers = scoring_pass ? items[0].pruning.pruning_layer + 1 : dims.num_layers;
  const int layers = plan.num_layers;
  const int bs = dims.block_size;

  // Rows of each item at each layer, and the layouts they give.
  auto rows_at = [&](int i, int l) {
    const ItemPruning& p = items[i].pruning;
    return p.propagates() && l > p.pruning_layer ? p.keep : items[i].rows;
  };
  plan.rows_in.resize(b);
  plan.offsets.assign(layers + 1, std::vector<int>(b + 1, 0));
  for (int l = 0; l <= layers; ++l) {
    for (int i = 0; i < b; ++i) plan.offsets[l][i + 1] = plan.offsets[l][i] + rows_at(i, l);
    plan.max_rows = std::max(plan.max_rows, plan.offsets[l][b]);
  }
  for (int i = 0; i < b; ++i) {
    plan.rows_in[i] = items[i].rows;
    plan.max_blocks = std::max(plan.max_blocks, int(items[i].blocks.size()));
  }

  // Inputs.
  const int total_in = plan.offsets[0][b];
  plan.tokens = blob->Take(total_in);
  plan.positions = blob->Take(total_in);
  for (int i = 0; i < b; ++i) {
    const int first = plan.offsets[0][i];
    for (int j = 0; j < items[i].rows; ++j) {
      if (!items[i].host_tokens.empty()) blob->at(plan.tokens)[first + j] = items[i].host_tokens[j];
      blob->at(plan.positions)[first + j] = items[i].start_pos + j;
    }
  }
  plan.block_tables = blob->Take(int64_t(b) * plan.max_blocks);
  for (int i = 0; i < b; ++i) {
    std::copy(items[i].blocks.begin(), items[i].blocks.end(),
              blob->at(plan.block_tables) + int64_t(i) * plan.max_blocks);
  }

  // Attention layouts, shared by layers with the same key.
  std::vector<LayoutKey> keys;
  plan.layer_layout.resize(layers);
  for (int l = 0; l < layers; ++l) {
    LayoutKey key;
    bool all_decode = true, all_fresh = true;
    for (int i = 0; i < b; ++i) {
      key.rows.push_back(rows_at(i, l));
      key.past.push_back(items[i].past[l]);
      all_decode = all_decode && key.rows.back() == 1;
      all_fresh = all_fresh && key.past.back() == 0;
    }
    AttnMode mode = AttnMode::kMixed;
    if (all_fresh) mode = AttnMode::kFresh;  // also a batch of one-token prompts
    if (all_decode && !all_fresh && dims.paged_decode) mode = AttnMode::kDecode;
    // A fresh layer attends within the batch's own K/V rows, so the cache write may be skipped
    // for rows that are overwritten right away (compacted layers) or never kept (scoring pass).
    for (int i = 0; i < b; ++i) {
      const bool skip = mode == AttnMode::kFresh &&
                        (scoring_pass || items[i].pruning.CompactsCache(l));
      key.skip.push_back(skip ? 1 : 0);
    }
    auto found = std::find(keys.begin(), keys.end(), key);
    if (found != keys.end()) {
      plan.layer_layout[l] = int(found - keys.begin());
      continue;
    }
    AttnLayout lay;
    lay.mode = mode;
    lay.total_rows = plan.offsets[l][b];
    lay.cu_q = blob->Take(b + 1);
    lay.slots = blob->Take(lay.total_rows);
    if (mode != AttnMode::kFresh) lay.k_lens = blob->Take(b);
    if (mode == AttnMode::kMixed) lay.cu_k = blob->Take(b + 1);
    int32_t* cu_q = blob->at(lay.cu_q);
    cu_q[0] = 0;
    int64_t cu_k = 0;
    if (lay.cu_k >= 0) blob->at(lay.cu_k)[0] = 0;
    for (int i = 0; i < b; ++i) {
      const int rows = key.rows[i], past = key.past[i];
      cu_q[i + 1] = cu_q[i] + rows;
      lay.max_q = std::max(lay.max_q, rows);
      lay.max_k = std::max(lay.max_k, past + rows);
      if (lay.k_lens >= 0) blob->at(lay.k_lens)[i] = past + rows;
      cu_k += past + rows;
      if (lay.cu_k >= 0) blob->at(lay.cu_k)[i + 1] = int32_t(cu_k);
      int32_t* slots = blob->at(lay.slots) + cu_q[i];
      for (int r = 0; r < rows; ++r) {
        slots[r] = key.skip[i] ? -1 : SlotOf(items[i].blocks, bs, past + r);
        lay.writes_cache = lay.writes_cache || !key.skip[i];
      }
    }
    lay.total_k = cu_k;
    plan.layer_layout[l] = int(plan.layouts.size());
    plan.layouts.push_back(lay);
    keys.push_back(std::move(key));
  }

  // Pruning work: selections, compaction indices, score buffers.
  for (int i = 0; i < b; ++i) {
    const ItemPruning& p = items[i].pruning;
    if (!p.active()) continue;
    if (scoring_pass != (p.method == PruningMethod::kGemFilter)) continue;
    PruneWork w;
    w.item = i;
    w.p = p;
    w.kept = blob->Take(p.keep);
    for (int t = 0; t < p.window; ++t) blob->at(w.kept)[p.keep - p.window + t] = p.prefix + t;
    const size_t row_bytes = size_t(p.prefix) * sizeof(float);
    w.token_scores = scratch->Take(row_bytes);
    w.temp = scratch->Take(row_bytes * dims.num_kv_heads);
    if (p.method == PruningMethod::kGemFilter) {
      w.raw = scratch->Take(row_bytes * dims.num_kv_heads);
    } else {
      if (p.method != PruningMethod::kOracle) {
        w.history = scratch->Take(row_bytes * dims.num_kv_heads * p.agg);
        w.zstats = scratch->Take(16 * size_t(dims.num_kv_heads) * p.agg);
      } else {
        w.oracle = blob->Take(p.prefix);
        std::memcpy(blob->at(w.oracle), items[i].oracle_scores.data(),
                    size_t(p.prefix) * sizeof(float));
      }
      if (p.min_layer <= p.pruning_layer) {
        w.head_kept = blob->Take(int64_t(dims.num_kv_heads) * p.keep);
        for (int g = 0; g < dims.num_kv_heads; ++g) {
          int32_t* row = blob->at(w.head_kept) + int64_t(g) * p.keep;
          for (int t = 0; t < p.window; ++t) row[p.keep - p.window + t] = p.prefix + t;
        }
      }
    }
    plan.work.push_back(w);
  }

  // Token-selective propagation events.
  if (!scoring_pass) {
    for (int l = 0; l < layers; ++l) {
      Compaction c;
      c.layer = l;
      for (size_t w = 0; w < plan.work.size(); ++w) {
        const PruneWork& pw = plan.work[w];
        if (pw.p.propagates() && pw.p.pruning_layer == l) {
          c.pruned.push_back({int(w), plan.offsets[l][pw.item], plan.offsets[l + 1][pw.item]});
        }
      }
      if (c.pruned.empty()) continue;
      c.new_total = plan.offsets[l + 1][b];
      c.gather = blob->Take(c.new_total);
      int32_t* gather = blob->at(c.gather);
      for (int i = 0; i < b; ++i) {
        // Items not pruned here keep their rows (which may move up); pruned segments are
        // written on the device from the selection.
        if (rows_at(i, l) != rows_at(i, l + 1)) continue;
        for (int r = 0; r < rows_at(i, l); ++r) {
          gather[plan.offsets[l + 1][i] + r] = plan.offsets[l][i] + r;
        }
      }
      plan.compactions.push_back(std::move(c));
    }
  }

  plan.last_rows = blob->Take(b);
  for (int i = 0; i < b; ++i) blob->at(plan.last_rows)[i] = plan.offsets[layers][i + 1] - 1;

  plan.new_lengths.assign(b, std::vector<int>(dims.num_layers, 0));
  for (int i = 0; i < b; ++i) {
    const ItemPruning& p = items[i].pruning;
    for (int l = 0; l < dims.num_layers; ++l) {
      const int added = scoring_pass ? 0 : (p.CompactsCache(l) ? p.keep : rows_at(i, l));
      plan.new_lengths[i][l] = items[i].past[l] + added;
    }
  }
  return plan;
}

}  // namespace claa::gpu
