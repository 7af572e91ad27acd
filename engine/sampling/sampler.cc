#include "engine/sampling/sampler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

namespace claa {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// NaN sorts as -inf and -0 as +0, so packed keys agree with Argmax's float comparisons.
inline float Key(float logit) {
  if (std::isnan(logit)) return kNegInf;
  return logit == 0.0f ? 0.0f : logit;
}

// Lowest id among the maximal logits. NaN never compares greater and -0 == +0, so plain float
// compares already give Key semantics. Precondition: !logits.empty().
int32_t Argmax(absl::Span<const float> logits) {
  int32_t best = 0;
  float best_value = Key(logits[0]);
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > best_value) {  // Strict: ties keep the lower id.
      best_value = logits[i];
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

// One 64-bit integer per token whose ascending order is descending logit, ties -> lower id: a
// strict total order, so every top-k / nucleus set is unique and selections are integer work.
inline uint64_t Pack(float key, int32_t id) {
  uint32_t bits = std::bit_cast<uint32_t>(key);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // Ascending-order float bits.
  return (static_cast<uint64_t>(~bits) << 32) | static_cast<uint32_t>(id);
}

// Inverse of Pack's key part.
inline float UnpackKey(uint64_t packed) {
  uint32_t bits = ~static_cast<uint32_t>(packed >> 32);
  bits = (bits & 0x80000000u) ? (bits & 0x7fffffffu) : ~bits;
  return std::bit_cast<float>(bits);
}

inline int32_t IdOf(uint64_t packed) { return static_cast<int32_t>(packed & 0xffffffffu); }

// High 64 bits of a * b: maps a uniform 64-bit draw to [0, b) with integer arithmetic only.
inline uint64_t MulHi64(uint64_t a, uint64_t b) {
  const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
  const uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
  return a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
}

// Fixed-point softmax numerator: floor(exp((key - max) / T) * 2^bits). The argmax gets exactly
// 2^bits; `bits` is chosen so a whole vocabulary's sum fits in 64 bits. Integer weights make all
// mass sums exact, hence independent of summation order.
struct WeightFn {
  float max_key;
  double inv_t;
  double scale;         // 2^bits
  double min_exponent;  // Below this the weight is 0, so exp is skipped.

  double Exponent(float key) const { return (static_cast<double>(key) - max_key) * inv_t; }
  uint64_t operator()(float key) const {
    const double z = Exponent(key);
    if (z < min_exponent) return 0;
    // float exp is plenty for float logits and about twice as fast as double exp.
    return static_cast<uint64_t>(static_cast<double>(std::exp(static_cast<float>(z))) * scale);
  }
};

struct Candidate {
  uint64_t key;  // Pack(logit, id).
  uint64_t weight;
};

// Per-thread scratch: vocab-sized, so keeping it per Sampler (per request) would waste memory.
thread_local std::vector<Candidate> tls_pool;
thread_local std::vector<Candidate> tls_select;
thread_local std::vector<uint64_t> tls_weights;
thread_local std::vector<uint64_t> tls_heap;

// Exactly the top k (in Pack order) of the tokens with nonzero weight, in id order, via a bounded
// max-heap of packed keys: for k << n almost every token is rejected by one float compare.
void HeapTopK(absl::Span<const float> logits, const WeightFn& weight, int32_t k,
              std::vector<Candidate>& out) {
  std::vector<uint64_t>& heap = tls_heap;  // Largest packed key (worst candidate) at front.
  heap.clear();
  float worst = kNegInf;
  for (int32_t id = 0; id < static_cast<int32_t>(logits.size()); ++id) {
    const float raw = logits[id];
    // Fast reject (also drops NaN): strictly below the worst kept logit.
    if (static_cast<int32_t>(heap.size()) == k && !(raw >= worst)) continue;
    const float key = Key(raw);
    if (key == kNegInf || weight.Exponent(key) < weight.min_exponent) continue;
    const uint64_t packed = Pack(key, id);
    if (static_cast<int32_t>(heap.size()) < k) {
      heap.push_back(packed);
      std::push_heap(heap.begin(), heap.end());
    } else if (packed < heap.front()) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = packed;
      std::push_heap(heap.begin(), heap.end());
    } else {
      continue;
    }
    if (static_cast<int32_t>(heap.size()) == k) worst = UnpackKey(heap.front());
  }
  std::sort(heap.begin(), heap.end(), [](uint64_t a, uint64_t b) { return IdOf(a) < IdOf(b); });
  out.clear();
  for (uint64_t packed : heap) out.push_back({packed, 0});
}

struct Cut {
  uint64_t key;      // Last key (in Pack order) of the prefix.
  uint64_t measure;  // Measure of the prefix.
};

// Smallest prefix of `pool` in Pack order whose measure (weight, or count when !by_weight) is
// >= threshold; requires 1 <= threshold <= measure(pool). MSD radix select on the packed keys:
// each level is one histogram pass over the surviving candidates plus a compaction, so the cost
// is O(n) with no data movement in `pool` (which stays in id order for the walk).
Cut SelectPrefix(absl::Span<const Candidate> pool, uint64_t threshold, bool by_weight) {
  constexpr int kDigitBits = 11;
  constexpr uint64_t kDigitMask = (uint64_t{1} << kDigitBits) - 1;
  constexpr int kShifts[] = {53, 42, 31, 20, 9, 0};  // The last overlaps; harmless.
  std::vector<Candidate>& active = tls_select;       // Survivors after the first level.
  absl::Span<const Candidate> src = pool;
  uint64_t acc = 0;  // Measure of everything ranked before `src`; always < threshold.
  std::array<uint64_t, kDigitMask + 1> hist;
  for (int shift : kShifts) {
    if (src.size() <= 32) break;
    hist.fill(0);
    for (const Candidate& c : src) hist[(c.key >> shift) & kDigitMask] += by_weight ? c.weight : 1;
    uint64_t digit = 0;
    while (acc + hist[digit] < threshold) acc += hist[digit++];
    if (src.data() == pool.data()) {
      active.clear();
      for (const Candidate& c : src) {
        if (((c.key >> shift) & kDigitMask) == digit) active.push_back(c);
      }
    } else {  // In place: the write index never passes the read index.
      size_t kept = 0;
      for (const Candidate& c : src) {
        if (((c.key >> shift) & kDigitMask) == digit) active[kept++] = c;
      }
      active.resize(kept);
    }
    src = active;
  }
  if (src.data() == pool.data()) active.assign(src.begin(), src.end());
  std::sort(active.begin(), active.end(),
            [](const Candidate& a, const Candidate& b) { return a.key < b.key; });
  for (const Candidate& c : active) {
    acc += by_weight ? c.weight : 1;
    if (acc >= threshold) return {c.key, acc};
  }
  return {active.back().key, acc};  // Unreachable given the precondition.
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, uint64_t default_seed)
    : params_(params), seed_(params.seed.value_or(default_seed)), rng_(seed_) {
  // A NaN temperature would turn every weight into NaN (and a NaN -> integer cast is UB).
  if (!(params_.temperature >= 0.0f)) params_.temperature = 0.0f;
  params_.temperature = std::min(params_.temperature, kMaxTemperature);
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  if (logits.empty()) return -1;
  const int32_t greedy = Argmax(logits);
  if (params_.temperature <= 0.0f) return greedy;
  const float max_key = Key(logits[greedy]);
  // All -inf/NaN: nothing has mass. +inf: softmax is undefined (inf - inf) and the +inf token(s)
  // dominate, so greedy is the limit.
  if (!std::isfinite(max_key)) return greedy;

  const int32_t n = static_cast<int32_t>(logits.size());
  const int bits = std::min(42, 63 - static_cast<int>(std::bit_width(static_cast<uint64_t>(n))));
  const WeightFn weight{max_key, 1.0 / static_cast<double>(params_.temperature),
                        std::ldexp(1.0, bits), -(bits + 0.1) * std::log(2.0)};
  const bool use_top_k = params_.top_k > 0 && params_.top_k < n;
  const bool use_top_p = params_.top_p < 1.0f;

  if (!use_top_k && !use_top_p) {
    // Plain softmax: no ordering needed.
    std::vector<uint64_t>& w = tls_weights;
    w.resize(n);
    uint64_t mass = 0;
    for (int32_t id = 0; id < n; ++id) {
      const float k = Key(logits[id]);
      w[id] = k == kNegInf ? 0 : weight(k);
      mass += w[id];
    }
    const uint64_t target = MulHi64(rng_(), mass);
    uint64_t cum = 0;
    for (int32_t id = 0; id < n; ++id) {
      cum += w[id];
      if (cum > target) return id;
    }
    return greedy;  // Unreachable: the final cum == mass > target.
  }

  // The candidate pool, always in id order; tokens that would get weight 0 are dropped (safe
  // before top-k: they rank below every kept token).
  std::vector<Candidate>& pool = tls_pool;
  if (use_top_k && static_cast<int64_t>(params_.top_k) * 16 <= n) {
    HeapTopK(logits, weight, params_.top_k, pool);
  } else {
    pool.clear();
    for (int32_t id = 0; id < n; ++id) {
      const float k = Key(logits[id]);
      if (k == kNegInf || weight.Exponent(k) < weight.min_exponent) continue;
      pool.push_back({Pack(k, id), 0});
    }
    if (use_top_k && static_cast<size_t>(params_.top_k) < pool.size()) {
      const uint64_t cutoff = SelectPrefix(pool, params_.top_k, /*by_weight=*/false).key;
      std::erase_if(pool, [cutoff](const Candidate& c) { return c.key > cutoff; });
    }
  }
  // exp only for the survivors of top-k.
  uint64_t mass = 0;
  for (Candidate& c : pool) {
    c.weight = weight(UnpackKey(c.key));
    mass += c.weight;
  }

  uint64_t cutoff = std::numeric_limits<uint64_t>::max();
  if (use_top_p) {
    // ceil so that "prefix >= threshold" means "prefix >= top_p * mass"; clamped because
    // double(mass) may round up. >= 1, so the nucleus always holds the argmax.
    const double t =
        std::ceil(static_cast<double>(std::max(params_.top_p, 0.0f)) * static_cast<double>(mass));
    const uint64_t threshold =
        t >= static_cast<double>(mass) ? mass : std::max<uint64_t>(1, static_cast<uint64_t>(t));
    const Cut cut = SelectPrefix(pool, threshold, /*by_weight=*/true);
    cutoff = cut.key;
    mass = cut.measure;
  }

  // Walk the selected tokens (key <= cutoff) in id order: a canonical order, so the draw does not
  // depend on how the selection was computed. target is uniform in [0, mass).
  const uint64_t target = MulHi64(rng_(), mass);
  uint64_t cum = 0;
  for (const Candidate& c : pool) {
    if (c.key > cutoff) continue;
    cum += c.weight;
    if (cum > target) return IdOf(c.key);
  }
  return greedy;  // Unreachable: the final cum == mass > target.
}

float Sampler::LogProb(absl::Span<const float> logits, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) return kNegInf;
  const float max_logit = Key(logits[Argmax(logits)]);
  const float k = Key(logits[token]);
  if (k == kNegInf) return kNegInf;
  if (!std::isfinite(max_logit)) return k == max_logit ? 0.0f : kNegInf;  // +inf dominates.
  double sum = 0.0;
  for (float l : logits) {
    const float lk = Key(l);
    if (lk != kNegInf) sum += std::exp(static_cast<double>(lk) - max_logit);
  }
  return static_cast<float>(static_cast<double>(k) - max_logit - std::log(sum));
}

}  // namespace claa
