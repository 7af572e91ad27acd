#include "engine/gpu/batch_validation.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "engine/pruning/pruning_config.h"

namespace claa::gpu {
namespace {

absl::Status ItemError(absl::Status s, size_t i) {
  return absl::Status(s.code(), absl::StrFormat("batch item %d: %s", i, s.message()));
}

}  // namespace

absl::Status ValidateGpuBatch(absl::Span<const ForwardItem> batch, const ModelConfig& c,
                              int num_blocks, int block_size) {
  absl::flat_hash_set<const SequenceKv*> seen;
  for (size_t i = 0; i < batch.size(); ++i) {
    const ForwardItem& item = batch[i];
    if (item.kv == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("batch item %d: null kv", i));
    }
    if (!seen.insert(item.kv).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("batch item %d: the same sequence appears twice in one batch", i));
    }
    if (int(item.kv->layer_lengths.size()) != c.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrFormat("batch item %d: kv has %d layer lengths, model has %d layers", i,
                          item.kv->layer_lengths.size(), c.num_layers));
    }
    const int n = int(item.tokens.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrFormat("batch item %d: no tokens", i));
    for (int j = 0; j < n; ++j) {
      if (item.tokens[j] < 0 || item.tokens[j] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: token id %d at index %d outside vocabulary [0, %d)", i,
            item.tokens[j], j, c.vocab_size));
      }
    }
    if (item.start_pos != item.kv->num_positions) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch item %d: start_pos %d but the sequence has run %d tokens", i, item.start_pos,
          item.kv->num_positions));
    }
    if (c.max_position_embeddings > 0 && item.start_pos + n > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch item %d: positions up to %d exceed max_position_embeddings %d", i,
          item.start_pos + n - 1, c.max_position_embeddings));
    }
    const int max_len =
        *std::max_element(item.kv->layer_lengths.begin(), item.kv->layer_lengths.end());
    const int64_t need = int64_t(max_len) + n;
    const int64_t have = int64_t(item.kv->blocks.size()) * block_size;
    if (have < need) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "batch item %d: %d KV slots needed but only %d reserved (call ReserveTokens)", i, need,
          have));
    }
    if (AttentionReuse* reuse = item.attention_reuse; reuse != nullptr) {
      if (item.start_pos != 0 || max_len != 0 || item.prefill != nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: attention reuse needs a fresh sequence without prefill options", i));
      }
      if (absl::Status s = reuse->Validate(n, c.num_layers, c.num_heads); !s.ok()) {
        return ItemError(s, i);
      }
      const HostAttentionMaps maps = reuse->host_maps();
      if (reuse->replaces_attention() && (maps.data == nullptr || maps.length < n)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: attention reuse without host maps for %d tokens", i, n));
      }
      if (reuse->captures() && reuse->capture_output() == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrFormat("batch item %d: attention capture without an output buffer", i));
      }
    }
    if (const PrefillOptions* p = item.prefill; p != nullptr) {
      if (item.start_pos != 0 || max_len != 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: prefill options need a fresh sequence (position 0, empty cache)", i));
      }
      if (absl::Status s = ValidatePruningConfig(p->pruning, c.num_layers); !s.ok()) {
        return ItemError(s, i);
      }
      if (p->pruning.method == PruningMethod::kOracle && int(p->oracle_scores.size()) != n) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: oracle pruning needs one score per prompt token: %d tokens, %d "
            "scores",
            i, n, p->oracle_scores.size()));
      }
      if (p->capture != nullptr) {
        return absl::UnimplementedError(absl::StrFormat(
            "batch item %d: score capture (evaluation) runs on the CPU path only", i));
      }
    }
    for (int b : item.kv->blocks) {
      if (b < 0 || b >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: block id %d outside the cache's %d blocks", i, b, num_blocks));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace claa::gpu
