#ifndef CLAA_ENGINE_ATTNCACHE_CHECKSUM_H_
#define CLAA_ENGINE_ATTNCACHE_CHECKSUM_H_

// 64-bit checksums for the store's files and a fingerprint of a model's weights.
#include <cstddef>
#include <cstdint>

#include "engine/model/weights.h"

namespace claa::attncache {

// A fast non-cryptographic 64-bit hash (8 bytes per multiply-rotate step, four independent lanes
// so it runs at memory speed). It detects torn writes and bit rot, not tampering.
uint64_t Checksum64(const void* data, size_t bytes, uint64_t seed = 0);

// Identifies the weights whose attention maps a store holds: the config's shape fields plus a
// sample of every tensor that is the same whatever the TP size (hashing all of an 8B model would
// take seconds at start-up; a different checkpoint changes the sampled values).
uint64_t ModelFingerprint(const ModelWeights& rank0_weights);

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_CHECKSUM_H_
