#include "engine/attncache/fp16.h"

#include <cstring>

#include "engine/runtime/cpu_ops.h"  // CLAA_MULTIVERSION

namespace claa::attncache {

// _Float16 is a real arithmetic type in GCC >= 12 on x86-64: the compiler emits vcvtps2ph /
// vcvtph2ps for the x86-64-v3 clone (which includes F16C) and a correct soft conversion otherwise.
CLAA_MULTIVERSION
void FloatToHalf(const float* in, size_t count, uint16_t* out) {
  for (size_t i = 0; i < count; ++i) {
    const _Float16 h = static_cast<_Float16>(in[i]);
    std::memcpy(&out[i], &h, sizeof(h));
  }
}

CLAA_MULTIVERSION
void HalfToFloat(const uint16_t* in, size_t count, float* out) {
  for (size_t i = 0; i < count; ++i) {
    _Float16 h;
    std::memcpy(&h, &in[i], sizeof(h));
    out[i] = static_cast<float>(h);
  }
}

}  // namespace claa::attncache
