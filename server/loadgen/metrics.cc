#include "server/loadgen/metrics.h"

namespace claa::loadgen {

BenchmarkMetrics ComputeMetrics(const std::vector<RequestResult>& results, double duration_s,
                                const GoodputSlos& slos) {
  BenchmarkMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestResult& r : results) {
    if (!r.success) {
      ++m.failed;
      ++m.failure_reasons[r.error.empty() ? "UNKNOWN" : r.error];
      continue;
    }
    ++m.completed;
    if (MeetsSlos(r, slos)) ++m.good_requests;
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    if (r.output_tokens > 1) tpot.push_back(Tpot(r) * 1e3);
    for (double gap : r.itl_s) itl.push_back(gap * 1e3);
    e2el.push_back(r.e2el_s * 1e3);
  }
  if (duration_s > 0) {
    m.request_throughput = m.completed / duration_s;
    m.request_goodput = m.good_requests / duration_s;
    m.output_throughput = static_cast<double>(m.total_output_tokens) / duration_s;
    m.total_token_throughput =
        static_cast<double>(m.total_input_tokens + m.total_output_tokens) / duration_s;
  }
  m.ttft_ms = Summarize(std::move(ttft));
  m.tpot_ms = Summarize(std::move(tpot));
  m.itl_ms = Summarize(std::move(itl));
  m.e2el_ms = Summarize(std::move(e2el));
  return m;
}

}  // namespace claa::loadgen
