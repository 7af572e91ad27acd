#ifndef CLAA_SERVER_WORKER_POOL_H_
#define CLAA_SERVER_WORKER_POOL_H_

// The router's view of one kind of worker (prefill or decode): addresses, channels, health and
// load. A prober thread calls every worker's GetLoad (which doubles as the health check) a few
// times a second; a worker that fails is taken out of rotation and put back once it answers
// again. Pick() balances by the probed load plus what this router sent since the last probe:
// prefill workers by queued prompt tokens, decode workers by free KV blocks.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "claa/internal/v1/worker.grpc.pb.h"
#include "server/kv_fetch.h"

namespace claa {

class WorkerPool {
 public:
  enum class Kind { kPrefill, kDecode };

  struct Worker {
    std::string address;
    std::unique_ptr<internal::v1::PrefillWorker::Stub> prefill;
    std::unique_ptr<internal::v1::DecodeWorker::Stub> decode;
    // Guarded by the pool's mutex.
    bool healthy = false;
    internal::v1::WorkerLoad load;
    int64_t sent_tokens = 0;    // prompt tokens routed here since the last probe
    int sent_requests = 0;      // requests routed here since the last probe
    std::string last_error;
  };

  // probe_timeout: the deadline of one probe; a worker that does not answer in time leaves the
  // rotation (claa-server --health_probe_timeout_ms).
  WorkerPool(Kind kind, std::vector<std::string> addresses, ChannelCache* channels,
             absl::Duration probe_timeout = absl::Seconds(1),
             absl::Duration probe_interval = absl::Milliseconds(200));
  ~WorkerPool();

  // Probes every worker once, synchronously (start-up, tests).
  void ProbeAll();
  // The least loaded healthy worker (probing again first when none looked healthy);
  // Unavailable, naming each worker's last error, when none is.
  absl::StatusOr<Worker*> Pick(int64_t prompt_tokens);
  // A call to `worker` failed with UNAVAILABLE: out of rotation until a probe succeeds.
  void MarkUnhealthy(Worker* worker, const std::string& why);
  int healthy_count();
  int size() const { return int(workers_.size()); }
  Kind kind() const { return kind_; }

 private:
  absl::StatusOr<Worker*> PickHealthy(int64_t prompt_tokens);
  void ProbeLoop();
  void Probe(Worker* worker);

  Kind kind_;
  std::vector<std::unique_ptr<Worker>> workers_;
  absl::Duration probe_timeout_;
  absl::Duration interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread prober_;
};

}  // namespace claa

#endif  // CLAA_SERVER_WORKER_POOL_H_
