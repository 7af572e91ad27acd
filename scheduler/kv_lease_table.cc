#include "scheduler/kv_lease_table.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"

namespace claa {

KvLeaseTable::KvLeaseTable(BlockManager* blocks, absl::Duration lease,
                           std::function<void()> on_freed)
    : blocks_(blocks), lease_(lease), on_freed_(std::move(on_freed)) {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

KvLeaseTable::~KvLeaseTable() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  reaper_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [ticket, lease] : leases_) Free(*lease);
  leases_.clear();
}

std::string KvLeaseTable::Accept(PrefillHandoff handoff) {
  auto lease = std::make_unique<Lease>();
  lease->handoff = std::move(handoff);
  lease->deadline = absl::Now() + lease_;
  std::lock_guard<std::mutex> lock(mu_);
  // The counter makes a ticket unique even when a request id is reused after an abort.
  std::string ticket = absl::StrCat(lease->handoff.request_id, "#", next_++);
  leases_[ticket] = std::move(lease);
  return ticket;
}

void KvLeaseTable::Free(Lease& lease) {
  blocks_->Free(lease.handoff.kv.blocks);
  lease.handoff.kv.blocks.clear();
}

absl::StatusOr<std::unique_ptr<KvLeaseTable::Pin>> KvLeaseTable::Acquire(
    const std::string& ticket, absl::Duration wait) {
  const auto give_up = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(wait);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = leases_.find(ticket);
    if (it == leases_.end() || it->second->released) {
      return absl::NotFoundError(absl::StrCat(
          "KV ticket ", ticket, " is unknown: already fetched, released or expired"));
    }
    if (!it->second->pinned) {
      it->second->pinned = true;
      return std::make_unique<Pin>(this, ticket, &it->second->handoff);
    }
    // Another fetch holds it: usually one whose transfer was just cut and whose handler has not
    // noticed yet, while the router already retries on another decode worker.
    if (unpinned_.wait_until(lock, give_up) == std::cv_status::timeout) {
      it = leases_.find(ticket);
      if (it != leases_.end() && it->second->pinned) {
        return absl::AbortedError(absl::StrCat("KV ticket ", ticket, " is being fetched"));
      }
    }
  }
}

void KvLeaseTable::Unpin(const std::string& ticket, bool finished) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(ticket);
    if (it == leases_.end()) return;
    it->second->pinned = false;
    unpinned_.notify_all();
    if (!finished && !it->second->released) return;
    Free(*it->second);
    leases_.erase(it);
  }
  if (on_freed_) on_freed_();
}

KvLeaseTable::Pin::~Pin() {
  if (!finished_) table_->Unpin(ticket_, false);
}

void KvLeaseTable::Pin::Finish() {
  if (finished_) return;
  finished_ = true;
  table_->Unpin(ticket_, true);
}

bool KvLeaseTable::Release(const std::string& ticket) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(ticket);
    if (it == leases_.end() || it->second->released) return false;
    if (it->second->pinned) {
      // A fetch holds it, typically one cut mid-transfer whose handler has not ended yet: free
      // the blocks when it lets go, not at the lease's expiry (the router releases a ticket
      // only once no decode worker will fetch it).
      it->second->released = true;
      return true;
    }
    Free(*it->second);
    leases_.erase(it);
  }
  if (on_freed_) on_freed_();
  return true;
}

absl::Time KvLeaseTable::Deadline(const std::string& ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(ticket);
  return it == leases_.end() ? absl::InfinitePast() : it->second->deadline;
}

int KvLeaseTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(leases_.size());
}

int KvLeaseTable::ReapExpired(absl::Time now) {
  int freed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (!it->second->pinned && it->second->deadline <= now) {
        Free(*it->second);
        it = leases_.erase(it);
        ++freed;
      } else {
        ++it;
      }
    }
  }
  if (freed > 0 && on_freed_) on_freed_();
  return freed;
}

void KvLeaseTable::ReaperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stop_) break;
    lock.unlock();
    ReapExpired(absl::Now());
    lock.lock();
  }
}

}  // namespace claa
