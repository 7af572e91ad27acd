#ifndef CLAA_ENGINE_SAMPLING_SAMPLER_H_
#define CLAA_ENGINE_SAMPLING_SAMPLER_H_

// Draws one token id from a row of logits; one Sampler per request (it owns the request's RNG).
#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling/sampling_params.h"

namespace claa {

class Sampler {
 public:
  // Uses params.seed when set, else default_seed. params should have passed
  // ValidateSamplingParams; out-of-range top_k / top_p are clamped rather than trusted.
  Sampler(const SamplingParams& params, uint64_t default_seed);

  // Greedy (argmax, ties -> lowest id) when temperature == 0. Otherwise softmax(logits / T)
  // restricted to the top-k tokens, then to the nucleus (smallest prefix, in descending
  // probability order with ties -> lower id, whose mass >= top_p of the remaining mass; at
  // least one token), then one draw from the seeded RNG. The draw is reproducible across
  // platforms for a given seed: std::mt19937_64's output is fixed by the standard and the uniform
  // double is built from its raw 53 high bits (std distributions are implementation-defined).
  // NaN logits count as -inf. If no logit is finite-and-max (all -inf/NaN, or some +inf), falls
  // back to greedy. Returns -1 only for empty logits. Greedy calls do not consume RNG output.
  int32_t Sample(absl::Span<const float> logits);

  // log-softmax at T=1, unfiltered, of `token` (for reporting logprobs). -inf when token is out
  // of range or its logit is -inf/NaN.
  static float LogProb(absl::Span<const float> logits, int32_t token);

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  // Uniform double in [0, 1) from the top 53 bits of one RNG output.
  double NextUniform();

  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  // Scratch reused across calls so a decode step does not allocate vocab-sized buffers.
  std::vector<double> probs_;
  std::vector<int32_t> order_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_SAMPLING_SAMPLER_H_
