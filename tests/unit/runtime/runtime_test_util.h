#ifndef CLAA_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_
#define CLAA_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_

// Helpers shared by the runtime tests: random inputs (never zeros), error norms, small configs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/model/config.h"

namespace claa::testing {

// Uniform in [-scale, -scale/10] U [scale/10, scale]: random sign, magnitude bounded away from 0
// so that a kernel that drops a term cannot hide behind zeros.
inline std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.1f * scale, scale);
  std::bernoulli_distribution sign(0.5);
  std::vector<float> v(n);
  for (float& x : v) x = sign(rng) ? mag(rng) : -mag(rng);
  return v;
}

// ||a - b||_2 / ||b||_2.
inline double RelL2(const float* a, const float* b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}
inline double RelL2(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() != b.size() ? 1e30 : RelL2(a.data(), b.data(), a.size());
}

// max |a - b| / max |b|.
inline double MaxRelErr(const float* a, const double* b, size_t n) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return ref == 0.0 ? err : err / ref;
}

// A small Llama-shaped config whose heads, KV heads and FFN split 1, 2 or 4 ways; head_dim is
// deliberately not hidden / heads (as Qwen and Gemma-style configs allow).
inline ModelConfig SmallConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = false;
  return c;
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_
