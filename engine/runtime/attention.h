#ifndef CLAA_ENGINE_RUNTIME_ATTENTION_H_
#define CLAA_ENGINE_RUNTIME_ATTENTION_H_

// Causal GQA attention of one sequence's new queries against its paged KV cache (fp32).
#include <vector>

#include "absl/types/span.h"
#include "engine/runtime/kv_cache.h"

namespace claa {

// Reusable buffers so that attention allocates nothing in steady state.
struct AttentionScratch {
  std::vector<float> k, v;     // One KV head's keys / values gathered contiguously: [slots, d].
  std::vector<float> scores;   // [query chunk, slots].
};

// Attention for num_tokens new queries of one sequence at one layer.
//  - q: [num_tokens] rows of q_stride floats; local query head h occupies columns
//    [h * head_dim, (h + 1) * head_dim) and is already rotated (RoPE).
//  - The cache must already hold the new tokens' K/V: slots [0, past_len + num_tokens) of
//    `layer` under `block_table`. Query t sees slots [0, past_len + t] (causal).
//  - GQA: query head h reads KV head h / (num_heads / cache.num_kv_heads()).
//  - out: [num_tokens] rows of out_stride floats, same column layout as q.
// Scores are q.k / sqrt(head_dim), softmax in fp32 with max subtraction. QK^T and PV run as
// GEMMs over chunks of queries so that long prompts need O(chunk * slots) scratch.
void PagedCausalAttention(const PagedKvCache& cache, int layer, absl::Span<const int> block_table,
                          int past_len, const float* q, int q_stride, int num_tokens,
                          int num_heads, float* out, int out_stride, AttentionScratch* scratch);

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_ATTENTION_H_
