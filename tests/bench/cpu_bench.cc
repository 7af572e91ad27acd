// CPU forward-pass benchmark.
//  (a) stories260K greedy decode: batch 1, `--decode_tokens` single-token forwards from BOS,
//      tokens/s as the median over `--decode_runs` runs.
//  (b) prefill of a synthetic Llama shape (default ~1.1B parameters: hidden 2048, 16 layers,
//      32 heads, 8 KV heads, FFN 8192, vocab 32000) with random weights, `--prefill_tokens`
//      tokens in one forward, tokens/s as the median over `--prefill_runs` runs after a warm-up.
//  (c) optional (--synthetic_decode_tokens > 0): batch-1 decode on the synthetic shape.
// Prints a table and one JSON line (prefixed "JSON ") for scripts.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/model/model_loader.h"
#include "engine/runtime/model_runner.h"

ABSL_FLAG(std::string, mode, "decode,prefill",
          "comma-separated subset of decode, prefill, synthetic_decode");
ABSL_FLAG(std::string, model_dir, std::string(CLAA_SOURCE_DIR) + "/../shared/models/stories260K",
          "stories260K directory for the decode benchmark");
ABSL_FLAG(int, decode_tokens, 200, "tokens generated per decode run");
ABSL_FLAG(int, decode_runs, 7, "decode runs (median reported)");
ABSL_FLAG(int, prefill_tokens, 2048, "prompt length of the synthetic prefill");
ABSL_FLAG(int, prefill_runs, 3, "timed prefill runs after one warm-up (median reported)");
ABSL_FLAG(int, synthetic_decode_tokens, 0, "batch-1 decode steps on the synthetic shape");
ABSL_FLAG(int, tp, 1, "tensor-parallel ranks (threads)");
ABSL_FLAG(int, blas_threads, 0, "OpenBLAS threads (0: library default)");
ABSL_FLAG(int, hidden, 2048, "synthetic hidden size");
ABSL_FLAG(int, layers, 16, "synthetic layer count");
ABSL_FLAG(int, heads, 32, "synthetic attention heads");
ABSL_FLAG(int, kv_heads, 8, "synthetic KV heads");
ABSL_FLAG(int, ffn, 8192, "synthetic intermediate size");
ABSL_FLAG(int, vocab, 32000, "synthetic vocabulary");

namespace claa {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

// Greedy single-token decode of `steps` tokens after feeding `prompt`; returns seconds.
absl::StatusOr<double> TimeDecode(ModelRunner& runner, std::vector<int32_t> prompt, int steps,
                                  std::vector<int32_t>* generated) {
  SequenceKv kv(runner.config().num_layers);
  std::vector<float> logits;
  std::vector<int32_t> feed = std::move(prompt);
  generated->clear();
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    absl::Status s =
        ReserveTokens(runner.block_manager(), &kv, kv.num_positions + int(feed.size()));
    if (s.ok()) {
      ForwardItem item{&kv, feed, kv.num_positions};
      s = runner.Forward({&item, 1}, &logits);
    }
    if (!s.ok()) {
      ReleaseSequence(runner.block_manager(), &kv);
      return s;
    }
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated->push_back(next);
    feed = {next};
  }
  const double secs = Seconds(t0, Clock::now());
  ReleaseSequence(runner.block_manager(), &kv);
  return secs;
}

ModelConfig SyntheticConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.hidden_size = absl::GetFlag(FLAGS_hidden);
  c.num_layers = absl::GetFlag(FLAGS_layers);
  c.num_heads = absl::GetFlag(FLAGS_heads);
  c.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  c.head_dim = c.hidden_size / c.num_heads;
  c.intermediate_size = absl::GetFlag(FLAGS_ffn);
  c.vocab_size = absl::GetFlag(FLAGS_vocab);
  c.max_position_embeddings = std::max(4096, absl::GetFlag(FLAGS_prefill_tokens) +
                                                 absl::GetFlag(FLAGS_synthetic_decode_tokens) + 1);
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = false;
  return c;
}

int64_t ParamCount(const ModelConfig& c) {
  const int64_t h = c.hidden_size, d = c.head_dim;
  const int64_t per_layer = h * c.num_heads * d * 2 + h * c.num_kv_heads * d * 2 +
                            3 * h * c.intermediate_size + 2 * h;
  return per_layer * c.num_layers + 2 * int64_t(c.vocab_size) * h + h;
}

int Main() {
  const int tp = absl::GetFlag(FLAGS_tp);
  if (absl::GetFlag(FLAGS_decode_runs) < 1 || absl::GetFlag(FLAGS_prefill_runs) < 1 ||
      absl::GetFlag(FLAGS_decode_tokens) < 1 || absl::GetFlag(FLAGS_prefill_tokens) < 1) {
    std::fprintf(stderr, "error: run and token counts must be >= 1\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_blas_threads) > 0) {
    openblas_set_num_threads(absl::GetFlag(FLAGS_blas_threads));
  }
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const std::vector<std::string> modes = absl::StrSplit(mode, ',', absl::SkipEmpty());
  auto wants = [&](const char* m) { return std::find(modes.begin(), modes.end(), m) != modes.end(); };

  std::string cpu = "unknown";
  {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("model name", 0) == 0) {
        cpu = line.substr(line.find(':') + 2);
        break;
      }
    }
  }
  std::printf("machine: %s, %u hardware threads\n", cpu.c_str(),
              std::thread::hardware_concurrency());
  std::printf("BLAS: %s | core %s | %d threads | tp=%d\n", openblas_get_config(),
              openblas_get_corename(), openblas_get_num_threads(), tp);

  std::vector<std::string> json;
  json.push_back(absl::StrFormat("\"cpu\":\"%s\",\"hw_threads\":%d,\"blas\":\"%s\","
                                 "\"blas_threads\":%d,\"tp\":%d",
                                 cpu, std::thread::hardware_concurrency(), openblas_get_config(),
                                 openblas_get_num_threads(), tp));
  std::vector<std::string> table;

  if (wants("decode")) {
    const std::string dir = absl::GetFlag(FLAGS_model_dir);
    auto runner = ModelRunner::Create([&](TpShard s) { return LoadModelDir(dir, s); }, tp,
                                      RunnerOptions{64, 16});
    if (!runner.ok()) return Fail(runner.status());
    const int steps = absl::GetFlag(FLAGS_decode_tokens);
    const int bos = (*runner)->config().bos_token_id.value_or(1);
    std::vector<double> rates;
    std::vector<int32_t> generated;
    for (int r = 0; r < absl::GetFlag(FLAGS_decode_runs); ++r) {
      auto secs = TimeDecode(**runner, {bos}, steps, &generated);
      if (!secs.ok()) return Fail(secs.status());
      rates.push_back(steps / *secs);
    }
    const double med = Median(rates);
    table.push_back(absl::StrFormat("| stories260K decode (batch 1, %d tok from BOS) | %10.1f tok/s | "
                                    "min %.1f max %.1f over %d runs |",
                                    steps, med, *std::min_element(rates.begin(), rates.end()),
                                    *std::max_element(rates.begin(), rates.end()), rates.size()));
    json.push_back(absl::StrFormat("\"stories260k_decode_tok_s\":%.2f,\"decode_tokens\":%d,"
                                   "\"decode_runs\":%d",
                                   med, steps, rates.size()));
  }

  const bool prefill = wants("prefill");
  const int syn_decode = absl::GetFlag(FLAGS_synthetic_decode_tokens);
  if (prefill || (wants("synthetic_decode") && syn_decode > 0)) {
    const ModelConfig c = SyntheticConfig();
    const int n = absl::GetFlag(FLAGS_prefill_tokens);
    const int64_t params = ParamCount(c);
    std::printf("synthetic model: hidden %d, %d layers, %d heads / %d KV heads, ffn %d, vocab %d "
                "= %.3fB parameters (fp32 %.2f GB)\n",
                c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.intermediate_size,
                c.vocab_size, params / 1e9, params * 4 / 1e9);
    const int block_size = 16;
    const int blocks = (std::max(n, syn_decode + 1) + block_size - 1) / block_size + 1;
    const auto t0 = Clock::now();
    auto runner = ModelRunner::Create(
        [&](TpShard s) -> absl::StatusOr<ModelWeights> { return MakeRandomWeights(c, 2026, s); },
        tp, RunnerOptions{blocks, block_size});
    if (!runner.ok()) return Fail(runner.status());
    const double build_s = Seconds(t0, Clock::now());
    std::printf("random weights built in %.1f s\n", build_s);
    json.push_back(absl::StrFormat("\"synthetic_params\":%d,\"weights_build_s\":%.2f", params,
                                   build_s));

    if (prefill) {
      std::vector<int32_t> prompt(n);
      for (int i = 0; i < n; ++i) prompt[i] = (i * 7919 + 13) % c.vocab_size;
      std::vector<double> secs, cpu_secs;
      std::vector<float> logits;
      for (int r = 0; r <= absl::GetFlag(FLAGS_prefill_runs); ++r) {
        SequenceKv kv(c.num_layers);
        absl::Status s = ReserveTokens((*runner)->block_manager(), &kv, n);
        if (!s.ok()) return Fail(s);
        ForwardItem item{&kv, prompt, 0};
        const auto a = Clock::now();
        const std::clock_t cpu0 = std::clock();
        s = (*runner)->Forward({&item, 1}, &logits);
        const double t = Seconds(a, Clock::now());
        // Process CPU time (all threads): on a shared, busy machine it moves far less than wall.
        const double cpu = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
        ReleaseSequence((*runner)->block_manager(), &kv);
        if (!s.ok()) return Fail(s);
        std::printf("  prefill run %d%s: %.2f s wall, %.2f s CPU\n", r, r == 0 ? " (warm-up)" : "",
                    t, cpu);
        if (r > 0) {
          secs.push_back(t);
          cpu_secs.push_back(cpu);
        }
      }
      const double med = Median(secs);
      // Matmul FLOPs (2 per MAC, non-embedding weights + LM head on the last token) plus causal
      // attention (QK^T and PV over n^2/2 pairs per head).
      const double linear = 2.0 * (params - 2.0 * c.vocab_size * c.hidden_size) * n +
                            2.0 * c.vocab_size * c.hidden_size;
      const double attn = 2.0 * 2.0 * c.num_layers * c.num_heads * c.head_dim * 0.5 * n * n;
      const double gflops = (linear + attn) / med / 1e9;
      table.push_back(absl::StrFormat(
          "| synthetic %.2fB prefill (%d tok, tp=%d)        | %10.1f tok/s | %.2f s median of %d "
          "(best %.2f s), ~%.0f GFLOP/s, %.1f CPU-s/run |",
          params / 1e9, n, tp, n / med, med, secs.size(),
          *std::min_element(secs.begin(), secs.end()), gflops, Median(cpu_secs)));
      json.push_back(absl::StrFormat("\"prefill_tokens\":%d,\"prefill_tok_s\":%.2f,"
                                     "\"prefill_s\":%.3f,\"prefill_runs\":%d,\"prefill_gflops\":%.1f,"
                                     "\"prefill_best_s\":%.3f,\"prefill_cpu_s\":%.2f",
                                     n, n / med, med, secs.size(), gflops,
                                     *std::min_element(secs.begin(), secs.end()),
                                     Median(cpu_secs)));
    }
    if (wants("synthetic_decode") && syn_decode > 0) {
      std::vector<int32_t> generated;
      auto secs = TimeDecode(**runner, {1}, syn_decode, &generated);
      if (!secs.ok()) return Fail(secs.status());
      table.push_back(absl::StrFormat("| synthetic decode (batch 1, %d tok)            | %10.2f tok/s |",
                                      syn_decode, syn_decode / *secs));
      json.push_back(absl::StrFormat("\"synthetic_decode_tok_s\":%.3f", syn_decode / *secs));
    }
  }

  std::printf("\n| benchmark | throughput | notes |\n|---|---|---|\n");
  for (const auto& row : table) std::printf("%s\n", row.c_str());
  std::printf("JSON {%s}\n", absl::StrJoin(json, ",").c_str());
  return 0;
}

}  // namespace
}  // namespace claa

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // Progress lines show up even when piped.
  return claa::Main();
}
