#ifndef CLAA_SERVER_LOADGEN_METRICS_H_
#define CLAA_SERVER_LOADGEN_METRICS_H_

// Benchmark-wide numbers from per-request results, following vLLM's calculate_metrics: token
// totals and latency distributions count successful requests only; throughputs divide by the
// whole benchmark duration.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "server/loadgen/goodput.h"
#include "server/loadgen/request_result.h"
#include "server/loadgen/stats.h"

namespace claa::loadgen {

struct BenchmarkMetrics {
  int completed = 0;
  int failed = 0;
  std::map<std::string, int> failure_reasons;  // gRPC code name -> count
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;      // completed / duration
  int good_requests = 0;              // completed requests meeting every SLO
  double request_goodput = 0;         // good_requests / duration
  double output_throughput = 0;       // output tokens / duration
  double total_token_throughput = 0;  // (input + output tokens) / duration
  // In milliseconds. TPOT leaves out requests with fewer than two output tokens (as vLLM).
  Summary ttft_ms;
  Summary tpot_ms;
  Summary itl_ms;
  Summary e2el_ms;
};

BenchmarkMetrics ComputeMetrics(const std::vector<RequestResult>& results, double duration_s,
                                const GoodputSlos& slos);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_METRICS_H_
