#ifndef CLAA_SCHEDULER_KV_LEASE_TABLE_H_
#define CLAA_SCHEDULER_KV_LEASE_TABLE_H_

// The prefill worker's side of the KV handoff: prefilled caches wait here, under a lease, until
// a decode worker fetches them (FetchKv), the router releases them (abort), or the lease ends.
// Whatever happens, the blocks go back to the block manager exactly once.
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/runtime/block_manager.h"
#include "scheduler/handoff.h"

namespace claa {

class KvLeaseTable : public HandoffSink {
 public:
  // on_freed runs (on any thread) after blocks return to `blocks`, e.g. to wake a scheduler.
  KvLeaseTable(BlockManager* blocks, absl::Duration lease, std::function<void()> on_freed);
  ~KvLeaseTable() override;  // frees every remaining lease

  std::string Accept(PrefillHandoff handoff) override;

  // A fetch in progress: the lease cannot expire while it is held. Finish() frees the blocks
  // (the decode worker has the cache); dropping it without Finish() (a failed transfer) leaves
  // the lease to run out as usual, unless Release() was asked meanwhile (then it frees them).
  class Pin {
   public:
    Pin(KvLeaseTable* table, std::string ticket, const PrefillHandoff* handoff)
        : table_(table), ticket_(std::move(ticket)), handoff_(handoff) {}
    ~Pin();
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    const PrefillHandoff& handoff() const { return *handoff_; }
    void Finish();

   private:
    KvLeaseTable* table_;
    std::string ticket_;
    const PrefillHandoff* handoff_;
    bool finished_ = false;
  };
  // NotFound when the ticket is unknown (fetched, released or expired). A ticket another fetch
  // holds is waited for up to `wait` (the retry of a cut transfer can arrive before the cut
  // fetch has noticed it is over), then Aborted.
  absl::StatusOr<std::unique_ptr<Pin>> Acquire(const std::string& ticket,
                                               absl::Duration wait = absl::ZeroDuration());

  // Frees a ticket's blocks now, or, while a fetch holds it, when that fetch ends (its cache
  // is not handed out again). False when unknown or already released.
  bool Release(const std::string& ticket);
  absl::Time Deadline(const std::string& ticket);
  absl::Duration lease() const { return lease_; }
  int size();
  // Frees every unpinned lease whose deadline passed (the reaper thread calls it too).
  int ReapExpired(absl::Time now);

 private:
  struct Lease {
    PrefillHandoff handoff;
    absl::Time deadline;
    bool pinned = false;
    bool released = false;  // Release() came while pinned: free at Unpin
  };
  void Free(Lease& lease);  // returns the blocks; callers hold mu_
  void Unpin(const std::string& ticket, bool finished);
  void ReaperLoop();

  BlockManager* blocks_;
  absl::Duration lease_;
  std::function<void()> on_freed_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable unpinned_;  // a pin dropped (Acquire may be waiting for it)
  bool stop_ = false;
  uint64_t next_ = 0;
  std::map<std::string, std::unique_ptr<Lease>> leases_;
  std::thread reaper_;
};

}  // namespace claa

#endif  // CLAA_SCHEDULER_KV_LEASE_TABLE_H_
