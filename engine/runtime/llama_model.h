#ifndef CLAA_ENGINE_RUNTIME_LLAMA_MODEL_H_
#define CLAA_ENGINE_RUNTIME_LLAMA_MODEL_H_

// One tensor-parallel rank of a Llama-family decoder (Llama, Mistral, Qwen2) on the CPU, fp32,
// with a paged KV cache and batched variable-length forward.
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/weights.h"
#include "engine/runtime/attention.h"
#include "engine/runtime/communicator.h"
#include "engine/runtime/cpu_ops.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/prefill_pruner.h"

namespace claa {

// A hit's maps as the GPU path (engine/gpu) reads them: fp16 in AttnCache's store layout
// ([layer][head][packed causal lower triangle of `length` rows], engine/attncache/
// attention_maps.h). key identifies the maps across forwards (a store entry's id), so a GPU can
// keep them resident; -1: used once.
struct HostAttentionMaps {
  const uint16_t* data = nullptr;
  int layers = 0;
  int heads = 0;
  int length = 0;
  int64_t key = -1;
};

// Per-item attention reuse (AttnCache, DESIGN.md §3): the item's softmax attention probabilities
// come from an earlier, similar input instead of Q/K. Implemented outside the runtime
// (engine/attncache); the model only calls it. Every TP rank calls it for its own query heads,
// [first_head, first_head + local heads), on its own thread, so implementations must let ranks
// run concurrently on disjoint heads.
class AttentionReuse {
 public:
  virtual ~AttentionReuse() = default;
  // Checked by ValidateBatch before any rank starts: whether this item (num_tokens tokens, a
  // fresh sequence) fits the maps of a model with num_layers layers and num_heads query heads.
  virtual absl::Status Validate(int num_tokens, int num_layers, int num_heads) const = 0;
  // True: at every layer the item skips Q/K projection, RoPE, QK^T and softmax; ApplyCached
  // writes its attention output instead, and its KV cache slots are left unwritten, so the
  // sequence must not be extended afterwards. False: attention runs normally (then Capture when
  // captures()).
  virtual bool replaces_attention() const = 0;
  virtual bool captures() const { return false; }
  // out[t][h * d ...] = sum_s A[layer][first_head + h][t][s] * v[s][(h / group) * d ...] for the
  // item's rows t, s < num_tokens; v has num_tokens rows of v_stride floats (local KV heads),
  // out has rows of out_stride floats (local query heads).
  virtual absl::Status ApplyCached(int layer, int first_head, int local_heads, int local_kv_heads,
                                   int head_dim, const float* v, int v_stride, int num_tokens,
                                   float* out, int out_stride) = 0;
  // After normal attention at `layer`: the item's RoPE'd queries and keys (local heads), from which
  // the implementation derives the probabilities it keeps.
  virtual absl::Status Capture(int layer, int first_head, const PromptQk& qk) { return {}; }

  // The GPU path: it computes on the device what ApplyCached / Capture compute on the host.
  // replaces_attention(): the maps to reuse. captures(): where to write the item's maps, fp16 in
  // the layout of HostAttentionMaps with length = the item's tokens (each rank its own heads).
  virtual HostAttentionMaps host_maps() const { return {}; }
  virtual uint16_t* capture_output() { return nullptr; }
};

// One sequence's share of a batch: `tokens` are new tokens at positions start_pos, start_pos+1...
// start_pos must equal kv->num_positions (the tokens already run). kv->blocks must already hold
// every layer's current length + tokens.size() slots (see ReserveTokens).
//
// prefill (optional): the item is a whole prompt (start_pos 0, empty cache) that is pruned
// and/or has its attention signals captured (see prefill_pruner.h). A pruned item keeps fewer
// KV slots in later layers and, for CLAA / FastKV / Oracle, continues at position
// tokens.size(); GemFilter re-runs the kept tokens at fresh positions 0..kept-1, so it continues
// at position kept.
//
// attention_reuse (optional): see AttentionReuse; the item must be a fresh sequence (position 0,
// empty cache) without prefill options. final_hidden (optional out, rank 0): the item's last-layer
// hidden states after the final norm, [rows, hidden] (what embeddings pool).
struct ForwardItem {
  SequenceKv* kv = nullptr;
  absl::Span<const int32_t> tokens;
  int start_pos = 0;
  const PrefillOptions* prefill = nullptr;
  AttentionReuse* attention_reuse = nullptr;
  std::vector<float>* final_hidden = nullptr;
};

class LlamaModel {
 public:
  // weights: this rank's shard. comm: the TP group's communicator for this rank, null when tp=1.
  // cache: this rank's KV pools (local KV heads). None are owned; all must outlive the model.
  LlamaModel(const ModelWeights* weights, Communicator* comm, PagedKvCache* cache);

  // Checks a batch without touching any state: kv present with one length per layer, at least
  // one token per item, token ids in [0, vocab), start_pos == kv->num_positions, last position
  // < max_position_embeddings, enough reserved slots, block ids inside the cache, no sequence
  // twice. InvalidArgument / FailedPrecondition naming the item.
  absl::Status ValidateBatch(absl::Span<const ForwardItem> batch) const;

  // Runs the batch: all tokens of all items go through the projections and the MLP as one
  // [total_tokens, hidden] matrix; attention runs per item against its paged cache. Appends each
  // item's K/V to the cache, advances kv->layer_lengths and kv->num_positions, and writes the
  // logits of each item's last token to *logits ([batch, vocab]); with all_logits, every token's
  // logits in batch order ([total_tokens, vocab]). logits == nullptr skips the LM head (ranks
  // other than 0 of a ModelRunner: the head is replicated and its result identical on all ranks).
  //
  // Tensor parallel: every rank of the group must call Forward with the same batch, which shares
  // the SequenceKv objects. Each rank copies the lengths it needs before its first collective, and
  // only rank 0 (or the only rank when comm is null) advances them, after a collective; so the
  // shared SequenceKv are updated once without a race.
  absl::Status Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                       bool all_logits = false);

  const ModelConfig& config() const { return weights_->config; }
  const ModelWeights& weights() const { return *weights_; }

 private:
  // One item of an internal pass: GemFilter's re-run feeds other tokens than the caller gave.
  struct PassItem {
    SequenceKv* kv;
    absl::Span<const int32_t> tokens;
    int start_pos;
    PrefillPruner* pruner;  // null: plain forward
    AttentionReuse* reuse = nullptr;
    std::vector<float>* final_hidden = nullptr;
  };
  // Runs layers [0, num_layers) over the items. With commit, advances the items' lengths and
  // positions (rank 0) and fills new_lengths [item][layer]; logits as in Forward.
  absl::Status RunPass(absl::Span<const PassItem> items, int num_layers, bool commit,
                       std::vector<float>* logits, bool all_logits,
                       std::vector<std::vector<int>>* new_lengths);
  // Drops the rows of item i that its pruner does not keep; later items' rows move up.
  void CompactRows(std::vector<int>& item_rows, int item, const std::vector<int>& kept);
  absl::Status AllReduce(std::vector<float>& buf, size_t count);

  const ModelWeights* weights_;
  Communicator* comm_;
  PagedKvCache* cache_;
  RotaryEmbedding rope_;

  // Activation buffers, grown on demand and reused across layers and calls.
  std::vector<float> hidden_, normed_, q_, k_, v_, attn_, proj_, gate_, up_;
  std::vector<int32_t> positions_;
  std::vector<int> item_offset_;   // First row of each item in the batch matrix.
  std::vector<int> past_lengths_;  // [item][layer]: slots cached before this call.
  AttentionScratch attn_scratch_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_LLAMA_MODEL_H_
