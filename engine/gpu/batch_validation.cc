#include "engine/gpu/batch_validation.h"

#include "absl/strings/str_format.h"
#include "engine/runtime/batch_checks.h"

namespace claa::gpu {

absl::Status ValidateGpuBatch(absl::Span<const ForwardItem> batch, const ModelConfig& c,
                              int num_blocks, int block_size) {
  return ValidateForwardBatch(batch, c, num_blocks, block_size, [](const ForwardItem& item) {
    if (item.prefill != nullptr && item.prefill->capture != nullptr) {
      return absl::UnimplementedError("score capture (evaluation) runs on the CPU path only");
    }
    if (AttentionReuse* reuse = item.attention_reuse; reuse != nullptr) {
      const int n = int(item.tokens.size());
      const HostAttentionMaps maps = reuse->host_maps();
      if (reuse->replaces_attention() && (maps.data == nullptr || maps.length < n)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("attention reuse without host maps for %d tokens", n));
      }
      if (reuse->captures() && reuse->capture_output() == nullptr) {
        return absl::InvalidArgumentError("attention capture without an output buffer");
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace claa::gpu
