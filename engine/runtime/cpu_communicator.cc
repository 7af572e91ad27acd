#include "engine/runtime/cpu_communicator.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"

namespace claa {

class CpuCommGroup::Rank : public Communicator {
 public:
  Rank(CpuCommGroup* group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size_; }
  absl::Status AllReduceSum(float* data, size_t count) override {
    return group_->AllReduceSum(rank_, data, count);
  }
  absl::Status AllGather(const float* in, size_t count, float* out) override {
    return group_->AllGather(rank_, in, count, out);
  }
  absl::Status Broadcast(float* data, size_t count, int root) override {
    return group_->Broadcast(rank_, data, count, root);
  }
  absl::Status Send(const float* data, size_t count, int peer) override {
    return group_->Send(rank_, data, count, peer);
  }
  absl::Status Recv(float* data, size_t count, int peer) override {
    return group_->Recv(rank_, data, count, peer);
  }

 private:
  CpuCommGroup* group_;
  int rank_;
};

CpuCommGroup::CpuCommGroup(int size)
    : size_(std::max(1, size)), posts_(size_), mailboxes_(size_t(size_) * size_) {
  for (int r = 0; r < size_; ++r) ranks_.push_back(std::make_unique<Rank>(this, r));
}

CpuCommGroup::~CpuCommGroup() = default;

Communicator* CpuCommGroup::rank(int r) {
  return (r >= 0 && r < size_) ? ranks_[r].get() : nullptr;
}

void CpuCommGroup::Abort() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
  }
  cv_.notify_all();
  mail_cv_.notify_all();
}

bool CpuCommGroup::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

absl::Status CpuCommGroup::Barrier(const std::function<void()>& on_last) {
  std::unique_lock<std::mutex> lock(mu_);
  if (aborted_) return absl::AbortedError("communicator group aborted");
  const uint64_t gen = generation_;
  if (++arrived_ == size_) {
    if (on_last) on_last();
    arrived_ = 0;
    ++generation_;
    lock.unlock();
    cv_.notify_all();
    return absl::OkStatus();
  }
  cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
  if (generation_ == gen) return absl::AbortedError("communicator group aborted");
  return absl::OkStatus();
}

absl::Status CpuCommGroup::Enter(int rank, const Post& post) {
  posts_[rank] = post;
  CLAA_RETURN_IF_ERROR(Barrier([this] {
    mismatch_ = false;
    for (const Post& p : posts_) {
      if (p.op != posts_[0].op || p.count != posts_[0].count || p.root != posts_[0].root) {
        mismatch_ = true;
      }
    }
    if (!mismatch_ && posts_[0].op == Op::kAllReduce) reduced_.resize(posts_[0].count);
  }));
  if (mismatch_) {
    // Leave together so that nobody posts the next collective while others still read these.
    CLAA_RETURN_IF_ERROR(Barrier());
    return absl::InvalidArgumentError(
        "communicator: ranks called different collectives or passed different counts/roots");
  }
  return absl::OkStatus();
}

absl::Status CpuCommGroup::AllReduceSum(int rank, float* data, size_t count) {
  if (size_ == 1) return absl::OkStatus();
  CLAA_RETURN_IF_ERROR(Enter(rank, Post{Op::kAllReduce, count, 0, data, data}));
  // Reduce-scatter: this rank owns elements [begin, end) and sums them in rank order.
  const size_t chunk = (count + size_ - 1) / size_;
  const size_t begin = std::min(count, rank * chunk);
  const size_t end = std::min(count, begin + chunk);
  if (begin < end) {
    float* dst = reduced_.data();
    std::memcpy(dst + begin, posts_[0].in + begin, (end - begin) * sizeof(float));
    for (int r = 1; r < size_; ++r) {
      const float* src = posts_[r].in;
      for (size_t i = begin; i < end; ++i) dst[i] += src[i];
    }
  }
  CLAA_RETURN_IF_ERROR(Barrier());
  if (count > 0) std::memcpy(data, reduced_.data(), count * sizeof(float));
  // Nobody may resize reduced_ (next collective) before everyone has copied it out.
  return Barrier();
}

absl::Status CpuCommGroup::AllGather(int rank, const float* in, size_t count, float* out) {
  if (size_ == 1) {
    if (count > 0 && out != in) std::memmove(out, in, count * sizeof(float));
    return absl::OkStatus();
  }
  CLAA_RETURN_IF_ERROR(Enter(rank, Post{Op::kAllGather, count, 0, in, out}));
  for (int r = 0; r < size_; ++r) {
    if (count > 0) std::memcpy(out + r * count, posts_[r].in, count * sizeof(float));
  }
  return Barrier();
}

absl::Status CpuCommGroup::Broadcast(int rank, float* data, size_t count, int root) {
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(absl::StrFormat("broadcast root %d out of range", root));
  }
  if (size_ == 1) return absl::OkStatus();
  CLAA_RETURN_IF_ERROR(Enter(rank, Post{Op::kBroadcast, count, root, data, data}));
  if (rank != root && count > 0) {
    std::memcpy(data, posts_[root].in, count * sizeof(float));
  }
  return Barrier();
}

absl::Status CpuCommGroup::Send(int rank, const float* data, size_t count, int peer) {
  if (peer < 0 || peer >= size_ || peer == rank) {
    return absl::InvalidArgumentError(absl::StrFormat("send: bad peer %d from rank %d", peer, rank));
  }
  std::vector<float> msg(data, data + count);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_) return absl::AbortedError("communicator group aborted");
    mailboxes_[size_t(rank) * size_ + peer].messages.push_back(std::move(msg));
  }
  mail_cv_.notify_all();
  return absl::OkStatus();
}

absl::Status CpuCommGroup::Recv(int rank, float* data, size_t count, int peer) {
  if (peer < 0 || peer >= size_ || peer == rank) {
    return absl::InvalidArgumentError(absl::StrFormat("recv: bad peer %d at rank %d", peer, rank));
  }
  std::unique_lock<std::mutex> lock(mu_);
  Mailbox& box = mailboxes_[size_t(peer) * size_ + rank];
  mail_cv_.wait(lock, [&] { return !box.messages.empty() || aborted_; });
  if (box.messages.empty()) return absl::AbortedError("communicator group aborted");
  std::vector<float> msg = std::move(box.messages.front());
  box.messages.pop_front();
  lock.unlock();
  if (msg.size() != count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "recv: rank %d expected %d floats from rank %d, message has %d", rank, count, peer,
        msg.size()));
  }
  if (count > 0) std::memcpy(data, msg.data(), count * sizeof(float));
  return absl::OkStatus();
}

}  // namespace claa
