#ifndef CLAA_ENGINE_EVAL_DET_RANDOM_H_
#define CLAA_ENGINE_EVAL_DET_RANDOM_H_

// Platform-independent random numbers for the task generators. std::mt19937_64's output is fixed
// by the C++ standard, but std::uniform_int_distribution and friends are implementation-defined,
// so a data set made with them differs between libstdc++ and libc++. These mappings are ours.
#include <cstdint>
#include <random>

namespace claa::eval {

class DetRandom {
 public:
  explicit DetRandom(uint64_t seed) : engine_(seed) {}

  uint64_t Next() { return engine_(); }

  // Uniform over [0, n) for n > 0. Rejection sampling: the top partial block of 2^64 is
  // thrown away so that every value is exactly equally likely.
  uint64_t Below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t x = engine_();
      if (x >= threshold) return x % n;
    }
  }

  // Uniform over [lo, hi], both inclusive; lo <= hi.
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }

  // Uniform over [0, 1) on the 2^-53 grid (exact in a double).
  double Unit() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 engine_;
};

// SplitMix64 finalizer of (a, b): derives independent seeds for sub-streams and examples.
inline uint64_t MixSeed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_DET_RANDOM_H_
