#ifndef CLAA_SERVER_LOADGEN_RUNNER_H_
#define CLAA_SERVER_LOADGEN_RUNNER_H_

// Sends the benchmark requests on their arrival schedule with gRPC's callback API: one
// dispatcher thread waits for each arrival time and a free concurrency slot, then starts a
// streaming call whose reactor timestamps every message on gRPC's own threads. Nothing else
// blocks per request, so thousands of queued requests need no thread each.
//
// Every call carries a deadline, so each one ends (at worst with DEADLINE_EXCEEDED) and
// RunBenchmark always returns: streams are bounded in count (the requests given) and time.
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "claa/v1/claa.grpc.pb.h"
#include "server/loadgen/request_result.h"

namespace claa::loadgen {

struct RunOptions {
  std::vector<double> arrival_s;  // one offset per request, non-decreasing
  int max_concurrency = 0;        // 0: unlimited
  absl::Duration request_timeout = absl::Seconds(300);
  // Sent with every call, e.g. {"authorization", "Bearer <token>"}.
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Live counters, readable from another thread (the progress line).
struct RunProgress {
  std::atomic<int> started{0};
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
};

struct RunOutput {
  std::vector<RequestResult> results;  // in request order
  double duration_s = 0;               // benchmark start to the last completion
};

// `requests` and `options.arrival_s` have the same size. `progress` may be null.
RunOutput RunBenchmark(v1::Generation::Stub* stub, const std::vector<v1::GenerateRequest>& requests,
                       const RunOptions& options, RunProgress* progress);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_RUNNER_H_
