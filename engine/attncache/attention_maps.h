#ifndef CLAA_ENGINE_ATTNCACHE_ATTENTION_MAPS_H_
#define CLAA_ENGINE_ATTNCACHE_ATTENTION_MAPS_H_

// The softmax attention probabilities of one input: for every layer and query head, the causal
// [length x length] matrix A[t][s] (s <= t), in fp16.
//
// Layout: [layer][head][packed lower triangle], row t holding its t + 1 values s = 0..t. Storing
// only the causal triangle halves the bytes of a square map, and it makes every prefix of the
// rows a complete map of a shorter input: row t of a causal map only involves positions <= t,
// so the first n rows of an entry are exactly the maps an n-token prefix would have.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace claa::attncache {

struct MapsShape {
  int layers = 0;
  int heads = 0;   // all query heads of the model (each TP rank reads its slice)
  int length = 0;  // tokens

  static size_t Triangle(int n) { return size_t(n) * size_t(n + 1) / 2; }
  size_t values_per_head() const { return Triangle(length); }
  size_t values() const { return size_t(layers) * heads * values_per_head(); }
  size_t bytes() const { return values() * sizeof(uint16_t); }
  // First value of (layer, head).
  size_t offset(int layer, int head) const {
    return (size_t(layer) * heads + size_t(head)) * values_per_head();
  }
  bool operator==(const MapsShape&) const = default;
};

// Read-only maps, e.g. inside a memory-mapped store file.
struct MapsView {
  const uint16_t* data = nullptr;
  MapsShape shape;
};

// Checks that maps of `shape` can stand in for the attention of an input of num_tokens tokens on
// a model with num_layers layers and num_heads query heads: same layers and heads, and at least
// num_tokens rows (a prefix of a longer entry is a valid causal map; a shorter one never is).
absl::Status CheckMapsFit(const MapsShape& shape, int num_tokens, int num_layers, int num_heads);

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_ATTENTION_MAPS_H_
