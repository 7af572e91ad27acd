#ifndef CLAA_SCHEDULER_HANDOFF_H_
#define CLAA_SCHEDULER_HANDOFF_H_

// What moves between a prefill scheduler and a decode scheduler in disaggregated serving.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/gpu/gpu_model.h"
#include "engine/runtime/kv_cache.h"

namespace claa {

// A prefilled request leaving a prefill-only scheduler: its KV blocks (now owned by the
// receiver, who must free them) and the last prompt token's logits.
struct PrefillHandoff {
  std::string request_id;
  SequenceKv kv;
  std::vector<float> last_logits;
  int prompt_tokens = 0;
  int kept_prompt_tokens = 0;
  double keep_ratio = 1.0;
  double queue_seconds = 0.0;
  double prefill_seconds = 0.0;
};

// Takes ownership of a handoff on the prefill scheduler's worker thread (so blocks are never
// orphaned, even if the requester has gone) and returns the ticket id it is filed under.
class HandoffSink {
 public:
  virtual ~HandoffSink() = default;
  virtual std::string Accept(PrefillHandoff handoff) = 0;
};

// A KV cache arriving at a decode scheduler: in host memory, in global KV-head order
// (engine/runtime/kv_slots.h), or already on the decode GPU (received over NCCL).
struct ImportedKv {
  std::vector<int> layer_lengths;
  int num_positions = 0;
  int kept_prompt_tokens = 0;
  // Per layer: [layer_lengths[l]][num_kv_heads][head_dim] fp32. Empty with device_stage.
  std::vector<std::vector<float>> k, v;
  // Set when the cache came over an NCCL KV link: it waits in device memory until admission.
  std::shared_ptr<gpu::GpuKvStage> device_stage;
  std::vector<float> last_logits;

  int max_layer_length() const {
    int m = 0;
    for (int len : layer_lengths) m = len > m ? len : m;
    return m;
  }
};

}  // namespace claa

#endif  // CLAA_SCHEDULER_HANDOFF_H_
