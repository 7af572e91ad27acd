#ifndef CLAA_ENGINE_RUNTIME_CPU_OPS_H_
#define CLAA_ENGINE_RUNTIME_CPU_OPS_H_

// fp32 CPU building blocks of the Llama forward pass. Matrices are row-major; weights use the
// Hugging Face [out_features, in_features] layout.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/model/config.h"

// Compiles a hot, non-BLAS kernel twice -- baseline x86-64 and x86-64-v3 (AVX2 + FMA) -- and
// picks one at load time, so binaries stay portable yet use the wide units where present.
// Off under ThreadSanitizer: the instrumented ifunc resolver runs before the TSan runtime is up
// and crashes at start-up.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_THREAD__)
#define CLAA_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLAA_MULTIVERSION
#endif

namespace claa {

// Y[n, out] = X[n, in] * W[out, in]^T (+ Y when accumulate). Leading dimensions are the row
// lengths (in / out) unless given, so callers can read or write column slices of wider matrices.
// Products of at most 64K multiply-adds run in a plain vectorised loop (BLAS call and thread
// wake-up would dominate), single rows use sgemv (sgemm would pack all of W first), the rest
// cblas_sgemm.
void Gemm(const float* x, int n, int in, const float* w, int out, float* y,
          bool accumulate = false);
void GemmStrided(const float* x, int ldx, int n, int in, const float* w, int ldw, int out,
                 float* y, int ldy, float alpha = 1.0f, bool accumulate = false);
// Y[n, out] = X[n, in] * W[in, out] (W not transposed), with leading dimensions.
void GemmNN(const float* x, int ldx, int n, int in, const float* w, int ldw, int out, float* y,
            int ldy);

// Sum of a[i] * b[i] in fp32. Inline because attention calls it per cached token with short
// vectors (head_dim). Eight independent partial sums let the compiler vectorise without the
// reassociation it may not do on a single serial sum (no -ffast-math).
inline float Dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// y[i] += alpha * x[i].
inline void Axpy(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Hugging Face LlamaRMSNorm over each of n rows: out = x * rsqrt(mean(x^2) + eps) * weight, in
// fp32 (the sum of squares is accumulated in double so long rows do not lose precision).
// out may alias x.
void RmsNorm(const float* x, int n, int hidden, const float* weight, float eps, float* out);

// y[i] += bias[i % cols] for a [rows, cols] matrix.
void AddBias(float* y, int rows, int cols, const float* bias);

// out[i] = silu(gate[i]) * up[i] (Llama MLP activation). out may alias gate or up.
void SwiGlu(const float* gate, const float* up, size_t count, float* out);

// x[i] = exp(x[i]) for count values, with a polynomial that the compiler vectorises (relative
// error < 3e-7 against std::exp on [-87, 88]). Inputs are clamped to [-87.3, 88.3]: very negative
// ones give ~1e-38 rather than 0, large ones a finite ~2e38 rather than inf.
void ExpInPlace(float* x, size_t count);

// Rotary embedding inverse frequencies (head_dim / 2 values) exactly as Hugging Face computes
// them: inv_freq[i] = 1 / theta^(2i / head_dim), then rope scaling: linear divides by factor;
// llama3 follows _compute_llama3_parameters (low-frequency bands divided by factor, high ones
// kept, the band between interpolated smoothly).
std::vector<float> ComputeRopeInvFreq(const ModelConfig& config);

// Rotary position embedding in the Hugging Face "rotate half" convention: for each head vector
// x of head_dim values and half = head_dim / 2,
//   out[i]        = x[i] * cos(p * f[i]) - x[i + half] * sin(p * f[i])
//   out[i + half] = x[i + half] * cos(p * f[i]) + x[i] * sin(p * f[i])      (i < half).
// cos/sin tables are filled lazily up to the largest position seen. Not thread-safe: each rank
// owns its own instance.
class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const ModelConfig& config);

  // Rotates num_heads consecutive head vectors (head h at column h * head_dim) of each of
  // num_tokens rows (row t starts at x + t * row_stride) by position positions[t] >= 0.
  void Apply(float* x, int num_tokens, int num_heads, int row_stride, const int32_t* positions);

  // Grows the cos/sin tables to cover positions [0, max_position].
  void EnsurePositions(int max_position);

  int head_dim() const { return head_dim_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  int head_dim_;
  std::vector<float> inv_freq_;
  // [position][head_dim / 2].
  std::vector<float> cos_, sin_;
  int num_positions_ = 0;
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_CPU_OPS_H_
