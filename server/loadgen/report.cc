#include "server/loadgen/report.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace claa::loadgen {
namespace {

constexpr int kWidth = 50;

std::string Title(const std::string& title, char fill) {
  const int pad = kWidth - static_cast<int>(title.size());
  const int left = pad > 0 ? pad / 2 : 0;
  return std::string(left, fill) + title + std::string(pad > 0 ? pad - left : 0, fill) + "\n";
}

std::string Row(const std::string& name, const std::string& value) {
  return absl::StrFormat("%-40s %s\n", name, value);
}
std::string Row(const std::string& name, int64_t value) { return Row(name, absl::StrCat(value)); }
std::string Row(const std::string& name, double value) {
  return Row(name, absl::StrFormat("%.2f", value));
}

std::string LatencyRows(const std::string& title, const std::string& abbrev, const Summary& s) {
  std::string out = Title(title, '-');
  out += Row(absl::StrCat("Mean ", abbrev, " (ms):"), s.mean);
  out += Row(absl::StrCat("Median ", abbrev, " (ms):"), s.median);
  out += Row(absl::StrCat("Std ", abbrev, " (ms):"), s.std);
  out += Row(absl::StrCat("P90 ", abbrev, " (ms):"), s.p90);
  out += Row(absl::StrCat("P99 ", abbrev, " (ms):"), s.p99);
  return out;
}

std::string SloText(const GoodputSlos& slos) {
  std::string text;
  auto add = [&text](const char* key, const std::optional<double>& v) {
    if (v) absl::StrAppend(&text, text.empty() ? "" : " ", key, ":", *v);
  };
  add("ttft", slos.ttft_ms);
  add("tpot", slos.tpot_ms);
  add("e2el", slos.e2el_ms);
  return text;
}

// JSON has no infinity; vLLM writes an infinite request rate as the string "inf".
nlohmann::json RateJson(double rate) {
  return std::isinf(rate) ? nlohmann::json("inf") : nlohmann::json(rate);
}

void AddSummary(nlohmann::json& j, const std::string& name, const Summary& s) {
  j["mean_" + name + "_ms"] = s.mean;
  j["median_" + name + "_ms"] = s.median;
  j["std_" + name + "_ms"] = s.std;
  j["p90_" + name + "_ms"] = s.p90;
  j["p99_" + name + "_ms"] = s.p99;
  j["min_" + name + "_ms"] = s.min;
  j["max_" + name + "_ms"] = s.max;
  j["count_" + name] = s.count;
}

}  // namespace

std::string FormatReport(const BenchmarkConfig& config, const BenchmarkMetrics& m) {
  std::string out = Title(" Serving Benchmark Result ", '=');
  out += Row("Successful requests:", int64_t{m.completed});
  out += Row("Failed requests:", int64_t{m.failed});
  for (const auto& [reason, count] : m.failure_reasons) {
    out += Row(absl::StrCat("  ", reason, ":"), int64_t{count});
  }
  out += Row("Maximum request concurrency:",
             config.max_concurrency > 0 ? absl::StrCat(config.max_concurrency) : "unlimited");
  out +=
      Row("Request rate configured (RPS):",
          std::isinf(config.request_rate) ? "inf" : absl::StrFormat("%.2f", config.request_rate));
  out += Row("Benchmark duration (s):", m.duration_s);
  out += Row("Total input tokens:", m.total_input_tokens);
  out += Row("Total generated tokens:", m.total_output_tokens);
  out += Row("Request throughput (req/s):", m.request_throughput);
  if (!config.slos.empty()) {
    out += Row(absl::StrCat("Request goodput (req/s):"), m.request_goodput);
    out += Row(absl::StrCat("  SLOs (ms): ", SloText(config.slos)),
               absl::StrCat(m.good_requests, " good"));
  }
  out += Row("Output token throughput (tok/s):", m.output_throughput);
  out += Row("Total Token throughput (tok/s):", m.total_token_throughput);
  out += LatencyRows("Time to First Token", "TTFT", m.ttft_ms);
  out += LatencyRows("Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms);
  out += LatencyRows("Inter-token Latency", "ITL", m.itl_ms);
  out += LatencyRows("End-to-end Latency", "E2EL", m.e2el_ms);
  out += std::string(kWidth, '=') + "\n";
  return out;
}

nlohmann::json ResultJson(const BenchmarkConfig& config, const BenchmarkMetrics& m,
                          const std::vector<RequestResult>& results) {
  nlohmann::json j;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y%m%d-%H%M%S", std::localtime(&now));
  j["date"] = date;
  j["backend"] = "claa-grpc";
  j["target"] = config.target;
  j["model_id"] = config.model_name;
  j["dataset"] = config.dataset;
  if (!config.dataset_path.empty()) j["dataset_path"] = config.dataset_path;
  j["num_prompts"] = config.num_prompts;
  j["request_rate"] = RateJson(config.request_rate);
  j["burstiness"] = config.burstiness;
  j["max_concurrency"] =
      config.max_concurrency > 0 ? nlohmann::json(config.max_concurrency) : nlohmann::json();
  j["seed"] = config.seed;
  j["ignore_eos"] = config.ignore_eos;
  j["pruning_method"] = config.pruning_method;
  j["keep_ratio"] = config.keep_ratio > 0 ? nlohmann::json(config.keep_ratio) : nlohmann::json();
  nlohmann::json slos = nlohmann::json::object();
  if (config.slos.ttft_ms) slos["ttft"] = *config.slos.ttft_ms;
  if (config.slos.tpot_ms) slos["tpot"] = *config.slos.tpot_ms;
  if (config.slos.e2el_ms) slos["e2el"] = *config.slos.e2el_ms;
  j["goodput_slos_ms"] = slos;

  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["failure_reasons"] = m.failure_reasons;
  j["total_input_tokens"] = m.total_input_tokens;
  j["total_output_tokens"] = m.total_output_tokens;
  j["request_throughput"] = m.request_throughput;
  j["good_requests"] = m.good_requests;
  // Without SLOs every completed request is good; vLLM writes null then, and so do we.
  j["request_goodput"] = config.slos.empty() ? nlohmann::json() : nlohmann::json(m.request_goodput);
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  AddSummary(j, "ttft", m.ttft_ms);
  AddSummary(j, "tpot", m.tpot_ms);
  AddSummary(j, "itl", m.itl_ms);
  AddSummary(j, "e2el", m.e2el_ms);

  // Per-request arrays, seconds as in vLLM's file.
  nlohmann::json ids = nlohmann::json::array(), success = nlohmann::json::array(),
                 errors = nlohmann::json::array(), finish = nlohmann::json::array(),
                 starts = nlohmann::json::array(), input_lens = nlohmann::json::array(),
                 output_lens = nlohmann::json::array(), ttfts = nlohmann::json::array(),
                 tpots = nlohmann::json::array(), e2els = nlohmann::json::array(),
                 itls = nlohmann::json::array();
  for (const RequestResult& r : results) {
    ids.push_back(r.request_id);
    success.push_back(r.success);
    errors.push_back(r.error.empty() ? r.error : absl::StrCat(r.error, ": ", r.error_message));
    finish.push_back(r.finish_reason);
    starts.push_back(r.start_s);
    input_lens.push_back(r.prompt_tokens);
    output_lens.push_back(r.output_tokens);
    ttfts.push_back(r.ttft_s);
    tpots.push_back(Tpot(r));
    e2els.push_back(r.e2el_s);
    itls.push_back(r.itl_s);
  }
  j["request_ids"] = ids;
  j["success"] = success;
  j["errors"] = errors;
  j["finish_reasons"] = finish;
  j["start_times"] = starts;
  j["input_lens"] = input_lens;
  j["output_lens"] = output_lens;
  j["ttfts"] = ttfts;
  j["tpots"] = tpots;
  j["e2els"] = e2els;
  j["itls"] = itls;
  return j;
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& json) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write '", path, "'"));
  // Error messages from the server may hold any bytes; replace rather than throw.
  out << json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

}  // namespace claa::loadgen
