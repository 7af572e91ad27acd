#ifndef CLAA_ENGINE_RUNTIME_CPU_COMMUNICATOR_H_
#define CLAA_ENGINE_RUNTIME_CPU_COMMUNICATOR_H_

// In-process Communicator for a tensor-parallel group whose ranks are threads of one process.
//
// Collectives meet at a generation-counting barrier (mutex + condition variable). AllReduceSum is
// a reduce-scatter + gather over a group-owned buffer: rank r sums its 1/size share of the
// elements over all ranks IN RANK ORDER, then every rank copies the whole result, so all ranks get
// bit-identical sums regardless of thread timing. Send is buffered (it copies and never blocks);
// Recv blocks for the next message of that pair (FIFO per ordered pair).
//
// Misuse (ranks calling different collectives, or different counts) returns InvalidArgument on
// every rank. Abort() releases every rank blocked in the group with Aborted, and every later call
// fails the same way; use it when one rank failed and the others would wait for it forever.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "engine/runtime/communicator.h"

namespace claa {

class CpuCommGroup {
 public:
  explicit CpuCommGroup(int size);
  ~CpuCommGroup();
  CpuCommGroup(const CpuCommGroup&) = delete;
  CpuCommGroup& operator=(const CpuCommGroup&) = delete;

  int size() const { return size_; }
  // Rank r's communicator, owned by the group. Each rank's thread uses only its own.
  Communicator* rank(int r);

  void Abort();
  bool aborted() const;

 private:
  class Rank;
  friend class Rank;

  enum class Op { kNone, kAllReduce, kAllGather, kBroadcast };
  struct Post {
    Op op = Op::kNone;
    size_t count = 0;
    int root = 0;
    const float* in = nullptr;
    float* out = nullptr;
  };
  struct Mailbox {
    std::deque<std::vector<float>> messages;
  };

  // Waits until all ranks arrive; the last arrival runs `on_last` (under the lock) first.
  absl::Status Barrier(const std::function<void()>& on_last = nullptr);
  // Posts this rank's arguments, meets the others, and checks that every rank posted the same
  // op and count.
  absl::Status Enter(int rank, const Post& post);

  absl::Status AllReduceSum(int rank, float* data, size_t count);
  absl::Status AllGather(int rank, const float* in, size_t count, float* out);
  absl::Status Broadcast(int rank, float* data, size_t count, int root);
  absl::Status Send(int rank, const float* data, size_t count, int peer);
  absl::Status Recv(int rank, float* data, size_t count, int peer);

  const int size_;
  std::vector<std::unique_ptr<Rank>> ranks_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  // Set by the first barrier of a collective when the ranks' posts disagree.
  bool mismatch_ = false;
  std::vector<Post> posts_;     // Per rank; written before, read after a barrier.
  std::vector<float> reduced_;  // AllReduceSum result, sized by the barrier's last arrival.

  std::vector<Mailbox> mailboxes_;  // [src * size + dst], guarded by mu_.
  std::condition_variable mail_cv_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_CPU_COMMUNICATOR_H_
