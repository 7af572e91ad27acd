#include "engine/runtime/cpu_ops.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>

namespace claa {

namespace {
// Multiply-accumulates below which GemmStrided skips BLAS.
constexpr int64_t kSmallGemmMacs = 1 << 16;

// Eight floats as one GCC/Clang vector: AVX in the x86-64-v3 clone, two SSE halves otherwise.
// The helpers below are always inlined, so GCC's note that passing V8 by value has a different ABI
// with and without AVX does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float V8 __attribute__((vector_size(32)));

__attribute__((always_inline)) inline V8 LoadV8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline float SumV8(V8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

CLAA_MULTIVERSION
void SmallGemm(const float* x, int ldx, int n, int in, const float* w, int ldw, int out, float* y,
               int ldy, float alpha, bool accumulate) {
  // Four output rows at a time: four independent accumulator chains hide the FMA latency that a
  // single dot product would stall on, and each x vector is loaded once for four rows.
  for (int r = 0; r < n; ++r) {
    const float* xr = x + size_t(r) * ldx;
    float* yr = y + size_t(r) * ldy;
    int o = 0;
    for (; o + 4 <= out; o += 4) {
      const float* w0 = w + size_t(o) * ldw;
      const float* w1 = w0 + ldw;
      const float* w2 = w1 + ldw;
      const float* w3 = w2 + ldw;
      V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      int i = 0;
      for (; i + 8 <= in; i += 8) {
        const V8 xv = LoadV8(xr + i);
        a0 += xv * LoadV8(w0 + i);
        a1 += xv * LoadV8(w1 + i);
        a2 += xv * LoadV8(w2 + i);
        a3 += xv * LoadV8(w3 + i);
      }
      float s[4] = {SumV8(a0), SumV8(a1), SumV8(a2), SumV8(a3)};
      for (; i < in; ++i) {
        s[0] += xr[i] * w0[i];
        s[1] += xr[i] * w1[i];
        s[2] += xr[i] * w2[i];
        s[3] += xr[i] * w3[i];
      }
      for (int k = 0; k < 4; ++k) yr[o + k] = accumulate ? yr[o + k] + alpha * s[k] : alpha * s[k];
    }
    for (; o < out; ++o) {
      const float v = alpha * Dot(xr, w + size_t(o) * ldw, in);
      yr[o] = accumulate ? yr[o] + v : v;
    }
  }
}
#pragma GCC diagnostic pop
}  // namespace

void Gemm(const float* x, int n, int in, const float* w, int out, float* y, bool accumulate) {
  GemmStrided(x, in, n, in, w, in, out, y, out, 1.0f, accumulate);
}

void GemmStrided(const float* x, int ldx, int n, int in, const float* w, int ldw, int out,
                 float* y, int ldy, float alpha, bool accumulate) {
  if (n <= 0 || out <= 0) return;
  if (int64_t(n) * in * out <= kSmallGemmMacs && in > 0) {
    // Tiny products (small models, decode of narrow layers): BLAS call and threading overhead
    // would dominate.
    SmallGemm(x, ldx, n, in, w, ldw, out, y, ldy, alpha, accumulate);
    return;
  }
  if (n == 1 && in > 0) {
    // One row (decode): sgemv streams W once; sgemm would first pack all of W into a buffer.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, alpha, w, ldw, x, 1,
                accumulate ? 1.0f : 0.0f, y, 1);
    return;
  }
  if (in <= 0) {
    // BLAS would leave Y untouched for k == 0 only when beta == 1; make the empty sum explicit.
    if (!accumulate) {
      for (int r = 0; r < n; ++r) std::fill(y + size_t(r) * ldy, y + size_t(r) * ldy + out, 0.0f);
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, alpha, x, ldx, w, ldw,
              accumulate ? 1.0f : 0.0f, y, ldy);
}

void GemmNN(const float* x, int ldx, int n, int in, const float* w, int ldw, int out, float* y,
            int ldy) {
  if (n <= 0 || out <= 0) return;
  if (in <= 0) {
    for (int r = 0; r < n; ++r) std::fill(y + size_t(r) * ldy, y + size_t(r) * ldy + out, 0.0f);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out, in, 1.0f, x, ldx, w, ldw, 0.0f,
              y, ldy);
}

CLAA_MULTIVERSION
void RmsNorm(const float* x, int n, int hidden, const float* weight, float eps, float* out) {
  for (int r = 0; r < n; ++r) {
    const float* xr = x + size_t(r) * hidden;
    float* yr = out + size_t(r) * hidden;
    double sum_sq = 0.0;
    for (int i = 0; i < hidden; ++i) sum_sq += double(xr[i]) * xr[i];
    const float variance = float(sum_sq / hidden);
    const float inv = 1.0f / std::sqrt(variance + eps);
    for (int i = 0; i < hidden; ++i) yr[i] = weight[i] * (xr[i] * inv);
  }
}

void AddBias(float* y, int rows, int cols, const float* bias) {
  for (int r = 0; r < rows; ++r) {
    float* yr = y + size_t(r) * cols;
    for (int c = 0; c < cols; ++c) yr[c] += bias[c];
  }
}

CLAA_MULTIVERSION
void ExpInPlace(float* x, size_t count) {
  // Cephes expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, then scale by
  // 2^n through the exponent bits. The clamp is a separate loop: fused with the polynomial, GCC
  // constant-folds the clamped cases into branches and gives up vectorising.
  for (size_t i = 0; i < count; ++i) {
    float v = x[i];
    v = v < -87.3f ? -87.3f : v;
    v = v > 88.3f ? 88.3f : v;
    x[i] = v;
  }
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kC1 = 0.693359375f;
  constexpr float kC2 = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting rounds to nearest.
  for (size_t i = 0; i < count; ++i) {
    float v = x[i];
    const float n = (v * kLog2e + kRound) - kRound;
    v = v - n * kC1 - n * kC2;
    const float z = v * v;
    float p = 1.9875691500e-4f;
    p = p * v + 1.3981999507e-3f;
    p = p * v + 8.3334519073e-3f;
    p = p * v + 4.1665795894e-2f;
    p = p * v + 1.6666665459e-1f;
    p = p * v + 5.0000001201e-1f;
    p = p * z + v + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    x[i] = p * std::bit_cast<float>(bits);
  }
}

CLAA_MULTIVERSION
void SwiGlu(const float* gate, const float* up, size_t count, float* out) {
  constexpr size_t kChunk = 256;
  float e[kChunk];
  for (size_t base = 0; base < count; base += kChunk) {
    const size_t m = std::min(kChunk, count - base);
    for (size_t j = 0; j < m; ++j) e[j] = -gate[base + j];
    ExpInPlace(e, m);
    for (size_t j = 0; j < m; ++j) {
      const float g = gate[base + j];
      out[base + j] = g / (1.0f + e[j]) * up[base + j];
    }
  }
}

std::vector<float> ComputeRopeInvFreq(const ModelConfig& config) {
  const int dim = config.head_dim;
  const int half = dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    inv_freq[i] = float(1.0 / std::pow(config.rope_theta, double(2 * i) / dim));
  }
  const RopeScaling& rs = config.rope_scaling;
  switch (rs.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (float& f : inv_freq) f = float(f / rs.factor);
      break;
    case RopeScalingType::kLlama3: {
      const double old_len = double(rs.original_max_position_embeddings);
      const double low_freq_wavelen = old_len / rs.low_freq_factor;
      const double high_freq_wavelen = old_len / rs.high_freq_factor;
      for (float& f : inv_freq) {
        const double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen < high_freq_wavelen) continue;  // High frequency: unchanged.
        if (wavelen > low_freq_wavelen) {           // Low frequency: fully scaled.
          f = float(f / rs.factor);
          continue;
        }
        const double smooth =
            (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = float((1.0 - smooth) * f / rs.factor + smooth * f);
      }
      break;
    }
  }
  return inv_freq;
}

RotaryEmbedding::RotaryEmbedding(const ModelConfig& config)
    : head_dim_(config.head_dim), inv_freq_(ComputeRopeInvFreq(config)) {}

void RotaryEmbedding::EnsurePositions(int max_position) {
  if (max_position < num_positions_) return;
  // Grow geometrically so a long decode does not refill the table on every step.
  const int target = std::max(max_position + 1, std::min(2 * num_positions_, 1 << 20));
  const int half = head_dim_ / 2;
  cos_.resize(size_t(target) * half);
  sin_.resize(size_t(target) * half);
  for (int p = num_positions_; p < target; ++p) {
    for (int i = 0; i < half; ++i) {
      // The angle is rounded to fp32 as Hugging Face does (fp32 position * fp32 inv_freq); cos
      // and sin of that angle are then exact to fp32 rounding.
      const float angle = float(p) * inv_freq_[i];
      cos_[size_t(p) * half + i] = float(std::cos(double(angle)));
      sin_[size_t(p) * half + i] = float(std::sin(double(angle)));
    }
  }
  num_positions_ = target;
}

CLAA_MULTIVERSION
void RotaryEmbedding::Apply(float* x, int num_tokens, int num_heads, int row_stride,
                            const int32_t* positions) {
  if (num_tokens <= 0) return;
  const int max_pos = *std::max_element(positions, positions + num_tokens);
  EnsurePositions(max_pos);
  const int half = head_dim_ / 2;
  for (int t = 0; t < num_tokens; ++t) {
    const float* c = cos_.data() + size_t(positions[t]) * half;
    const float* s = sin_.data() + size_t(positions[t]) * half;
    float* row = x + size_t(t) * row_stride;
    for (int h = 0; h < num_heads; ++h) {
      float* a = row + size_t(h) * head_dim_;
      float* b = a + half;
      for (int i = 0; i < half; ++i) {
        const float x1 = a[i];
        const float x2 = b[i];
        a[i] = x1 * c[i] - x2 * s[i];
        b[i] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

}  // namespace claa
