#ifndef CLAA_ENGINE_RUNTIME_BATCH_CHECKS_H_
#define CLAA_ENGINE_RUNTIME_BATCH_CHECKS_H_

// The checks every forward backend makes of a batch before it touches any state: the CPU
// LlamaModel (llama_model.h) and the GPU model (engine/gpu, which links this without the rest of
// the CPU runtime). One copy, so both refuse the same batches with the same messages.
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/config.h"
#include "engine/runtime/llama_model.h"
#include "engine/runtime/prefill_pruner.h"

namespace claa {

// Prefill options against the prompt (prompt_len tokens, num_tokens of them fed) and the model:
// pruning settings, oracle scores, score capture. InvalidArgument naming the problem.
absl::Status ValidatePrefillOptions(const PrefillOptions& options, int prompt_len, int num_tokens,
                                    int num_layers);

// The batch against a model of `config` (the whole model's: attention maps cover every query
// head) with paged pools of num_blocks blocks of block_size slots: kv present with one length
// per layer, at least one token per item, token ids in [0, vocab), start_pos ==
// kv->num_positions, last position < max_position_embeddings, enough reserved slots, prefill
// options and attention reuse only on fresh sequences (and valid), block ids inside the pools,
// no sequence twice. Then `backend` (what a backend adds, e.g. what it does not support) for
// each item. InvalidArgument / FailedPrecondition / the backend's code, prefixed "batch item i: ".
absl::Status ValidateForwardBatch(
    absl::Span<const ForwardItem> batch, const ModelConfig& config, int num_blocks,
    int block_size,
    absl::FunctionRef<absl::Status(const ForwardItem&)> backend = [](const ForwardItem&) {
      return absl::OkStatus();
    });

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_BATCH_CHECKS_H_
