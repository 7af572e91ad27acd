#include "engine/gpu/tp_group_model.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace claa::gpu {

TpGroupModel::TpGroupModel(std::vector<std::unique_ptr<CudaLlamaModel>> ranks)
    : ranks_(std::move(ranks)), threads_(int(ranks_.size())) {}

TpGroupModel::~TpGroupModel() = default;

size_t TpGroupModel::weight_bytes() const {
  size_t total = 0;
  for (const auto& r : ranks_) total += r->weight_bytes();
  return total;
}

size_t TpGroupModel::kv_cache_bytes() const {
  size_t total = 0;
  for (const auto& r : ranks_) total += r->kv_cache_bytes();
  return total;
}

absl::Status TpGroupModel::Forward(absl::Span<const ForwardItem> batch,
                                   std::vector<float>* logits, bool all_logits) {
  if (broken_) {
    return absl::InternalError("the tensor-parallel group failed earlier and was stopped");
  }
  // Refused alike by every rank: refuse before any rank starts.
  if (absl::Status s = ValidateBatch(batch); !s.ok()) return s;
  // Ranks other than 0 skip the LM head: it is replicated and rank 0's logits are returned.
  const std::vector<absl::Status> statuses = threads_.Run([&](int r) {
    return ranks_[r]->Forward(batch, r == 0 ? logits : nullptr, all_logits);
  });
  absl::Status status = statuses[0];
  for (int r = 1; r < int(ranks_.size()) && status.ok(); ++r) {
    if (!statuses[r].ok()) {
      status = absl::Status(statuses[r].code(),
                            absl::StrFormat("rank %d: %s", r, statuses[r].message()));
    }
  }
  if (!status.ok()) broken_ = true;
  return status;
}

absl::StatusOr<std::vector<float>> TpGroupModel::LastSelectionScores(int item) const {
  absl::StatusOr<std::vector<float>> first = ranks_[0]->LastSelectionScores(item);
  if (!first.ok()) return first;
  for (int r = 1; r < int(ranks_.size()); ++r) {
    absl::StatusOr<std::vector<float>> other = ranks_[r]->LastSelectionScores(item);
    if (!other.ok()) return other.status();
    if (other->size() != first->size() ||
        std::memcmp(other->data(), first->data(), first->size() * sizeof(float)) != 0) {
      return absl::InternalError(absl::StrFormat(
          "item %d: rank %d's selection scores differ from rank 0's; the ranks kept different "
          "tokens", item, r));
    }
  }
  return first;
}

absl::Status TpGroupModel::ReadKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                       float* k, float* v) {
  for (auto& r : ranks_) {
    if (absl::Status s = r->ReadKvSlots(kv, layer, first, n, k, v); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TpGroupModel::WriteKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                        const float* k, const float* v) {
  for (auto& r : ranks_) {
    if (absl::Status s = r->WriteKvSlots(kv, layer, first, n, k, v); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace claa::gpu
