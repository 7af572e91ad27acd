#include "engine/attncache/checksum.h"

#include <cstring>
#include <vector>

namespace claa::attncache {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  return Rotl(acc, 31) * kPrime1;
}
inline uint64_t Mix(uint64_t h) {
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime1;
  return h ^ (h >> 32);
}

}  // namespace

uint64_t Checksum64(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t lanes[4] = {seed + kPrime1 + kPrime2, seed + kPrime2, seed, seed - kPrime1};
  size_t i = 0;
  for (; i + 32 <= bytes; i += 32) {
    for (int l = 0; l < 4; ++l) {
      uint64_t word;
      std::memcpy(&word, p + i + 8 * l, 8);
      lanes[l] = Round(lanes[l], word);
    }
  }
  uint64_t h = Rotl(lanes[0], 1) + Rotl(lanes[1], 7) + Rotl(lanes[2], 12) + Rotl(lanes[3], 18);
  h += bytes;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    h = Round(h, word);
  }
  for (; i < bytes; ++i) h = Round(h, p[i]);
  return Mix(h);
}

uint64_t ModelFingerprint(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  const int64_t shape[] = {
      c.vocab_size,   c.hidden_size, c.num_layers,        c.num_heads,
      c.num_kv_heads, c.head_dim,    c.intermediate_size, c.max_position_embeddings};
  uint64_t h = Checksum64(shape, sizeof(shape), 0x434c4141);
  h = Checksum64(&c.rope_theta, sizeof(c.rope_theta), h);
  auto sample = [&h](const std::vector<float>& t) {
    // ~256 values per tensor, including the first and the last.
    const size_t n = t.size();
    const size_t stride = n / 256 + 1;
    std::vector<float> picked;
    for (size_t i = 0; i < n; i += stride) picked.push_back(t[i]);
    if (n > 0) picked.push_back(t[n - 1]);
    h = Checksum64(picked.data(), picked.size() * sizeof(float), h + n);
  };
  // Replicated tensors: sampled over their whole length.
  sample(w.embed_tokens);
  sample(w.final_norm);
  sample(w.lm_head);
  // Sharded tensors: only values every TP split gives rank 0 in the same place, so a store made
  // with --tp=1 stays valid with --tp=2: row 0 of a column-parallel weight ([out, hidden], rows
  // split) and column 0 of a row-parallel one ([hidden, local_in], columns split).
  const int hidden = c.hidden_size;
  auto row0 = [&](const std::vector<float>& t) {
    if (t.size() >= size_t(hidden)) h = Checksum64(t.data(), hidden * sizeof(float), h);
  };
  auto col0 = [&](const std::vector<float>& t) {
    if (t.empty() || hidden == 0) return;
    const size_t cols = t.size() / hidden;
    std::vector<float> picked;
    for (int r = 0; r < hidden; r += 1 + hidden / 64) picked.push_back(t[size_t(r) * cols]);
    h = Checksum64(picked.data(), picked.size() * sizeof(float), h);
  };
  for (const LayerWeights& l : w.layers) {
    sample(l.input_norm);
    sample(l.post_attention_norm);
    for (const std::vector<float>* t :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.gate_proj, &l.up_proj}) {
      row0(*t);
    }
    col0(l.o_proj);
    col0(l.down_proj);
  }
  return h;
}

}  // namespace claa::attncache
