#ifndef CLAA_ENGINE_ATTNCACHE_SIAMESE_MLP_H_
#define CLAA_ENGINE_ATTNCACHE_SIAMESE_MLP_H_

// The paper's lookup-feature network: a small MLP applied to both inputs of a pair (a Siamese
// network) and trained so that the L2 distance of its outputs predicts how different the two
// inputs' attention maps are (total variation plus a length penalty, map_distance.h).
//
//   z = [R u, ln(tokens) / ln(feature_length)]   R: fixed seeded Gaussian, pooled -> reduce_dim
//   h = relu(W1 z + b1)                            hidden units
//   f = W2 h + b2                                  dim values: the index vector
//
// The fixed R keeps the trained part the same size for any model width (a pooled feature of an
// 8B model has ~40k values); it is regenerated from its seed, so a saved network stores only
// W1, b1, W2, b2. Trained on the CPU with Adam on the squared error of the distance.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/attncache/feature.h"

namespace claa::attncache {

struct SiameseShape {
  int input_dim = 0;        // pooled feature size
  int dim = 128;            // output (index vector) size
  int reduce_dim = 256;
  int hidden = 128;
  int feature_length = 1024;  // scales the token-count input
  uint64_t seed = 0x51A3E5Eull;
  bool operator==(const SiameseShape&) const = default;
};

struct SiamesePair {
  int a = 0, b = 0;      // example indices
  double target = 0.0;   // map distance to predict
};

struct SiameseTrainOptions {
  int epochs = 80;
  int batch = 32;
  double learning_rate = 2e-3;
  double weight_decay = 1e-4;
  uint64_t seed = 1;
  // Early stopping: with validation pairs, the weights of the epoch with the lowest validation
  // error are kept, and training stops after `patience` epochs without improvement.
  const std::vector<SiamesePair>* validation = nullptr;
  int patience = 15;
};

class SiameseMlp final : public Projector {
 public:
  // Fresh weights (He-initialised W1, small W2).
  explicit SiameseMlp(SiameseShape shape);

  // Binary file: magic, shape, weights, checksum. DataLoss naming the file when it is damaged.
  static absl::StatusOr<std::unique_ptr<SiameseMlp>> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;

  int input_dim() const override { return shape_.input_dim; }
  int output_dim() const override { return shape_.dim; }
  void Project(absl::Span<const float> pooled, int num_tokens, float* out) const override;
  const SiameseShape& shape() const { return shape_; }

  // Fits the network on pairs of examples given by their pooled features and token counts.
  // Returns the mean squared error per epoch (of the validation pairs when given).
  std::vector<double> Train(const std::vector<std::vector<float>>& pooled,
                            const std::vector<int>& num_tokens,
                            const std::vector<SiamesePair>& pairs,
                            const SiameseTrainOptions& options);

 private:
  int z_dim() const { return shape_.reduce_dim + 1; }
  // z of an input (the fixed part).
  void Reduce(absl::Span<const float> pooled, int num_tokens, float* z) const;
  // h (post-ReLU) and f from z.
  void Forward(const float* z, float* h, float* f) const;

  SiameseShape shape_;
  std::vector<float> reduce_;  // [reduce_dim, input_dim], fixed
  std::vector<float> w1_, b1_, w2_, b2_;
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_SIAMESE_MLP_H_
