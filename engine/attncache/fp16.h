#ifndef CLAA_ENGINE_ATTNCACHE_FP16_H_
#define CLAA_ENGINE_ATTNCACHE_FP16_H_

// IEEE fp16 <-> fp32 conversion of arrays. Cached attention probabilities are stored in fp16: they
// lie in [0, 1], where fp16 keeps 11 significant bits (bf16 only 8) and subnormals down to 6e-8,
// and every hit converts a whole map back, so the bulk conversion is vectorised (F16C where the
// CPU has it, chosen at load time; a portable path otherwise).
#include <cstddef>
#include <cstdint>

namespace claa::attncache {

// Round to nearest even; values above fp16's range become inf (never the case for probabilities).
void FloatToHalf(const float* in, size_t count, uint16_t* out);
void HalfToFloat(const uint16_t* in, size_t count, float* out);

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_FP16_H_
