#ifndef CLAA_ENGINE_SAMPLING_SAMPLER_H_
#define CLAA_ENGINE_SAMPLING_SAMPLER_H_

// Draws one token id from a row of logits; one Sampler per request (it owns the request's RNG).
#include <cstdint>
#include <random>

#include "absl/types/span.h"
#include "engine/sampling/sampling_params.h"

namespace claa {

class Sampler {
 public:
  // Uses params.seed when set, else default_seed. params should have passed
  // ValidateSamplingParams; invalid values are neutralized rather than trusted (NaN or negative
  // temperature -> greedy, +inf -> kMaxTemperature, top_k outside [1, vocab) and top_p >= 1 or
  // NaN -> disabled, top_p <= 0 -> argmax only).
  Sampler(const SamplingParams& params, uint64_t default_seed);

  // Greedy (argmax, ties -> lowest id) when temperature == 0. Otherwise softmax(logits / T)
  // restricted to the top-k tokens, then to the nucleus (smallest prefix, in descending logit
  // order with ties -> lower id, whose mass >= top_p of the remaining mass; never empty), then
  // one draw from the seeded RNG.
  //
  // Reproducible across platforms for a given seed and logits: std::mt19937_64's output is fixed
  // by the standard and is mapped to the draw by integer arithmetic (no std distributions, whose
  // outputs are implementation-defined). Probabilities are fixed-point integers (relative to the
  // max token, 2^-42 resolution), so every mass sum is exact and independent of summation order,
  // and the draw walks the kept tokens in id order; only std::exp's rounding could differ between
  // libms. Tokens whose probability is below 2^-42 of the top token's are never drawn.
  //
  // Cost, O(vocab) in all modes: an argmax pass; top-k with k <= vocab/16 is one more pass with a
  // bounded heap and exp only for the k survivors; otherwise exp per token plus, for top-p (or
  // large k), an MSD radix select on packed (logit, id) keys instead of a sort. Vocab-sized
  // scratch is thread_local, so it is shared by all samplers used on one thread.
  //
  // NaN logits count as -inf. All -inf/NaN, or any +inf, falls back to greedy. Returns -1 only for
  // empty logits. Greedy calls do not consume RNG output; others consume exactly one.
  int32_t Sample(absl::Span<const float> logits);

  // log-softmax at T=1, unfiltered, of `token` (for reporting logprobs). -inf when token is out
  // of range or its logit is -inf/NaN.
  static float LogProb(absl::Span<const float> logits, int32_t token);

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_SAMPLING_SAMPLER_H_
