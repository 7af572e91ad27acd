#ifndef CLAA_SERVER_LOADGEN_ARRIVAL_SCHEDULE_H_
#define CLAA_SERVER_LOADGEN_ARRIVAL_SCHEDULE_H_

// Request arrival times, generated up front from a seed as in `vllm bench serve`: gaps are
// gamma(shape = burstiness, scale = 1 / (rate * burstiness)), so the mean rate is `rate` for
// every burstiness; burstiness 1 is a Poisson process (exponential gaps), < 1 is burstier,
// > 1 more regular. An infinite rate sends everything at time 0.
//
// Reproducibility: the schedule uses std::mt19937_64 (fully specified by the standard) with
// std::gamma_distribution / std::exponential_distribution, whose algorithms are left to the
// standard library. The same seed therefore gives the same schedule with the same libstdc++,
// not necessarily across standard libraries; that is enough for repeatable benchmarks here.
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace claa::loadgen {

struct ArrivalOptions {
  int num_requests = 0;
  double request_rate = 0;  // requests per second; +infinity means all at once
  double burstiness = 1.0;  // gamma shape, > 0
  uint64_t seed = 0;
};

// Offsets in seconds from the benchmark start, non-decreasing. As in vLLM, the first request
// goes at 0 and each later one one sampled gap after the previous (n requests, n - 1 gaps).
absl::StatusOr<std::vector<double>> MakeArrivalSchedule(const ArrivalOptions& options);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_ARRIVAL_SCHEDULE_H_
