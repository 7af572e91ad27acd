#include "engine/pruning/attention_scores.h"

#include <algorithm>
#include <cmath>

#include "engine/runtime/cpu_ops.h"

namespace claa {
namespace {

// Softmax of row[0, n) in place, fp32 with max subtraction.
void Softmax(float* row, int n) {
  float m = row[0];
  for (int j = 1; j < n; ++j) m = std::max(m, row[j]);
  for (int j = 0; j < n; ++j) row[j] -= m;
  ExpInPlace(row, n);
  float sum = 0.0f;
  for (int j = 0; j < n; ++j) sum += row[j];
  const float inv = 1.0f / sum;
  for (int j = 0; j < n; ++j) row[j] *= inv;
}

// Pools each of `rows` rows of length n in place.
void PoolRows(std::vector<float>& m, int rows, int n, int kernel) {
  if (kernel <= 1 || n == 0) return;
  std::vector<float> tmp(n);
  for (int r = 0; r < rows; ++r) {
    float* row = &m[size_t(r) * n];
    AveragePool1d(row, n, kernel, tmp.data());
    std::copy(tmp.begin(), tmp.end(), row);
  }
}

}  // namespace

void AveragePool1d(const float* in, int n, int kernel, float* out) {
  const int r = kernel / 2;
  // Prefix sums in double: the window sum stays exact enough for long rows.
  std::vector<double> prefix(size_t(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + in[i];
  for (int i = 0; i < n; ++i) {
    const int lo = std::max(0, i - r), hi = std::min(n, i + r + 1);
    out[i] = float((prefix[hi] - prefix[lo]) / kernel);
  }
}

std::vector<float> WindowScores(const PromptQk& qk, int window, int pool_kernel) {
  const int p = qk.prompt_len;
  const int prefix = p - window;
  if (prefix <= 0) return {};
  const int d = qk.head_dim;
  const int group = qk.num_heads / qk.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(d));
  std::vector<float> out(size_t(qk.num_kv_heads) * prefix, 0.0f);
  std::vector<float> logits(size_t(window) * p);
  for (int h = 0; h < qk.num_heads; ++h) {
    const int g = h / group;
    // logits[window, p] = scale * Q_h[prefix : p] K_g^T; row i may see keys [0, prefix + i].
    GemmStrided(qk.q + size_t(prefix) * qk.q_stride + size_t(h) * d, qk.q_stride, window, d,
                qk.k + size_t(g) * d, qk.k_stride, p, logits.data(), p, scale);
    float* acc = &out[size_t(g) * prefix];
    for (int i = 0; i < window; ++i) {
      float* row = &logits[size_t(i) * p];
      Softmax(row, prefix + i + 1);
      for (int j = 0; j < prefix; ++j) acc[j] += row[j];
    }
  }
  PoolRows(out, qk.num_kv_heads, prefix, pool_kernel);
  return out;
}

std::vector<float> LastQueryScores(const PromptQk& qk, int window, int pool_kernel) {
  const int p = qk.prompt_len;
  const int prefix = p - window;
  if (prefix <= 0) return {};
  const int d = qk.head_dim;
  const int group = qk.num_heads / qk.num_kv_heads;
  std::vector<float> out(size_t(qk.num_kv_heads) * prefix, 0.0f);
  const float* q_last = qk.q + size_t(p - 1) * qk.q_stride;
  for (int h = 0; h < qk.num_heads; ++h) {
    const int g = h / group;
    float* acc = &out[size_t(g) * prefix];
    for (int j = 0; j < prefix; ++j) {
      acc[j] += Dot(q_last + size_t(h) * d, qk.k + size_t(j) * qk.k_stride + size_t(g) * d, d);
    }
  }
  PoolRows(out, qk.num_kv_heads, prefix, pool_kernel);
  return out;
}

void AccumulateOracleLayer(const PromptQk& qk, int first_query, int context_len,
                           std::vector<float>* running_max) {
  const int nq = qk.prompt_len - first_query;
  if (nq <= 0 || context_len <= 0) return;
  const int d = qk.head_dim;
  const int group = qk.num_heads / qk.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(d));
  running_max->resize(size_t(nq) * context_len, 0.0f);
  std::vector<float> logits(size_t(nq) * context_len);
  for (int h = 0; h < qk.num_heads; ++h) {
    const int g = h / group;
    GemmStrided(qk.q + size_t(first_query) * qk.q_stride + size_t(h) * d, qk.q_stride, nq, d,
                qk.k + size_t(g) * d, qk.k_stride, context_len, logits.data(), context_len,
                scale);
    for (int i = 0; i < nq; ++i) {
      float* row = &logits[size_t(i) * context_len];
      Softmax(row, context_len);
      float* dst = &(*running_max)[size_t(i) * context_len];
      for (int j = 0; j < context_len; ++j) dst[j] = std::max(dst[j], row[j]);
    }
  }
}

std::vector<float> FinishOracle(absl::Span<const float> running_max, int num_queries,
                                int context_len, int pool_kernel) {
  std::vector<float> mean(context_len, 0.0f);
  if (num_queries <= 0) return mean;
  for (int i = 0; i < num_queries; ++i) {
    for (int j = 0; j < context_len; ++j) mean[j] += running_max[size_t(i) * context_len + j];
  }
  for (float& v : mean) v /= float(num_queries);
  std::vector<float> out(context_len);
  AveragePool1d(mean.data(), context_len, pool_kernel, out.data());
  return out;
}

}  // namespace claa
