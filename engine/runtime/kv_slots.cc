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

namespace {

// Copies n slots between the runner's pools and a flat [n][all kv heads][head_dim] buffer pair,
// one rank's contiguous slice of heads at a time.
void CopySlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
               float* k_flat, float* v_flat, bool to_flat) {
  const size_t row = size_t(runner.config().num_kv_heads) * runner.config().head_dim;
  for (int r = 0; r < runner.tp_size(); ++r) {
    PagedKvCache& cache = runner.cache(r);
    const size_t part = cache.token_stride();
    for (int s = 0; s < n; ++s) {
      float* kf = k_flat + size_t(s) * row + size_t(r) * part;
      float* vf = v_flat + size_t(s) * row + size_t(r) * part;
      float* kc = cache.k_slot(layer, kv.blocks, first + s);
      float* vc = cache.v_slot(layer, kv.blocks, first + s);
      std::memcpy(to_flat ? kf : kc, to_flat ? kc : kf, part * sizeof(float));
      std::memcpy(to_flat ? vf : vc, to_flat ? vc : vf, part * sizeof(float));
    }
  }
}

}  // namespace

absl::Status ReadKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                         float* k_out, float* v_out) {
  const int filled = layer >= 0 && layer < int(kv.layer_lengths.size()) ? kv.layer_lengths[layer]
                                                                         : 0;
  if (auto s = CheckRange(runner, kv, layer, first, n, filled); !s.ok()) return s;
  if (runner.on_gpu()) return runner.gpu_model().ReadKvSlots(kv, layer, first, n, k_out, v_out);
  CopySlots(runner, kv, layer, first, n, k_out, v_out, /*to_flat=*/true);
  return absl::OkStatus();
}

absl::Status WriteKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                          const float* k, const float* v) {
  const int capacity = int(kv.capacity(runner.block_size()));
  if (auto s = CheckRange(runner, kv, layer, first, n, capacity); !s.ok()) return s;
  if (runner.on_gpu()) return runner.gpu_model().WriteKvSlots(kv, layer, first, n, k, v);
  // CopySlots only reads the flat side when writing the pools.
  CopySlots(runner, kv, layer, first, n, const_cast<float*>(k), const_cast<float*>(v),
            /*to_flat=*/false);
  return absl::OkStatus();
}

absl::Status WriteStagedKv(ModelRunner& runner, const SequenceKv& kv,
                           const gpu::GpuKvStage& stage) {
  if (!runner.on_gpu()) {
    return absl::FailedPreconditionError("a KV stage received over NCCL needs a GPU model");
  }
  if (int(stage.layer_lengths().size()) != runner.config().num_layers) {
    return absl::InvalidArgumentError("the KV stage has the wrong number of layers");
  }
  const int capacity = int(kv.capacity(runner.block_size()));
  for (int len : stage.layer_lengths()) {
    if (len < 0 || len > capacity) {
      return absl::OutOfRangeError(absl::StrFormat(
          "the KV stage holds %d slots of a layer; the sequence has room for %d", len, capacity));
    }
  }
  return runner.gpu_model().WriteStagedKv(stage, kv);
}

}  // namespace claa
