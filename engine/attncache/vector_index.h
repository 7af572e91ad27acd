#ifndef CLAA_ENGINE_ATTNCACHE_VECTOR_INDEX_H_
#define CLAA_ENGINE_ATTNCACHE_VECTOR_INDEX_H_

// Nearest-neighbour search over the cache's feature vectors with FAISS (L2, DESIGN.md §3):
// IVF-Flat (nlist inverted lists, nprobe probed per query) once there are enough vectors to train
// its coarse quantizer, an exact flat index before that. FAISS reports errors by throwing; every
// call is caught here and turned into an absl::Status, so no exception leaves this module.
//
// Not thread-safe: the owner (AttnCache) serialises calls.
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace faiss {
struct Index;
}

namespace claa::attncache {

struct IndexOptions {
  int dim = 128;
  int nlist = 128;
  int nprobe = 8;
  // Vectors at which the flat index is replaced by IVF-Flat; 0 means 40 * nlist (FAISS wants
  // ~39 training points per list). The IVF is retrained whenever the count doubles since its
  // last training, so its lists follow what the cache holds.
  int ivf_min_vectors = 0;
};

struct Neighbor {
  int64_t id = -1;
  double distance = 0.0;  // L2 (not squared)
};

class VectorIndex {
 public:
  static absl::StatusOr<std::unique_ptr<VectorIndex>> Create(IndexOptions options);
  ~VectorIndex();

  // AlreadyExists for a known id, InvalidArgument for a wrong size.
  absl::Status Add(int64_t id, absl::Span<const float> vector);
  // No-op for an unknown id.
  absl::Status Remove(int64_t id);
  // Up to k nearest, closest first.
  absl::StatusOr<std::vector<Neighbor>> Search(absl::Span<const float> query, int k) const;

  int64_t size() const { return int64_t(vectors_.size()); }
  bool is_ivf() const { return ivf_trained_on_ > 0; }

 private:
  explicit VectorIndex(IndexOptions options);
  // Builds the flat or IVF index over all vectors_ (FAISS calls inside; may throw).
  void Rebuild();
  int ivf_min() const;

  IndexOptions options_;
  std::unordered_map<int64_t, std::vector<float>> vectors_;  // what a rebuild re-adds
  std::unique_ptr<faiss::Index> quantizer_;  // IVF's coarse quantizer (owned here, not by FAISS)
  std::unique_ptr<faiss::Index> index_;
  int64_t ivf_trained_on_ = 0;  // vectors the IVF was trained on; 0 while flat
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_VECTOR_INDEX_H_
