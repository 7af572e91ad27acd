#ifndef CLAA_ENGINE_ATTNCACHE_ATTN_CACHE_H_
#define CLAA_ENGINE_ATTNCACHE_ATTN_CACHE_H_

// AttnCache (DESIGN.md §3): feature extraction, the FAISS index and the map store together.
// Lookup finds the stored input nearest to a new one and says whether its maps may be reused;
// Insert keeps a miss's maps. Thread-safe (one internal mutex; calls are short next to a forward
// pass).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/attncache/feature.h"
#include "engine/attncache/map_store.h"
#include "engine/attncache/vector_index.h"
#include "engine/model/weights.h"

namespace claa::attncache {

struct AttnCacheOptions {
  std::string dir;
  int64_t max_bytes = int64_t{1} << 30;
  // Reuse when similarity = 1 - L2 distance >= threshold (the paper's 0.995).
  double threshold = 0.995;
  // Entries whose length differs from the input's. false (default): only an entry of exactly the
  // input's length can hit -- a token inserted or dropped mid-prompt shifts every later position,
  // so the reused maps would attend to the wrong places. true: the paper's padding semantics,
  // where an entry at least as long as the input serves it with its first rows (the rows of a
  // causal map for an input's first n tokens are exactly an n-token map). A shorter entry never
  // serves: it has no rows for the input's last tokens.
  bool allow_longer_entries = false;
  // Neighbours examined per lookup: the nearest one whose length fits is used.
  int search_k = 16;
  FeatureConfig feature;
  IndexOptions index;
};

// Reports what the metrics need; called with the cache's lock held, so it must not block or call
// back into the cache.
class AttnCacheObserver {
 public:
  virtual ~AttnCacheObserver() = default;
  virtual void OnLookup(bool hit) {}
  virtual void OnStoreBytes(int64_t bytes) {}
  virtual void OnEvictions(int64_t count) {}
};

struct CacheLookup {
  bool hit = false;
  // Similarity of the nearest entry whose length fits, else of the nearest entry; 0 when the
  // cache is empty.
  double similarity = 0.0;
  bool has_neighbor = false;
  std::shared_ptr<const StoreEntry> entry;  // set on a hit; keeps the maps mapped
  std::vector<float> feature;               // the input's, for a later Insert
};

class AttnCache {
 public:
  // weights: rank 0's (for the features); must outlive the cache. Files refused by the store are
  // listed in *refused (may be null). observer may be null and must outlive the cache.
  static absl::StatusOr<std::unique_ptr<AttnCache>> Open(AttnCacheOptions options,
                                                         const ModelWeights& weights,
                                                         AttnCacheObserver* observer,
                                                         std::vector<RefusedFile>* refused);

  // Nearest stored input whose length fits (see allow_longer_entries); a hit when its similarity
  // reaches the threshold.
  absl::StatusOr<CacheLookup> Lookup(absl::Span<const int32_t> tokens);
  // The feature alone (a lookup's feature can be reused by Insert).
  std::vector<float> Feature(absl::Span<const int32_t> tokens) const;

  // Stores the maps of `tokens` (maps.shape.length == tokens.size()). Returns the entry id.
  absl::StatusOr<int64_t> Insert(absl::Span<const int32_t> tokens,
                                 absl::Span<const float> feature, const MapsView& maps);

  // Switches the projector (e.g. to a trained Siamese MLP) and rebuilds the index from the stored
  // inputs' recomputed features.
  absl::Status SetProjector(std::shared_ptr<const Projector> projector);

  const AttnCacheOptions& options() const { return options_; }
  const FeatureExtractor& extractor() const { return extractor_; }
  int64_t entries() const;
  int64_t bytes() const;
  int64_t evictions() const;

 private:
  AttnCache(AttnCacheOptions options, const ModelWeights& weights, AttnCacheObserver* observer);
  absl::Status RebuildIndexLocked();

  const AttnCacheOptions options_;
  FeatureExtractor extractor_;
  AttnCacheObserver* observer_;
  mutable std::mutex mu_;
  std::unique_ptr<MapStore> store_;     // guarded by mu_
  std::unique_ptr<VectorIndex> index_;  // guarded by mu_
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_ATTN_CACHE_H_
