// Tensor-parallel shard validation and deterministic random weights.
//
// Every element of every full (unsharded) tensor is a pure function of (seed, tensor, element
// index): a counter-based splitmix64 hash feeds Box-Muller. A rank therefore generates exactly its
// own slice, element by element, and all tp sizes see bit-identical models without ever
// materialising the full tensors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/model/weights.h"

namespace claa {

absl::Status ValidateTpShard(const ModelConfig& config, TpShard shard) {
  if (shard.size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("tp size must be >= 1, got %d", shard.size));
  }
  if (shard.rank < 0 || shard.rank >= shard.size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tp rank %d out of range [0, %d)", shard.rank, shard.size));
  }
  if (config.num_heads % shard.size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "num_heads (%d) is not divisible by tp size %d", config.num_heads, shard.size));
  }
  if (config.num_kv_heads % shard.size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "num_kv_heads (%d) is not divisible by tp size %d", config.num_kv_heads, shard.size));
  }
  if (config.intermediate_size % shard.size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("intermediate_size (%d) is not divisible by tp size %d",
                        config.intermediate_size, shard.size));
  }
  return absl::OkStatus();
}

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Tensor kinds; combined with the layer index they name a tensor's random stream.
enum TensorKind : uint64_t {
  kEmbed = 1,
  kLmHead,
  kFinalNorm,
  kInputNorm,
  kPostNorm,
  kQ,
  kK,
  kV,
  kQBias,
  kKBias,
  kVBias,
  kO,
  kOBias,
  kGate,
  kUp,
  kDown,
};

uint64_t TensorKey(uint64_t seed, TensorKind kind, int layer) {
  return Mix64(Mix64(seed ^ 0x5DEECE66Dull) + kind * kGolden + Mix64(uint64_t(layer) + 7));
}

// Element i of the stream `key`: element pairs (2p, 2p+1) are the two outputs of one Marsaglia
// polar draw seeded by hashing p, so both are standard normal and independent. A rejected point
// (about 21% of draws) rehashes its own state, which keeps every pair a pure function of
// (key, p): random access, and no trigonometry.
void FillNormalRange(uint64_t key, uint64_t first, size_t count, float mean, float stddev,
                     float* out) {
  constexpr float kScale = 1.0f / 8388608.0f;  // 2^-23: 24-bit integers -> [0, 2).
  const uint64_t end = first + count;
  for (uint64_t pair = first >> 1; 2 * pair < end; ++pair) {
    uint64_t h = Mix64(key + pair * kGolden);
    float x, y, r2;
    while (true) {
      // Signed 32-bit conversions: unsigned 64-bit to float is slow on x86.
      x = float(int32_t(h >> 40)) * kScale - 1.0f;
      y = float(int32_t(h & 0xFFFFFF)) * kScale - 1.0f;
      r2 = x * x + y * y;
      if (r2 < 1.0f && r2 > 0.0f) break;
      h = Mix64(h + kGolden);
    }
    const float f = stddev * std::sqrt(-2.0f * std::log(r2) / r2);
    const uint64_t even = 2 * pair;
    if (even >= first) out[even - first] = mean + f * x;
    if (even + 1 < end) out[even + 1 - first] = mean + f * y;
  }
}

// Fills out[j] = element (first + j) of the stream, using a few threads for big ranges (a
// ~1B-parameter model is mostly a handful of large tensors).
void FillNormal(uint64_t key, uint64_t first, size_t count, float mean, float stddev,
                float* out) {
  constexpr size_t kMinPerThread = size_t{1} << 20;
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t threads = std::min(hw, std::max<size_t>(1, count / kMinPerThread));
  if (threads <= 1) {
    FillNormalRange(key, first, count, mean, stddev, out);
    return;
  }
  std::vector<std::thread> pool;
  const size_t chunk = (count + threads - 1) / threads;
  for (size_t t = 0; t < threads; ++t) {
    const size_t begin = t * chunk;
    if (begin >= count) break;
    const size_t n = std::min(chunk, count - begin);
    pool.emplace_back(FillNormalRange, key, first + begin, n, mean, stddev, out + begin);
  }
  for (auto& th : pool) th.join();
}

// Contiguous slice [first, first + count) of a full tensor.
std::vector<float> Slice1D(uint64_t key, uint64_t first, size_t count, float mean, float stddev) {
  std::vector<float> v(count);
  FillNormal(key, first, count, mean, stddev, v.data());
  return v;
}

// Columns [col0, col0 + local_cols) of every row of a full [rows, full_cols] matrix.
std::vector<float> SliceColumns(uint64_t key, size_t rows, size_t full_cols, size_t col0,
                                size_t local_cols, float stddev) {
  std::vector<float> v(rows * local_cols);
  if (local_cols == full_cols) {
    FillNormal(key, 0, rows * full_cols, 0.0f, stddev, v.data());
    return v;
  }
  // Rows are independent; split them over threads like FillNormal does for elements.
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t threads =
      std::min(hw, std::max<size_t>(1, rows * local_cols / (size_t{1} << 20)));
  auto work = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      FillNormalRange(key, r * full_cols + col0, local_cols, 0.0f, stddev,
                      v.data() + r * local_cols);
    }
  };
  if (threads <= 1) {
    work(0, rows);
    return v;
  }
  std::vector<std::thread> pool;
  const size_t chunk = (rows + threads - 1) / threads;
  for (size_t t = 0; t < threads && t * chunk < rows; ++t) {
    pool.emplace_back(work, t * chunk, std::min(rows, (t + 1) * chunk));
  }
  for (auto& th : pool) th.join();
  return v;
}

}  // namespace

ModelWeights MakeRandomWeights(const ModelConfig& config, uint64_t seed, TpShard shard,
                               float init_std) {
  // The signature has no Status: an unsplittable config is a caller bug, not a runtime condition.
  if (absl::Status s = ValidateTpShard(config, shard); !s.ok()) {
    std::fprintf(stderr, "MakeRandomWeights: %s\n", std::string(s.message()).c_str());
    std::abort();
  }
  // Norm weights near 1 (as trained models have), with enough spread that a test would notice a
  // missing or misapplied norm.
  constexpr float kNormNoise = 0.1f;

  const size_t hidden = config.hidden_size;
  const size_t head_dim = config.head_dim;
  const size_t tp = shard.size;
  const size_t rank = shard.rank;

  ModelWeights w;
  w.config = config;
  w.shard = shard;
  w.local_heads = config.num_heads / shard.size;
  w.local_kv_heads = config.num_kv_heads / shard.size;
  w.local_ffn = config.intermediate_size / shard.size;
  const size_t q_rows = size_t(w.local_heads) * head_dim;
  const size_t kv_rows = size_t(w.local_kv_heads) * head_dim;
  const size_t ffn = w.local_ffn;

  w.embed_tokens =
      Slice1D(TensorKey(seed, kEmbed, 0), 0, size_t(config.vocab_size) * hidden, 0.0f, init_std);
  if (!config.tie_word_embeddings) {
    w.lm_head = Slice1D(TensorKey(seed, kLmHead, 0), 0, size_t(config.vocab_size) * hidden, 0.0f,
                        init_std);
  }
  w.final_norm = Slice1D(TensorKey(seed, kFinalNorm, 0), 0, hidden, 1.0f, kNormNoise);

  w.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.input_norm = Slice1D(TensorKey(seed, kInputNorm, l), 0, hidden, 1.0f, kNormNoise);
    lw.post_attention_norm = Slice1D(TensorKey(seed, kPostNorm, l), 0, hidden, 1.0f, kNormNoise);
    // Column-parallel: this rank's rows are one contiguous range of the full row-major tensor.
    lw.q_proj = Slice1D(TensorKey(seed, kQ, l), rank * q_rows * hidden, q_rows * hidden, 0.0f,
                        init_std);
    lw.k_proj = Slice1D(TensorKey(seed, kK, l), rank * kv_rows * hidden, kv_rows * hidden, 0.0f,
                        init_std);
    lw.v_proj = Slice1D(TensorKey(seed, kV, l), rank * kv_rows * hidden, kv_rows * hidden, 0.0f,
                        init_std);
    if (config.qkv_bias) {
      lw.q_bias = Slice1D(TensorKey(seed, kQBias, l), rank * q_rows, q_rows, 0.0f, init_std);
      lw.k_bias = Slice1D(TensorKey(seed, kKBias, l), rank * kv_rows, kv_rows, 0.0f, init_std);
      lw.v_bias = Slice1D(TensorKey(seed, kVBias, l), rank * kv_rows, kv_rows, 0.0f, init_std);
    }
    // Row-parallel: this rank's columns of every row.
    lw.o_proj = SliceColumns(TensorKey(seed, kO, l), hidden, q_rows * tp, rank * q_rows, q_rows,
                             init_std);
    if (config.o_bias) {
      lw.o_bias = Slice1D(TensorKey(seed, kOBias, l), 0, hidden, 0.0f, init_std);
    }
    lw.gate_proj =
        Slice1D(TensorKey(seed, kGate, l), rank * ffn * hidden, ffn * hidden, 0.0f, init_std);
    lw.up_proj =
        Slice1D(TensorKey(seed, kUp, l), rank * ffn * hidden, ffn * hidden, 0.0f, init_std);
    lw.down_proj =
        SliceColumns(TensorKey(seed, kDown, l), hidden, ffn * tp, rank * ffn, ffn, init_std);
  }
  return w;
}

}  // namespace claa
