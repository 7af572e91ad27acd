#ifndef CLAA_ENGINE_ATTNCACHE_FEATURE_H_
#define CLAA_ENGINE_ATTNCACHE_FEATURE_H_

// The AttnCache lookup key of an input (DESIGN.md §3): its layer-0 attention input -- the token
// embeddings after layer 0's input RMSNorm -- padded or truncated to a fixed length and reduced
// to a 128-d vector whose L2 distance to another input's stands for how different their attention
// maps are. similarity = 1 - distance; a hit needs similarity >= threshold.
//
// Steps:
//  1. x_t = RmsNorm(embed[token_t]) * input_norm, scaled to unit length (the pooled scale then
//     does not depend on the model's norm gains).
//  2. Pooled feature u, (segments + 2) blocks of hidden values, scaled to unit length:
//       - the mean of x over the input's tokens (what the input is about);
//       - `segments` position-pooled means over the padded length: segment k averages positions
//         [k P / S, (k + 1) P / S) with zeros for padding (positions past the input), so where
//         content sits, and how long the input is, both move the vector;
//       - the mean of the last `tail` tokens: classification and scoring read the last rows of
//         the attention maps, which the end of the prompt (the question) decides.
//  3. A projector maps u (and the token count) to the dim-value index vector. Training-free
//     (RandomProjector): a fixed seeded Gaussian random projection to dim - 1 values, which
//     preserves distances between pooled features up to ~1/sqrt(dim) by Johnson-Lindenstrauss,
//     scaled to unit length, and a last value length_weight * ln(tokens): a length penalty, so
//     inputs of different lengths (whose maps differ in shape and alignment) are apart even when
//     their content agrees. Trained: the Siamese MLP (siamese_mlp.h), whose distances are fitted
//     to the maps' total-variation distance plus a length penalty.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "engine/model/weights.h"

namespace claa::attncache {

struct FeatureConfig {
  int length = 1024;   // P: inputs are padded / truncated to this many positions
  int segments = 8;    // S: position-pooled blocks over P
  int tail = 16;       // last tokens averaged into the tail block
  int dim = 128;       // index vector size
  double length_weight = 0.1;
  uint64_t seed = 0xA77CAC4Eull;  // random projection
};

// Maps a unit pooled feature of an input of num_tokens tokens to its index vector.
class Projector {
 public:
  virtual ~Projector() = default;
  virtual int input_dim() const = 0;
  virtual int output_dim() const = 0;
  virtual void Project(absl::Span<const float> pooled, int num_tokens, float* out) const = 0;
};

// Gaussian random matrix [out, in] with entries N(0, 1 / out) from a platform-independent
// generator (std::normal_distribution is implementation-defined, and stored vectors must not
// change between builds).
std::vector<float> GaussianMatrix(int out, int in, uint64_t seed);

// The training-free projector (step 3 above).
class RandomProjector final : public Projector {
 public:
  RandomProjector(int input_dim, int output_dim, uint64_t seed, double length_weight);
  int input_dim() const override { return in_; }
  int output_dim() const override { return out_; }
  void Project(absl::Span<const float> pooled, int num_tokens, float* out) const override;

 private:
  int in_, out_;
  double length_weight_;
  std::vector<float> matrix_;  // [out - 1, in]
};

class FeatureExtractor {
 public:
  // Reads `weights` (rank 0's will do: embeddings and norms are replicated), which must outlive
  // the extractor.
  FeatureExtractor(const ModelWeights& weights, FeatureConfig config);

  const FeatureConfig& config() const { return config_; }
  int pooled_dim() const { return (config_.segments + 2) * hidden_; }

  // Step 1-2: the unit pooled feature (pooled_dim values).
  std::vector<float> Pooled(absl::Span<const int32_t> tokens) const;
  // Steps 1-4 with the current projector: config.dim values.
  std::vector<float> Extract(absl::Span<const int32_t> tokens) const;
  // Steps 3-4 on an already pooled feature.
  std::vector<float> Finish(absl::Span<const float> pooled, int num_tokens) const;

  // Replaces the random projection (e.g. by a trained Siamese MLP); input_dim must equal
  // pooled_dim() and output_dim config.dim.
  void SetProjector(std::shared_ptr<const Projector> projector);
  const Projector& projector() const { return *projector_; }

 private:
  const ModelWeights& weights_;
  FeatureConfig config_;
  int hidden_;
  std::shared_ptr<const Projector> projector_;
};

// Scales v[0, n) to unit L2 norm (a zero vector stays zero).
void ScaleToUnit(float* v, size_t n);

// L2 distance and similarity (1 - distance) of two index vectors.
double FeatureDistance(absl::Span<const float> a, absl::Span<const float> b);
inline double FeatureSimilarity(absl::Span<const float> a, absl::Span<const float> b) {
  return 1.0 - FeatureDistance(a, b);
}

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_FEATURE_H_
