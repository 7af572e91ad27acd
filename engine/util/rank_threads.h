#ifndef CLAA_ENGINE_UTIL_RANK_THREADS_H_
#define CLAA_ENGINE_UTIL_RANK_THREADS_H_

// Persistent host threads of a tensor-parallel group: Run(fn) calls fn(rank) for every rank at
// the same time (rank 0 on the caller's thread, ranks 1..n-1 on threads kept for the group's
// life, so a decode step does not pay for thread creation) and returns once all have returned.
// The ranks must run concurrently because they meet in collectives. Used by the CPU
// ModelRunner and the GPU TpGroupModel.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace claa {

class RankThreads {
 public:
  explicit RankThreads(int ranks) : status_(ranks) {
    for (int r = 1; r < ranks; ++r) threads_.emplace_back([this, r] { Loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    job_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int size() const { return int(status_.size()); }

  // fn(r) on every rank; returns each rank's status. Calls must not overlap.
  std::vector<absl::Status> Run(const std::function<absl::Status(int)>& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      pending_ = size() - 1;
      ++job_id_;
    }
    job_cv_.notify_all();
    absl::Status first = fn(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    std::vector<absl::Status> out = status_;
    out[0] = std::move(first);
    return out;
  }

 private:
  void Loop(int rank) {
    uint64_t seen = 0;
    while (true) {
      const std::function<absl::Status(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        job_cv_.wait(lock, [&] { return stop_ || job_id_ != seen; });
        if (stop_) return;
        seen = job_id_;
        job = job_;
      }
      absl::Status s = (*job)(rank);
      {
        std::lock_guard<std::mutex> lock(mu_);
        status_[rank] = std::move(s);
        --pending_;
      }
      done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable job_cv_, done_cv_;
  uint64_t job_id_ = 0;
  bool stop_ = false;
  const std::function<absl::Status(int)>* job_ = nullptr;
  int pending_ = 0;
  std::vector<absl::Status> status_;
  std::vector<std::thread> threads_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_UTIL_RANK_THREADS_H_
