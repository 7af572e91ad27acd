#include "engine/attncache/vector_index.h"

#include <cmath>
#include <exception>

#include "absl/strings/str_cat.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIDMap.h"
#include "faiss/IndexIVFFlat.h"
#include "faiss/impl/FaissException.h"
#include "faiss/impl/IDSelector.h"

namespace claa::attncache {
namespace {

using FaissId = faiss::Index::idx_t;  // a member type in FAISS 1.7 (Debian 12)

// Runs a FAISS call; a thrown FaissException (or anything else) becomes Internal.
template <typename F>
absl::Status Guard(const char* what, F&& f) {
  try {
    f();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("FAISS ", what, ": ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat("FAISS ", what, ": unknown exception"));
  }
}

}  // namespace

VectorIndex::VectorIndex(IndexOptions options) : options_(options) {}
VectorIndex::~VectorIndex() {
  index_.reset();  // the IVF index points at the quantizer
  quantizer_.reset();
}

int VectorIndex::ivf_min() const {
  return options_.ivf_min_vectors > 0 ? options_.ivf_min_vectors : 40 * options_.nlist;
}

absl::StatusOr<std::unique_ptr<VectorIndex>> VectorIndex::Create(IndexOptions options) {
  if (options.dim < 1 || options.nlist < 1 || options.nprobe < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("index options need dim, nlist, nprobe >= 1, got ", options.dim, ", ",
                     options.nlist, ", ", options.nprobe));
  }
  std::unique_ptr<VectorIndex> index(new VectorIndex(options));
  VectorIndex* raw = index.get();
  absl::Status s = Guard("create", [raw] { raw->Rebuild(); });
  if (!s.ok()) return s;
  return index;
}

void VectorIndex::Rebuild() {
  const int64_t n = size();
  std::vector<float> data;
  std::vector<FaissId> ids;
  data.reserve(size_t(n) * options_.dim);
  for (const auto& [id, v] : vectors_) {
    ids.push_back(id);
    data.insert(data.end(), v.begin(), v.end());
  }
  index_.reset();
  quantizer_.reset();
  if (n >= ivf_min()) {
    quantizer_ = std::make_unique<faiss::IndexFlatL2>(options_.dim);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer_.get(), options_.dim,
                                                     size_t(options_.nlist), faiss::METRIC_L2);
    ivf->nprobe = size_t(options_.nprobe);
    ivf->train(n, data.data());
    ivf->add_with_ids(n, data.data(), ids.data());
    index_ = std::move(ivf);
    ivf_trained_on_ = n;
  } else {
    auto flat = std::make_unique<faiss::IndexIDMap2>(new faiss::IndexFlatL2(options_.dim));
    flat->own_fields = true;
    if (n > 0) flat->add_with_ids(n, data.data(), ids.data());
    index_ = std::move(flat);
    ivf_trained_on_ = 0;
  }
}

absl::Status VectorIndex::Add(int64_t id, absl::Span<const float> vector) {
  if (int(vector.size()) != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("vector of ", vector.size(), " values, the index has dim ", options_.dim));
  }
  if (vectors_.count(id) != 0) return absl::AlreadyExistsError(absl::StrCat("id ", id));
  vectors_.emplace(id, std::vector<float>(vector.begin(), vector.end()));
  const int64_t n = size();
  const bool rebuild =
      (ivf_trained_on_ == 0 && n >= ivf_min()) || (ivf_trained_on_ > 0 && n >= 2 * ivf_trained_on_);
  absl::Status s = Guard("add", [&] {
    if (rebuild) {
      Rebuild();
    } else {
      const FaissId fid = id;
      index_->add_with_ids(1, vector.data(), &fid);
    }
  });
  if (!s.ok()) vectors_.erase(id);
  return s;
}

absl::Status VectorIndex::Remove(int64_t id) {
  if (vectors_.erase(id) == 0) return absl::OkStatus();
  return Guard("remove", [&] {
    const FaissId fid = id;
    faiss::IDSelectorBatch sel(1, &fid);
    index_->remove_ids(sel);
  });
}

absl::StatusOr<std::vector<Neighbor>> VectorIndex::Search(absl::Span<const float> query,
                                                          int k) const {
  if (int(query.size()) != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("query of ", query.size(), " values, the index has dim ", options_.dim));
  }
  std::vector<Neighbor> out;
  if (k < 1 || vectors_.empty()) return out;
  k = int(std::min<int64_t>(k, size()));
  std::vector<float> dist(k);
  std::vector<FaissId> ids(k);
  absl::Status s =
      Guard("search", [&] { index_->search(1, query.data(), k, dist.data(), ids.data()); });
  if (!s.ok()) return s;
  for (int i = 0; i < k; ++i) {
    if (ids[i] < 0) continue;  // IVF: fewer than k vectors in the probed lists
    out.push_back(Neighbor{ids[i], std::sqrt(std::max(0.0f, dist[i]))});
  }
  return out;
}

}  // namespace claa::attncache
