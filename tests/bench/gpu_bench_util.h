#ifndef CLAA_TESTS_BENCH_GPU_BENCH_UTIL_H_
#define CLAA_TESTS_BENCH_GPU_BENCH_UTIL_H_

// What the GPU benchmarks share: fail-fast status checks, the median, the Llama-3.1 8B and 70B
// shapes, writing the results.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/gpu/cuda_util.h"
#include "engine/model/config.h"
#include "nlohmann/json.hpp"

namespace claa::gpu {

#define BENCH_CHECK(expr)                                                   \
  do {                                                                      \
    if (absl::Status s_ = (expr); !s_.ok()) {                               \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,               \
                   std::string(s_.message()).c_str());                      \
      std::exit(1);                                                         \
    }                                                                       \
  } while (0)
#define BENCH_CUDA(expr) BENCH_CHECK(CudaCheck((expr), #expr))

// Writes DIR/STEM.json and DIR/STEM.md and prints the Markdown table.
inline void WriteResults(const std::string& dir, const std::string& stem,
                         const nlohmann::json& json, const std::string& md) {
  std::ofstream(dir + "/" + stem + ".json") << json.dump(2) << "\n";
  std::ofstream(dir + "/" + stem + ".md") << md;
  std::printf("\n%s", md.c_str());
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2]
                                       : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

inline ModelConfig Llama31_8B(int layers) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = layers;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

// Llama-3.1-70B's shape (issue 9): 80 layers, hidden 8192, 64 heads, 8 KV heads, FFN 28672.
inline ModelConfig Llama31_70B(int layers) {
  ModelConfig c = Llama31_8B(layers);
  c.hidden_size = 8192;
  c.intermediate_size = 28672;
  c.num_heads = 64;
  return c;
}

}  // namespace claa::gpu

#endif  // CLAA_TESTS_BENCH_GPU_BENCH_UTIL_H_
