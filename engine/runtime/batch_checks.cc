#include "engine/runtime/batch_checks.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/pruning/pruning_config.h"
#include "engine/util/status_macros.h"

namespace claa {
namespace {

absl::Status ItemError(const absl::Status& s, size_t i) {
  return absl::Status(s.code(), absl::StrFormat("batch item %d: %s", i, s.message()));
}

}  // namespace

absl::Status ValidatePrefillOptions(const PrefillOptions& options, int prompt_len, int num_tokens,
                                    int num_layers) {
  CLAA_RETURN_IF_ERROR(ValidatePruningConfig(options.pruning, num_layers));
  if (options.pruning.prunes() && num_tokens != prompt_len) {
    return absl::InvalidArgumentError("a pruned prefill must feed exactly the whole prompt");
  }
  if (options.pruning.method == PruningMethod::kOracle &&
      int(options.oracle_scores.size()) != prompt_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle pruning needs one score per prompt token: ", prompt_len,
                     " tokens, ", options.oracle_scores.size(), " scores"));
  }
  if (const ScoreCapture* c = options.capture; c != nullptr) {
    if (options.pruning.prunes()) {
      return absl::InvalidArgumentError("score capture runs on unpruned prefills only");
    }
    if (c->oracle_context_len < 0 || c->oracle_context_len > num_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("oracle context length ",
                                                     c->oracle_context_len, " outside [0, ",
                                                     num_tokens, "]"));
    }
    if (c->window < 1 || c->window_pool < 1 || c->window_pool % 2 == 0 ||
        c->last_query_pool < 1 || c->last_query_pool % 2 == 0) {
      return absl::InvalidArgumentError("capture window must be >= 1 and pooling kernels odd");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateForwardBatch(absl::Span<const ForwardItem> batch, const ModelConfig& c,
                                  int num_blocks, int block_size,
                                  absl::FunctionRef<absl::Status(const ForwardItem&)> backend) {
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
    if (n == 0) {
      return absl::InvalidArgumentError(absl::StrFormat("batch item %d: no tokens", i));
    }
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
    // (Not kv->max_layer_length(): this file links without kv_cache.cc, into the GPU backend.)
    const int max_len =
        *std::max_element(item.kv->layer_lengths.begin(), item.kv->layer_lengths.end());
    const int64_t need = int64_t(max_len) + n;
    if (item.kv->capacity(block_size) < need) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "batch item %d: %d KV slots needed but only %d reserved (call ReserveTokens)", i, need,
          item.kv->capacity(block_size)));
    }
    if (item.prefill != nullptr) {
      if (item.start_pos != 0 || max_len != 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: prefill options need a fresh sequence (position 0, empty cache)", i));
      }
      if (absl::Status s = ValidatePrefillOptions(*item.prefill, n, n, c.num_layers); !s.ok()) {
        return ItemError(s, i);
      }
    }
    if (item.attention_reuse != nullptr) {
      if (item.start_pos != 0 || max_len != 0 || item.prefill != nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: attention reuse needs a fresh sequence without prefill options", i));
      }
      if (absl::Status s = item.attention_reuse->Validate(n, c.num_layers, c.num_heads);
          !s.ok()) {
        return ItemError(s, i);
      }
    }
    for (int b : item.kv->blocks) {
      if (b < 0 || b >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "batch item %d: block id %d outside the cache's %d blocks", i, b, num_blocks));
      }
    }
    if (absl::Status s = backend(item); !s.ok()) return ItemError(s, i);
  }
  return absl::OkStatus();
}

}  // namespace claa
