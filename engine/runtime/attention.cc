#include "engine/runtime/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/runtime/cpu_ops.h"

namespace claa {
namespace {

// Queries per QK^T / PV GEMM: bounds the score buffer at kQueryChunk * slots floats.
constexpr int kQueryChunk = 256;
// Up to this many new tokens (decode, short chunks) attention reads the paged cache in place with
// dot products; gathering K/V and packing them for GEMMs only pays off for longer runs.
constexpr int kDirectMaxTokens = 8;

// Softmax of row[0, valid) in place; row[valid, width) (future, masked) is set to 0.
CLAA_MULTIVERSION
void MaskedSoftmax(float* row, int valid, int width) {
  float max_v = row[0];
  for (int j = 1; j < valid; ++j) max_v = std::max(max_v, row[j]);
  for (int j = 0; j < valid; ++j) row[j] -= max_v;
  ExpInPlace(row, valid);
  float sum = 0.0f;
  for (int j = 0; j < valid; ++j) sum += row[j];
  const float inv = 1.0f / sum;
  for (int j = 0; j < valid; ++j) row[j] *= inv;
  if (width > valid) std::fill(row + valid, row + width, 0.0f);
}

// Decode and short chunks: dot products straight from the paged cache, no gather.
CLAA_MULTIVERSION
void DirectAttention(const PagedKvCache& cache, int layer, absl::Span<const int> block_table,
                     int past_len, const float* q, int q_stride, int num_tokens, int num_heads,
                     float* out, int out_stride, AttentionScratch* scratch) {
  const int d = cache.head_dim();
  const int kv_heads = cache.num_kv_heads();
  const int group = num_heads / kv_heads;
  const int block_size = cache.block_size();
  const int total = past_len + num_tokens;
  const float scale = 1.0f / std::sqrt(float(d));
  scratch->scores.resize(total);
  float* p = scratch->scores.data();
  const size_t stride = size_t(kv_heads) * d;
  for (int t = 0; t < num_tokens; ++t) {
    const int visible = past_len + t + 1;
    for (int h = 0; h < num_heads; ++h) {
      const int g = h / group;
      const float* qh = q + size_t(t) * q_stride + size_t(h) * d;
      for (int s = 0, b = 0; s < visible; s += block_size, ++b) {
        const float* kb = cache.k_block(layer, block_table[b]) + size_t(g) * d;
        const int n = std::min(block_size, visible - s);
        for (int i = 0; i < n; ++i) p[s + i] = scale * Dot(qh, kb + i * stride, d);
      }
      MaskedSoftmax(p, visible, visible);
      float* oh = out + size_t(t) * out_stride + size_t(h) * d;
      std::fill(oh, oh + d, 0.0f);
      for (int s = 0, b = 0; s < visible; s += block_size, ++b) {
        const float* vb = cache.v_block(layer, block_table[b]) + size_t(g) * d;
        const int n = std::min(block_size, visible - s);
        for (int i = 0; i < n; ++i) Axpy(p[s + i], vb + i * stride, oh, d);
      }
    }
  }
}

}  // namespace

void PagedCausalAttention(const PagedKvCache& cache, int layer, absl::Span<const int> block_table,
                          int past_len, const float* q, int q_stride, int num_tokens,
                          int num_heads, float* out, int out_stride, AttentionScratch* scratch) {
  if (num_tokens <= 0) return;
  const int d = cache.head_dim();
  const int kv_heads = cache.num_kv_heads();
  const int group = num_heads / kv_heads;
  const int block_size = cache.block_size();
  const int total = past_len + num_tokens;  // Slots visible to the last query.
  const float scale = 1.0f / std::sqrt(float(d));
  const int chunk = std::min(num_tokens, kQueryChunk);

  if (num_tokens <= kDirectMaxTokens) {
    DirectAttention(cache, layer, block_table, past_len, q, q_stride, num_tokens, num_heads, out,
                    out_stride, scratch);
    return;
  }

  scratch->k.resize(size_t(total) * d);
  scratch->v.resize(size_t(total) * d);
  scratch->scores.resize(size_t(chunk) * total);

  for (int g = 0; g < kv_heads; ++g) {
    // Gather this KV head's keys and values into [total, d] so QK^T and PV are plain GEMMs.
    for (int s = 0, b = 0; s < total; s += block_size, ++b) {
      const int n = std::min(block_size, total - s);
      const float* kb = cache.k_block(layer, block_table[b]) + size_t(g) * d;
      const float* vb = cache.v_block(layer, block_table[b]) + size_t(g) * d;
      const size_t stride = size_t(kv_heads) * d;
      for (int i = 0; i < n; ++i) {
        std::memcpy(&scratch->k[size_t(s + i) * d], kb + i * stride, d * sizeof(float));
        std::memcpy(&scratch->v[size_t(s + i) * d], vb + i * stride, d * sizeof(float));
      }
    }
    for (int h = g * group; h < (g + 1) * group; ++h) {
      for (int t0 = 0; t0 < num_tokens; t0 += chunk) {
        const int rows = std::min(chunk, num_tokens - t0);
        const int width = past_len + t0 + rows;  // Slots seen by the chunk's last query.
        float* scores = scratch->scores.data();
        // scores[rows, width] = scale * Q_h[t0 : t0 + rows] * K[0 : width]^T
        GemmStrided(q + size_t(t0) * q_stride + size_t(h) * d, q_stride, rows, d,
                    scratch->k.data(), d, width, scores, width, scale);
        for (int i = 0; i < rows; ++i) {
          MaskedSoftmax(scores + size_t(i) * width, past_len + t0 + i + 1, width);
        }
        // out[t0 : t0 + rows, head h] = P[rows, width] * V[0 : width]; V is [width, d], which
        // is W^T in GemmStrided's terms, so use plain sgemm through a transposed view.
        float* o = out + size_t(t0) * out_stride + size_t(h) * d;
        GemmNN(scores, width, rows, width, scratch->v.data(), d, d, o, out_stride);
      }
    }
  }
}

}  // namespace claa
