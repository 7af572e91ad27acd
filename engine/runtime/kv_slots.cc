#include "engine/runtime/kv_slots.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace claa {
namespace {

absl::Status CheckRange(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                        int limit) {
  if (layer < 0 || layer >= runner.config().num_layers) {
    return absl::OutOfRangeError(absl::StrFormat("layer %d outside [0, %d)", layer,
                                                 runner.config().num_layers));
  }
  if (first < 0 || n < 0 || first + n > limit) {
    return absl::OutOfRangeError(absl::StrFormat(
        "slots [%d, %d) of layer %d outside the %d available", first, first + n, layer, limit));
  }
  return absl::OkStatus();
}

}  // namespace

size_t KvBytes(const ModelConfig& c, size_t slots_total) {
  return 2 * slots_total * size_t(c.num_kv_heads) * c.head_dim * sizeof(float);
}

absl::Status ReadKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                         float* k_out, float* v_out) {
  const int filled = layer >= 0 && layer < int(kv.layer_lengths.size()) ? kv.layer_lengths[layer]
                                                                         : 0;
  if (auto s = CheckRange(runner, kv, layer, first, n, filled); !s.ok()) return s;
  const int tp = runner.tp_size();
  const size_t row = size_t(runner.config().num_kv_heads) * runner.config().head_dim;
  for (int r = 0; r < tp; ++r) {
    PagedKvCache& cache = runner.cache(r);
    const size_t part = cache.token_stride();
    for (int s = 0; s < n; ++s) {
      const size_t dst = size_t(s) * row + size_t(r) * part;
      std::memcpy(k_out + dst, cache.k_slot(layer, kv.blocks, first + s), part * sizeof(float));
      std::memcpy(v_out + dst, cache.v_slot(layer, kv.blocks, first + s), part * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                          const float* k, const float* v) {
  const int capacity = int(kv.capacity(runner.block_size()));
  if (auto s = CheckRange(runner, kv, layer, first, n, capacity); !s.ok()) return s;
  const int tp = runner.tp_size();
  const size_t row = size_t(runner.config().num_kv_heads) * runner.config().head_dim;
  for (int r = 0; r < tp; ++r) {
    PagedKvCache& cache = runner.cache(r);
    const size_t part = cache.token_stride();
    for (int s = 0; s < n; ++s) {
      const size_t src = size_t(s) * row + size_t(r) * part;
      std::memcpy(cache.k_slot(layer, kv.blocks, first + s), k + src, part * sizeof(float));
      std::memcpy(cache.v_slot(layer, kv.blocks, first + s), v + src, part * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace claa
