// claa-loadgen: a serving benchmark client for claa-server, following `vllm bench serve`:
// it sends --num_prompts streaming Generate calls on a Poisson/gamma arrival schedule (at most
// --max_concurrency at once), measures TTFT, TPOT, ITL and end-to-end latency client-side, and
// prints a "Serving Benchmark Result" table (optionally also a JSON file with every number and
// per-request arrays). It exits 0 once the benchmark has run, whatever the requests' outcomes
// (they are counted, with reasons); non-zero for bad flags, an unreachable server or an
// unwritable result file.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "claa/v1/claa.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/flags_usage.h"
#include "server/loadgen/arrival_schedule.h"
#include "server/loadgen/dataset.h"
#include "server/loadgen/goodput.h"
#include "server/loadgen/metrics.h"
#include "server/loadgen/progress.h"
#include "server/loadgen/report.h"
#include "server/loadgen/request_builder.h"
#include "server/loadgen/runner.h"
#include "server/security/bearer_auth.h"
#include "server/security/tls_config.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "claa-server address, HOST:PORT.");
ABSL_FLAG(int, num_prompts, 1000, "Number of requests to send.");
ABSL_FLAG(double, request_rate, std::numeric_limits<double>::infinity(),
          "Mean request arrival rate in requests/s; inf sends every request at once.");
ABSL_FLAG(double, burstiness, 1.0,
          "Shape of the gamma distribution of inter-arrival gaps: 1 is a Poisson process, "
          "< 1 burstier, > 1 more regular. The mean rate stays --request_rate.");
ABSL_FLAG(int, max_concurrency, 0,
          "Requests in flight at most (0 = unlimited); later arrivals wait for a slot.");
ABSL_FLAG(int64_t, seed, 0, "Seed of the arrival schedule and of the random dataset.");
ABSL_FLAG(std::string, dataset, "random",
          "random: prompts of random token ids (--random_*); jsonl: --dataset_path.");
ABSL_FLAG(std::string, dataset_path, "",
          "jsonl dataset: one {\"prompt\": \"...\", \"max_tokens\": N} object a line "
          "(max_tokens optional, default --random_output_len); lines are reused in order when "
          "--num_prompts exceeds them.");
ABSL_FLAG(int, random_input_len, 1024, "random dataset: prompt tokens per request.");
ABSL_FLAG(int, random_output_len, 128,
          "random dataset: max_tokens per request (also the jsonl default).");
ABSL_FLAG(double, random_range_ratio, 0.0,
          "random dataset: lengths are uniform in [len*(1-r), len*(1+r)], r in [0, 1).");
ABSL_FLAG(bool, ignore_eos, true,
          "Generate past EOS so that every request produces max_tokens tokens. Default: true "
          "for --dataset=random, false for jsonl unless given.");
ABSL_FLAG(float, temperature, 0.0f, "Sampling temperature (0 = greedy).");
ABSL_FLAG(std::string, pruning_method, "",
          "Per-request prompt pruning: full|claa|fastkv|gemfilter (empty: server default).");
ABSL_FLAG(std::optional<float>, keep_ratio, std::nullopt,
          "Per-request pruning keep ratio in (0, 1] (unset: server default).");
ABSL_FLAG(std::string, goodput, "",
          "SLOs for goodput, e.g. \"ttft:500 tpot:50 e2el:2000\" (milliseconds, any subset); "
          "goodput = completed requests/s meeting all of them.");
ABSL_FLAG(std::string, result_json, "", "Write every number and per-request arrays here.");
ABSL_FLAG(bool, progress, false,
          "Show a live progress line on stderr (done/total, failures, req/s, elapsed).");
ABSL_FLAG(double, timeout_s, 300, "Per-request deadline in seconds.");
ABSL_FLAG(double, connect_timeout_s, 30,
          "How long to wait for the server to answer GetModelInfo before giving up.");
// A server started with --tls_cert_file / --auth_token_file (README "Security").
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, trusting the system's root certificates (implied by --tls_ca_file).");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect with TLS; the server's certificate must chain to this PEM CA.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate, for a server that requires one (with --tls_key_file).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, when it is not the host of --target.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the server's bearer token (surrounding whitespace trimmed), sent as "
          "'authorization: Bearer <token>'. Default: the CLAA_AUTH_TOKEN environment variable, "
          "if set.");

namespace {

using namespace claa::loadgen;  // NOLINT: a main file over this one namespace

int Fail(const std::string& what) {
  std::cerr << "claa-loadgen: " << what << std::endl;
  return 1;
}

// Whether --NAME / --noNAME appears among the arguments: absl does not expose whether a flag
// was set on the command line, and --ignore_eos's default depends on the dataset.
bool FlagGiven(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    arg = arg.substr(arg.find_first_not_of('-') == std::string::npos ? arg.size()
                                                                     : arg.find_first_not_of('-'));
    arg = arg.substr(0, arg.find('='));
    if (arg == name || arg == "no" + name) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  claa::ShowFlagsOfFileInHelp("server/loadgen/loadgen_main.cc");
  absl::SetProgramUsageMessage(
      "Serving benchmark for claa-server (vLLM `bench serve` conventions).\n"
      "Usage: claa-loadgen --target HOST:PORT --num_prompts N --request_rate R "
      "[--max_concurrency C] [--dataset random|jsonl] [--result_json FILE] [--progress]\n"
      "       [--tls_ca_file CA.pem] [--auth_token_file FILE]   a secured server");
  const bool ignore_eos_given = FlagGiven(argc, argv, "ignore_eos");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Fail(absl::StrCat("unexpected argument '", rest[1], "'"));

  BenchmarkConfig config;
  config.target = absl::GetFlag(FLAGS_target);
  config.dataset = absl::GetFlag(FLAGS_dataset);
  config.dataset_path = absl::GetFlag(FLAGS_dataset_path);
  config.num_prompts = absl::GetFlag(FLAGS_num_prompts);
  config.request_rate = absl::GetFlag(FLAGS_request_rate);
  config.burstiness = absl::GetFlag(FLAGS_burstiness);
  config.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  config.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  config.ignore_eos =
      ignore_eos_given ? absl::GetFlag(FLAGS_ignore_eos) : config.dataset == "random";
  config.pruning_method = absl::GetFlag(FLAGS_pruning_method);
  const std::optional<float> keep_ratio = absl::GetFlag(FLAGS_keep_ratio);
  config.keep_ratio = keep_ratio.value_or(0.0f);
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);

  if (config.dataset != "random" && config.dataset != "jsonl") {
    return Fail(absl::StrCat("--dataset must be random or jsonl, got '", config.dataset, "'"));
  }
  if (config.dataset == "jsonl" && config.dataset_path.empty()) {
    return Fail("--dataset=jsonl needs --dataset_path");
  }
  if (config.max_concurrency < 0) return Fail("--max_concurrency must be >= 0");
  if (!(timeout_s > 0)) return Fail("--timeout_s must be > 0");
  if (keep_ratio && !(*keep_ratio > 0 && *keep_ratio <= 1)) {
    return Fail("--keep_ratio must be in (0, 1]");
  }
  auto slos = ParseGoodputSlos(absl::GetFlag(FLAGS_goodput));
  if (!slos.ok()) return Fail(std::string(slos.status().message()));
  config.slos = *slos;
  auto pruning_method = ParsePruningMethod(config.pruning_method);
  if (!pruning_method.ok()) return Fail(std::string(pruning_method.status().message()));
  auto schedule = MakeArrivalSchedule({.num_requests = config.num_prompts,
                                       .request_rate = config.request_rate,
                                       .burstiness = config.burstiness,
                                       .seed = config.seed});
  if (!schedule.ok()) return Fail(std::string(schedule.status().message()));

  auto tls = claa::security::LoadClientTls({.use_tls = absl::GetFlag(FLAGS_tls),
                                            .ca_file = absl::GetFlag(FLAGS_tls_ca_file),
                                            .cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                                            .key_file = absl::GetFlag(FLAGS_tls_key_file),
                                            .server_name = absl::GetFlag(FLAGS_tls_server_name)});
  if (!tls.ok()) return Fail(std::string(tls.status().message()));
  std::vector<std::pair<std::string, std::string>> call_metadata;
  if (const std::string file = absl::GetFlag(FLAGS_auth_token_file); !file.empty()) {
    auto token = claa::security::ReadTokenFile(file);
    if (!token.ok()) return Fail(std::string(token.status().message()));
    call_metadata.emplace_back("authorization", "Bearer " + *token);
  } else if (const char* env = std::getenv("CLAA_AUTH_TOKEN"); env != nullptr && *env != '\0') {
    call_metadata.emplace_back("authorization",
                               absl::StrCat("Bearer ", absl::StripAsciiWhitespace(env)));
  }

  // The model's vocabulary and context length shape the random prompts.
  grpc::ChannelArguments channel_args;
  tls->ApplyTo(channel_args);
  auto channel = grpc::CreateCustomChannel(config.target, tls->credentials, channel_args);
  auto stub = claa::v1::Generation::NewStub(channel);
  claa::v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    for (const auto& [key, value] : call_metadata) ctx.AddMetadata(key, value);
    ctx.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s))));
    grpc::Status status = stub->GetModelInfo(&ctx, claa::v1::GetModelInfoRequest(), &info);
    if (!status.ok()) {
      return Fail(absl::StrCat(
          "GetModelInfo on ", config.target,
          " failed: ", absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
          ": ", status.error_message()));
    }
  }
  config.model_name = info.model_name();

  absl::StatusOr<std::vector<Prompt>> prompts;
  if (config.dataset == "random") {
    RandomDatasetOptions options;
    options.num_prompts = config.num_prompts;
    options.input_len = absl::GetFlag(FLAGS_random_input_len);
    options.output_len = absl::GetFlag(FLAGS_random_output_len);
    options.range_ratio = absl::GetFlag(FLAGS_random_range_ratio);
    options.seed = config.seed;
    options.vocab_size = info.vocab_size();
    prompts = MakeRandomDataset(options);
    if (prompts.ok()) {
      // Refuse up front rather than have every request fail with INVALID_ARGUMENT.
      for (const Prompt& p : *prompts) {
        const int64_t need = static_cast<int64_t>(p.token_ids.size()) + p.max_tokens;
        if (need > info.max_context_length()) {
          return Fail(absl::StrCat("a random prompt needs ", need,
                                   " tokens (input + output), beyond the model's context of ",
                                   info.max_context_length(),
                                   "; lower --random_input_len/--random_output_len"));
        }
      }
    }
  } else {
    prompts = LoadJsonlDataset(config.dataset_path, config.num_prompts,
                               absl::GetFlag(FLAGS_random_output_len));
  }
  if (!prompts.ok()) return Fail(std::string(prompts.status().message()));

  RequestOptions request_options;
  request_options.temperature = absl::GetFlag(FLAGS_temperature);
  request_options.ignore_eos = config.ignore_eos;
  request_options.pruning_method = *pruning_method;
  request_options.keep_ratio = keep_ratio;
  std::vector<claa::v1::GenerateRequest> requests;
  requests.reserve(prompts->size());
  for (const Prompt& p : *prompts) requests.push_back(BuildRequest(p, request_options));

  std::cerr << "claa-loadgen: " << requests.size() << " requests to " << config.target << " (model "
            << info.model_name() << "), rate "
            << (std::isinf(config.request_rate) ? std::string("inf")
                                                : absl::StrCat(config.request_rate))
            << " req/s, burstiness " << config.burstiness << ", max concurrency "
            << (config.max_concurrency > 0 ? absl::StrCat(config.max_concurrency)
                                           : std::string("unlimited"))
            << std::endl;

  RunOptions run_options;
  run_options.arrival_s = *std::move(schedule);
  run_options.max_concurrency = config.max_concurrency;
  run_options.request_timeout = absl::Seconds(timeout_s);
  run_options.metadata = call_metadata;
  RunProgress progress;
  std::optional<ProgressPrinter> printer;
  if (absl::GetFlag(FLAGS_progress)) printer.emplace(&progress, config.num_prompts);
  RunOutput run = RunBenchmark(stub.get(), requests, run_options, &progress);
  if (printer) printer->Stop();

  const BenchmarkMetrics metrics = ComputeMetrics(run.results, run.duration_s, config.slos);
  std::cout << FormatReport(config, metrics) << std::flush;
  const std::string result_json = absl::GetFlag(FLAGS_result_json);
  if (!result_json.empty()) {
    absl::Status written = WriteJsonFile(result_json, ResultJson(config, metrics, run.results));
    if (!written.ok()) return Fail(std::string(written.message()));
  }
  return 0;
}
