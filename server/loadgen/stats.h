#ifndef CLAA_SERVER_LOADGEN_STATS_H_
#define CLAA_SERVER_LOADGEN_STATS_H_

// Summary statistics of latency samples, computed as vLLM's benchmark does with numpy:
// population standard deviation (ddof=0) and linearly interpolated percentiles
// (numpy.percentile's default "linear" method), so numbers compare with `vllm bench serve`.
#include <vector>

namespace claa::loadgen {

struct Summary {
  int count = 0;
  double mean = 0;
  double std = 0;
  double median = 0;
  double p90 = 0;
  double p99 = 0;
  double min = 0;
  double max = 0;
};

// The q-th percentile (q in [0, 100]) of `sorted` (ascending), linearly interpolated between
// the closest ranks. Returns 0 for an empty input, as vLLM reports missing data as 0.
double Percentile(const std::vector<double>& sorted, double q);

// All fields of Summary; every field is 0 when `samples` is empty (never NaN).
Summary Summarize(std::vector<double> samples);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_STATS_H_
