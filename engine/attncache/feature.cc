#include "engine/attncache/feature.h"

#include <algorithm>
#include <cmath>

#include "engine/runtime/cpu_ops.h"

namespace claa::attncache {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Standard normal by Box-Muller from our own uniform stream (std::normal_distribution is
// implementation-defined, and the projection must not change between builds: the index holds
// vectors made with it).
double Gaussian(uint64_t& state) {
  const double u1 = (double(SplitMix64(state) >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = double(SplitMix64(state) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace

void ScaleToUnit(float* v, size_t n) {
  double sq = 0.0;
  for (size_t i = 0; i < n; ++i) sq += double(v[i]) * v[i];
  if (sq <= 0.0) return;
  const float inv = float(1.0 / std::sqrt(sq));
  for (size_t i = 0; i < n; ++i) v[i] *= inv;
}

std::vector<float> GaussianMatrix(int out, int in, uint64_t seed) {
  std::vector<float> m(size_t(out) * in);
  uint64_t state = seed;
  const double scale = 1.0 / std::sqrt(double(out));
  for (float& x : m) x = float(Gaussian(state) * scale);
  return m;
}

RandomProjector::RandomProjector(int input_dim, int output_dim, uint64_t seed,
                                 double length_weight)
    : in_(input_dim),
      out_(output_dim),
      length_weight_(length_weight),
      matrix_(GaussianMatrix(output_dim - 1, input_dim, seed)) {}

void RandomProjector::Project(absl::Span<const float> pooled, int num_tokens, float* out) const {
  Gemm(pooled.data(), 1, in_, matrix_.data(), out_ - 1, out);
  ScaleToUnit(out, size_t(out_ - 1));
  out[out_ - 1] = float(length_weight_ * std::log(double(std::max(1, num_tokens))));
}

FeatureExtractor::FeatureExtractor(const ModelWeights& weights, FeatureConfig config)
    : weights_(weights), config_(config), hidden_(weights.config.hidden_size) {
  projector_ = std::make_shared<RandomProjector>(pooled_dim(), config_.dim, config_.seed,
                                                config_.length_weight);
}

void FeatureExtractor::SetProjector(std::shared_ptr<const Projector> projector) {
  projector_ = std::move(projector);
}

std::vector<float> FeatureExtractor::Pooled(absl::Span<const int32_t> tokens) const {
  const int h = hidden_;
  const int p = config_.length;
  const int s = config_.segments;
  const int n = int(tokens.size());
  const int used = std::min(n, p);
  const float eps = float(weights_.config.rms_norm_eps);
  const float* norm = weights_.layers[0].input_norm.data();

  std::vector<float> pooled(size_t(s + 2) * h, 0.0f);
  float* mean = pooled.data();
  float* segments = mean + h;
  float* tail = segments + size_t(s) * h;
  const int tail_start = std::max(0, n - config_.tail);
  std::vector<float> x(h);
  auto add = [h](float* dst, const float* src, float w) {
    for (int i = 0; i < h; ++i) dst[i] += w * src[i];
  };
  for (int t = 0; t < n; ++t) {
    if (t >= used && t < tail_start) continue;  // truncated away and not in the tail
    RmsNorm(&weights_.embed_tokens[size_t(tokens[t]) * h], 1, h, norm, eps, x.data());
    ScaleToUnit(x.data(), h);
    if (t < used) {
      add(mean, x.data(), 1.0f / used);
      // Segment k holds positions [k p / s, (k + 1) p / s); padding contributes zeros.
      const int k = int(int64_t(t) * s / p);
      const int seg_begin = int(int64_t(k) * p / s), seg_end = int(int64_t(k + 1) * p / s);
      add(segments + size_t(k) * h, x.data(), 1.0f / float(seg_end - seg_begin));
    }
    if (t >= tail_start) add(tail, x.data(), 1.0f / float(n - tail_start));
  }
  ScaleToUnit(pooled.data(), pooled.size());
  return pooled;
}

std::vector<float> FeatureExtractor::Finish(absl::Span<const float> pooled, int num_tokens) const {
  std::vector<float> f(config_.dim, 0.0f);
  projector_->Project(pooled, num_tokens, f.data());
  return f;
}

std::vector<float> FeatureExtractor::Extract(absl::Span<const int32_t> tokens) const {
  return Finish(Pooled(tokens), int(tokens.size()));
}

double FeatureDistance(absl::Span<const float> a, absl::Span<const float> b) {
  double sq = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    sq += d * d;
  }
  return std::sqrt(sq);
}

}  // namespace claa::attncache
