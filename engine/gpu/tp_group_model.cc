#include "engine/gpu/tp_group_model.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace claa::gpu {

TpGroupModel::TpGroupModel(std::vector<std::unique_ptr<CudaLlamaModel>> ranks)
    : ranks_(std::move(ranks)), worker_status_(ranks_.size()) {
  for (int r = 1; r < int(ranks_.size()); ++r) workers_.emplace_back([this, r] { WorkerLoop(r); });
}

TpGroupModel::~TpGroupModel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  job_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

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

void TpGroupModel::WorkerLoop(int rank) {
  uint64_t seen = 0;
  while (true) {
    absl::Span<const ForwardItem> batch;
    bool all_logits = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      job_cv_.wait(lock, [&] { return stop_ || job_id_ != seen; });
      if (stop_) return;
      seen = job_id_;
      batch = job_batch_;
      all_logits = job_all_logits_;
    }
    // Ranks other than 0 skip the LM head: it is replicated and rank 0's is returned.
    absl::Status s = ranks_[rank]->Forward(batch, nullptr, all_logits);
    {
      std::lock_guard<std::mutex> lock(mu_);
      worker_status_[rank] = std::move(s);
      --pending_;
    }
    done_cv_.notify_all();
  }
}

absl::Status TpGroupModel::Forward(absl::Span<const ForwardItem> batch,
                                   std::vector<float>* logits, bool all_logits) {
  if (broken_) {
    return absl::InternalError("the tensor-parallel group failed earlier and was stopped");
  }
  // Refused alike by every rank: refuse before any rank starts.
  if (absl::Status s = ValidateBatch(batch); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_batch_ = batch;
    job_all_logits_ = all_logits;
    pending_ = int(ranks_.size()) - 1;
    ++job_id_;
  }
  job_cv_.notify_all();
  absl::Status status = ranks_[0]->Forward(batch, logits, all_logits);
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    for (int r = 1; r < int(ranks_.size()) && status.ok(); ++r) {
      if (!worker_status_[r].ok()) {
        status = absl::Status(worker_status_[r].code(),
                              absl::StrFormat("rank %d: %s", r, worker_status_[r].message()));
      }
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

}  // namespace claa::gpu
