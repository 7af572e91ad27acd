#ifndef CLAA_SERVER_LOADGEN_REPORT_H_
#define CLAA_SERVER_LOADGEN_REPORT_H_

// The printed "Serving Benchmark Result" table (laid out as vLLM's) and the --result_json file.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/loadgen/goodput.h"
#include "server/loadgen/metrics.h"
#include "server/loadgen/request_result.h"

namespace claa::loadgen {

// How the benchmark was run, echoed in the table and the JSON.
struct BenchmarkConfig {
  std::string target;
  std::string model_name;
  std::string dataset;  // "random" or "jsonl"
  std::string dataset_path;
  int num_prompts = 0;
  double request_rate = 0;  // may be +infinity
  double burstiness = 1;
  int max_concurrency = 0;  // 0 = unlimited
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string pruning_method;  // "" = server default
  double keep_ratio = 0;       // <= 0 = server default
  GoodputSlos slos;
};

std::string FormatReport(const BenchmarkConfig& config, const BenchmarkMetrics& metrics);

// Every number of the report plus per-request arrays (in request order, failures included),
// with vLLM's key names where vLLM has one (mean_ttft_ms, p99_itl_ms, ttfts, itls, ...).
nlohmann::json ResultJson(const BenchmarkConfig& config, const BenchmarkMetrics& metrics,
                          const std::vector<RequestResult>& results);

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_REPORT_H_
