#include "engine/attncache/attn_cache.h"

#include "absl/strings/str_cat.h"
#include "engine/attncache/checksum.h"
#include "engine/util/status_macros.h"

namespace claa::attncache {

AttnCache::AttnCache(AttnCacheOptions options, const ModelWeights& weights,
                     AttnCacheObserver* observer)
    : options_(std::move(options)), extractor_(weights, options_.feature), observer_(observer) {}

absl::StatusOr<std::unique_ptr<AttnCache>> AttnCache::Open(AttnCacheOptions options,
                                                           const ModelWeights& weights,
                                                           AttnCacheObserver* observer,
                                                           std::vector<RefusedFile>* refused) {
  if (!(options.threshold > -1.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("attn cache threshold must be in (-1, 1], got ", options.threshold));
  }
  const FeatureConfig& f = options.feature;
  if (f.length < 1 || f.segments < 1 || f.segments > f.length || f.tail < 1 || f.dim < 2) {
    return absl::InvalidArgumentError("attn cache feature config out of range");
  }
  if (options.search_k < 1) options.search_k = 1;
  options.index.dim = f.dim;
  StoreOptions so;
  so.dir = options.dir;
  so.max_bytes = options.max_bytes;
  so.model_fingerprint = ModelFingerprint(weights);
  so.layers = weights.config.num_layers;
  so.heads = weights.config.num_heads;
  const IndexOptions index_options = options.index;
  std::unique_ptr<AttnCache> cache(new AttnCache(std::move(options), weights, observer));
  CLAA_ASSIGN_OR_RETURN(cache->store_, MapStore::Open(so, refused));
  CLAA_ASSIGN_OR_RETURN(cache->index_, VectorIndex::Create(index_options));
  std::lock_guard<std::mutex> lock(cache->mu_);
  CLAA_RETURN_IF_ERROR(cache->RebuildIndexLocked());
  if (observer != nullptr) {
    observer->OnStoreBytes(cache->store_->bytes());
    // A bound lowered since the last run evicts at open.
    if (cache->store_->evictions() > 0) observer->OnEvictions(cache->store_->evictions());
  }
  return cache;
}

absl::Status AttnCache::RebuildIndexLocked() {
  CLAA_ASSIGN_OR_RETURN(index_, VectorIndex::Create(options_.index));
  for (const auto& entry : store_->Entries()) {
    const std::vector<float> f = extractor_.Extract(entry->tokens());
    CLAA_RETURN_IF_ERROR(index_->Add(entry->id(), f));
  }
  return absl::OkStatus();
}

std::vector<float> AttnCache::Feature(absl::Span<const int32_t> tokens) const {
  std::lock_guard<std::mutex> lock(mu_);
  return extractor_.Extract(tokens);
}

absl::StatusOr<CacheLookup> AttnCache::Lookup(absl::Span<const int32_t> tokens) {
  CacheLookup out;
  std::lock_guard<std::mutex> lock(mu_);  // also guards the projector, which SetProjector swaps
  out.feature = extractor_.Extract(tokens);
  CLAA_ASSIGN_OR_RETURN(std::vector<Neighbor> near, index_->Search(out.feature, options_.search_k));
  for (const Neighbor& n : near) {
    std::shared_ptr<const StoreEntry> entry = store_->Get(n.id);
    if (entry == nullptr) continue;
    if (!out.has_neighbor) out.similarity = 1.0 - n.distance;
    out.has_neighbor = true;
    // Maps shorter than the input cannot stand in for it (never mis-shape); a longer entry's
    // first rows can, when allowed.
    const int length = entry->maps().shape.length;
    const int wanted = int(tokens.size());
    if (length < wanted || (length > wanted && !options_.allow_longer_entries)) continue;
    out.similarity = 1.0 - n.distance;
    if (out.similarity >= options_.threshold) {
      out.hit = true;
      out.entry = std::move(entry);
      store_->Touch(n.id);
    }
    break;
  }
  if (observer_ != nullptr) observer_->OnLookup(out.hit);
  return out;
}

absl::StatusOr<int64_t> AttnCache::Insert(absl::Span<const int32_t> tokens,
                                          absl::Span<const float> feature, const MapsView& maps) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> evicted;
  absl::StatusOr<std::shared_ptr<const StoreEntry>> entry = store_->Insert(tokens, maps, &evicted);
  for (int64_t id : evicted) CLAA_RETURN_IF_ERROR(index_->Remove(id));
  if (observer_ != nullptr) {
    if (!evicted.empty()) observer_->OnEvictions(int64_t(evicted.size()));
    observer_->OnStoreBytes(store_->bytes());
  }
  if (!entry.ok()) return entry.status();
  CLAA_RETURN_IF_ERROR(index_->Add((*entry)->id(), feature));
  return (*entry)->id();
}

absl::Status AttnCache::SetProjector(std::shared_ptr<const Projector> projector) {
  if (projector->input_dim() != extractor_.pooled_dim() ||
      projector->output_dim() != options_.feature.dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "projector maps ", projector->input_dim(), " -> ", projector->output_dim(),
        " values, the cache needs ", extractor_.pooled_dim(), " -> ", options_.feature.dim));
  }
  std::lock_guard<std::mutex> lock(mu_);
  extractor_.SetProjector(std::move(projector));
  return RebuildIndexLocked();
}

int64_t AttnCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int64_t(store_->size());
}
int64_t AttnCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_->bytes();
}
int64_t AttnCache::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_->evictions();
}

}  // namespace claa::attncache
