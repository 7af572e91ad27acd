#ifndef CLAA_ENGINE_PRUNING_ATTENTION_SCORES_H_
#define CLAA_ENGINE_PRUNING_ATTENTION_SCORES_H_

// The per-layer token-importance signals that the pruning methods rank prompt tokens by
// (DESIGN.md §2), computed on the CPU for the attention heads one tensor-parallel rank holds.
//
// Inputs are the layer's RoPE'd queries and keys of one prompt, as the forward pass has them:
// row t (prompt position t) of q starts at q + t * q_stride and holds num_heads head vectors of
// head_dim floats; likewise k with num_kv_heads vectors. Query head h uses KV head
// h / (num_heads / num_kv_heads) (GQA).
#include <vector>

#include "absl/types/span.h"

namespace claa {

struct PromptQk {
  const float* q = nullptr;
  int q_stride = 0;
  const float* k = nullptr;
  int k_stride = 0;
  int prompt_len = 0;
  int num_heads = 0;     // local query heads
  int num_kv_heads = 0;  // local KV heads
  int head_dim = 0;
};

// 1-D average pooling with zero padding that counts towards the mean (PyTorch
// avg_pool1d(kernel, stride 1, padding kernel / 2, count_include_pad=True), as SnapKV uses it):
// out[i] = sum(in[i - r .. i + r] inside the row) / kernel, r = kernel / 2. kernel must be odd.
void AveragePool1d(const float* in, int n, int kernel, float* out);

// SnapKV-style window score: the last `window` prompt positions' queries attend (scaled, causal
// inside the window, fp32 softmax over all keys they see); their probabilities are summed over
// the window for each prefix key (positions < prompt_len - window), averaged-pooled with
// pool_kernel, and summed over the query heads of each KV head's group.
// Returns [num_kv_heads][prompt_len - window] (empty when prompt_len <= window).
std::vector<float> WindowScores(const PromptQk& qk, int window, int pool_kernel);

// GemFilter's signal: the last prompt position's raw dot products q.k (no scale, no softmax) with
// each prefix key, summed over the query heads of each KV head's group, then average-pooled.
// Returns [num_kv_heads][prompt_len - window].
std::vector<float> LastQueryScores(const PromptQk& qk, int window, int pool_kernel);

// Answer-Informed Oracle, one layer: for every query row in [first_query, qk.prompt_len) --
// which for the oracle are the last prompt token followed by the generated answer tokens --
// softmax over the keys of the first `context_len` positions only (the prompt), then the max
// over local heads. running_max ([num_queries][context_len], num_queries = prompt_len -
// first_query) is raised element-wise to it, so calling this for every layer leaves the max over
// layers and heads.
void AccumulateOracleLayer(const PromptQk& qk, int first_query, int context_len,
                           std::vector<float>* running_max);

// Finishes the oracle: the mean over query rows of running_max, average-pooled with pool_kernel
// (13 in the paper): one importance value per prompt token.
std::vector<float> FinishOracle(absl::Span<const float> running_max, int num_queries,
                                int context_len, int pool_kernel);

}  // namespace claa

#endif  // CLAA_ENGINE_PRUNING_ATTENTION_SCORES_H_
