#include "engine/attncache/attention_reuse.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/attncache/fp16.h"
#include "engine/runtime/cpu_ops.h"

namespace claa::attncache {
namespace {

// Query rows per block: bounds the fp32 scratch at kRowChunk * length floats per thread.
constexpr int kRowChunk = 128;

// Ranks run concurrently on their own threads; each keeps its own scratch.
std::vector<float>& ThreadScratch() {
  thread_local std::vector<float> scratch;
  return scratch;
}

}  // namespace

void ApplyCachedMaps(const MapsView& maps, int layer, int first_head, int local_heads,
                     int local_kv_heads, int head_dim, const float* v, int v_stride,
                     int num_tokens, float* out, int out_stride) {
  const int group = local_heads / local_kv_heads;
  const int chunk = std::min(num_tokens, kRowChunk);
  std::vector<float>& dense = ThreadScratch();
  dense.resize(size_t(chunk) * num_tokens);
  for (int h = 0; h < local_heads; ++h) {
    const uint16_t* a = maps.data + maps.shape.offset(layer, first_head + h);
    const float* vh = v + size_t(h / group) * head_dim;
    for (int t0 = 0; t0 < num_tokens; t0 += chunk) {
      const int rows = std::min(chunk, num_tokens - t0);
      const int width = t0 + rows;  // keys seen by the block's last row
      // Unpack rows t0.. of the triangle into a dense [rows, width] block (zeros above the
      // diagonal) so that the product is one GEMM.
      for (int i = 0; i < rows; ++i) {
        const int t = t0 + i;
        float* row = dense.data() + size_t(i) * width;
        HalfToFloat(a + MapsShape::Triangle(t), size_t(t) + 1, row);
        std::fill(row + t + 1, row + width, 0.0f);
      }
      GemmNN(dense.data(), width, rows, width, vh, v_stride, head_dim,
             out + size_t(t0) * out_stride + size_t(h) * head_dim, out_stride);
    }
  }
}

CLAA_MULTIVERSION
void ComputeMaps(const PromptQk& qk, int layer, int first_head, const MapsShape& shape,
                 uint16_t* maps) {
  const int n = qk.prompt_len;
  const int d = qk.head_dim;
  const int group = qk.num_heads / qk.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(d));
  const int chunk = std::min(n, kRowChunk);
  std::vector<float>& scores = ThreadScratch();
  scores.resize(size_t(chunk) * n);
  for (int h = 0; h < qk.num_heads; ++h) {
    uint16_t* a = maps + shape.offset(layer, first_head + h);
    const float* kh = qk.k + size_t(h / group) * d;
    for (int t0 = 0; t0 < n; t0 += chunk) {
      const int rows = std::min(chunk, n - t0);
      const int width = t0 + rows;
      GemmStrided(qk.q + size_t(t0) * qk.q_stride + size_t(h) * d, qk.q_stride, rows, d, kh,
                  qk.k_stride, width, scores.data(), width, scale);
      for (int i = 0; i < rows; ++i) {
        const int valid = t0 + i + 1;
        float* row = scores.data() + size_t(i) * width;
        // Same softmax as the forward pass (max subtraction, fp32).
        float max_v = row[0];
        for (int j = 1; j < valid; ++j) max_v = std::max(max_v, row[j]);
        for (int j = 0; j < valid; ++j) row[j] -= max_v;
        ExpInPlace(row, valid);
        float sum = 0.0f;
        for (int j = 0; j < valid; ++j) sum += row[j];
        const float inv = 1.0f / sum;
        for (int j = 0; j < valid; ++j) row[j] *= inv;
        FloatToHalf(row, size_t(valid), a + MapsShape::Triangle(valid - 1));
      }
    }
  }
}

absl::Status CachedAttention::Validate(int num_tokens, int num_layers, int num_heads) const {
  if (maps_.data == nullptr) return absl::FailedPreconditionError("cached attention has no maps");
  return CheckMapsFit(maps_.shape, num_tokens, num_layers, num_heads);
}

absl::Status CachedAttention::ApplyCached(int layer, int first_head, int local_heads,
                                          int local_kv_heads, int head_dim, const float* v,
                                          int v_stride, int num_tokens, float* out,
                                          int out_stride) {
  // Validate ran before any rank started; this only guards against a caller that skipped it.
  if (num_tokens > maps_.shape.length || first_head + local_heads > maps_.shape.heads ||
      layer >= maps_.shape.layers) {
    return absl::InternalError("cached attention maps do not fit the forward pass");
  }
  ApplyCachedMaps(maps_, layer, first_head, local_heads, local_kv_heads, head_dim, v, v_stride,
                  num_tokens, out, out_stride);
  return absl::OkStatus();
}

AttentionCapture::AttentionCapture(int num_layers, int num_heads, int num_tokens)
    : shape_{num_layers, num_heads, num_tokens}, maps_(shape_.values()) {}

absl::Status AttentionCapture::Validate(int num_tokens, int num_layers, int num_heads) const {
  if (num_tokens != shape_.length || num_layers != shape_.layers || num_heads != shape_.heads) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "attention capture sized for %d layers x %d heads x %d tokens, the item is %d x %d x %d",
        shape_.layers, shape_.heads, shape_.length, num_layers, num_heads, num_tokens));
  }
  return absl::OkStatus();
}

absl::Status AttentionCapture::ApplyCached(int, int, int, int, int, const float*, int, int,
                                           float*, int) {
  return absl::InternalError("AttentionCapture does not replace attention");
}

absl::Status AttentionCapture::Capture(int layer, int first_head, const PromptQk& qk) {
  if (qk.prompt_len != shape_.length || first_head + qk.num_heads > shape_.heads) {
    return absl::InternalError("attention capture does not fit the forward pass");
  }
  ComputeMaps(qk, layer, first_head, shape_, maps_.data());
  return absl::OkStatus();
}

}  // namespace claa::attncache
