// KV handoff over NCCL between two GPUs (disaggregation issue): a prefill on GPU 0, the compact
// KV cache sent to GPU 1 (engine/gpu/kv_transfer.h), the first decode step there. Llama-3.1-8B
// shape, random bf16 weights (the same on both GPUs), batch 1, prompts of --lengths tokens,
// Full KV and CLAA at keep 0.2. Reports per point the median over --runs of: prefill ms
// (prompt in -> logits on the host), transfer ms and GB/s (gather + send on GPU 0, receive +
// scatter on GPU 1, both ends done), first decode step ms on GPU 1, and their sum: the TTFT of a
// disaggregated request without queueing. Checks that the decode step on GPU 1 gives
// bit-identical logits to the same step on GPU 0 (same kernels over an exact copy of the cache);
// exits non-zero otherwise. Writes gpu_kv_transfer.{json,md} to --out.
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/kv_transfer.h"
#include "engine/gpu/nccl_group.h"
#include "nlohmann/json.hpp"
#include "tests/bench/gpu_bench_util.h"

ABSL_FLAG(std::string, lengths, "8192,32768", "prompt lengths");
ABSL_FLAG(std::string, methods, "full,claa:0.2", "method:keep list");
ABSL_FLAG(int, runs, 5, "timed runs per point (median reported)");
ABSL_FLAG(int, warmups, 1, "untimed runs first");
ABSL_FLAG(int, layers, 32, "decoder layers (32 = Llama-3.1-8B)");
ABSL_FLAG(std::string, out, ".", "folder for gpu_kv_transfer.json / .md");

namespace claa::gpu {
namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Argmax(const std::vector<float>& v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

std::unique_ptr<CudaLlamaModel> MakeModel(const ModelConfig& config, int device, int blocks) {
  BENCH_CUDA(cudaSetDevice(device));
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  GpuModelOptions opts;
  opts.device = device;
  opts.block_size = 16;
  opts.num_blocks = blocks;
  // Same seed on both GPUs: identical weights, so the decode GPU continues the prefill's model.
  auto weights = RandomDeviceWeights(config, 42, 0.02f, stream);
  BENCH_CHECK(weights.status());
  auto model = CudaLlamaModel::Create(config, std::move(*weights), opts, stream);
  BENCH_CHECK(model.status());
  return std::move(*model);
}

int Main() {
  std::vector<int> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(s, &v)) lengths.push_back(v);
  }
  int devices = 0;
  BENCH_CUDA(cudaGetDeviceCount(&devices));
  if (devices < 2) {
    std::fprintf(stderr, "needs 2 GPUs, %d visible\n", devices);
    return 1;
  }
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  const ModelConfig config = Llama31_8B(absl::GetFlag(FLAGS_layers));
  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  const int blocks = max_len / 16 + 16;
  auto prefill = MakeModel(config, 0, blocks);
  // The decode GPU's pool is twice as large and the sequence lands at other block ids, so the
  // transfer is checked to remap blocks, not to copy pools.
  auto decode = MakeModel(config, 1, 2 * blocks);
  auto group = NcclGroup::Create(0, 2);
  BENCH_CHECK(group.status());
  NcclKvLink sender(prefill.get(), (*group)->comm(0), 1);
  NcclKvLink receiver(decode.get(), (*group)->comm(1), 0);
  const std::string device = absl::StrFormat("2 x %s (%d SMs), NCCL", prop.name,
                                             prop.multiProcessorCount);
  std::printf("device: %s\n", device.c_str());

  nlohmann::json out;
  out["device"] = device;
  std::string md = absl::StrFormat(
      "Device: %s. Llama-3.1-8B shape (%d layers), random bf16 weights, batch 1; median of %d "
      "runs after %d warm-up(s), host clock, every step synchronous.\n\n"
      "| prompt | method | kept tokens | KV moved | prefill (GPU 0) | transfer | GB/s | first "
      "decode (GPU 1) | TTFT sum | GPU 1 logits = GPU 0 |\n|---|---|---|---|---|---|---|---|---|---|\n",
      device, config.num_layers, absl::GetFlag(FLAGS_runs), absl::GetFlag(FLAGS_warmups));
  bool all_identical = true;
  for (int len : lengths) {
    std::vector<int32_t> prompt(len);
    for (int i = 0; i < len; ++i) prompt[i] = int32_t((uint64_t(i) * 2654435761u) % 128000) + 1;
    for (absl::string_view spec : absl::StrSplit(absl::GetFlag(FLAGS_methods), ',')) {
      std::vector<std::string> parts = absl::StrSplit(spec, ':');
      auto method = ParsePruningMethod(parts[0]);
      BENCH_CHECK(method.status());
      double keep = 1.0;
      if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &keep)) keep = 1.0;
      PrefillOptions options;
      PrefillReport report;
      options.pruning = *method == PruningMethod::kFull
                            ? PruningConfig{}
                            : DefaultPruningConfig(*method, config.num_layers, keep);
      options.report = &report;
      const std::string label = *method == PruningMethod::kFull
                                    ? std::string("Full KV")
                                    : absl::StrFormat("%s %.1f", parts[0], keep);
      std::vector<double> t_prefill, t_transfer, t_decode;
      size_t bytes = 0;
      std::vector<float> logits0, logits1;
      SequenceKv seq0(config.num_layers), seq1(config.num_layers);
      int token = 0;
      const int runs = absl::GetFlag(FLAGS_runs), warmups = absl::GetFlag(FLAGS_warmups);
      for (int r = 0; r < warmups + runs; ++r) {
        seq0 = SequenceKv(config.num_layers);
        seq1 = SequenceKv(config.num_layers);
        for (int b = 0; b < (len + 16) / 16 + 1; ++b) {
          seq0.blocks.push_back(b);
          seq1.blocks.push_back(blocks + b);
        }
        const auto t0 = Clock::now();
        ForwardItem item{&seq0, prompt, 0, &options};
        BENCH_CHECK(prefill->Forward(absl::MakeConstSpan(&item, 1), &logits0, false));
        const auto t1 = Clock::now();
        absl::Status send_status, recv_status;
        std::thread send([&] { send_status = sender.Send(seq0); });
        recv_status = receiver.Recv(seq0.layer_lengths, seq0.num_positions, &seq1);
        send.join();
        BENCH_CHECK(send_status);
        BENCH_CHECK(recv_status);
        const auto t2 = Clock::now();
        token = Argmax(logits0);
        const std::vector<int32_t> next{token};  // ForwardItem holds a span: keep it alive
        ForwardItem step{&seq1, next, seq1.num_positions, nullptr};
        BENCH_CHECK(decode->Forward(absl::MakeConstSpan(&step, 1), &logits1, false));
        const auto t3 = Clock::now();
        if (r >= warmups) {
          t_prefill.push_back(Ms(t0, t1));
          t_transfer.push_back(Ms(t1, t2));
          t_decode.push_back(Ms(t2, t3));
        }
        bytes = KvTransferBytes(prefill->local_config(), seq0.layer_lengths);
      }
      // The same decode step on the prefill GPU, over the cache that was sent.
      std::vector<float> logits0_step;
      const std::vector<int32_t> next{token};
      ForwardItem step0{&seq0, next, seq0.num_positions, nullptr};
      BENCH_CHECK(prefill->Forward(absl::MakeConstSpan(&step0, 1), &logits0_step, false));
      const bool identical =
          logits0_step.size() == logits1.size() &&
          std::memcmp(logits0_step.data(), logits1.data(), logits1.size() * sizeof(float)) == 0;
      all_identical = all_identical && identical;
      const double p = Median(t_prefill), t = Median(t_transfer), d = Median(t_decode);
      const double gbps = bytes / (t * 1e-3) / 1e9;
      const int kept = report.kept_tokens.empty() ? len : int(report.kept_tokens.size());
      std::printf("%6d %-10s kept %6d  KV %8.1f MB  prefill %8.2f ms  transfer %7.2f ms (%6.1f "
                  "GB/s)  decode %6.2f ms  TTFT %8.2f ms  identical %s\n",
                  len, label.c_str(), kept, bytes / 1e6, p, t, gbps, d, p + t + d,
                  identical ? "yes" : "NO");
      out["points"].push_back({{"length", len}, {"method", label}, {"kept_tokens", kept},
                               {"kv_bytes", bytes}, {"prefill_ms", p}, {"transfer_ms", t},
                               {"transfer_gbps", gbps}, {"first_decode_ms", d},
                               {"ttft_ms", p + t + d}, {"identical_logits", identical}});
      md += absl::StrFormat("| %dk | %s | %d | %.1f MB | %.1f ms | %.2f ms | %.1f | %.2f ms | "
                            "%.1f ms | %s |\n",
                            len / 1024, label, kept, bytes / 1e6, p, t, gbps, d, p + t + d,
                            identical ? "yes" : "**no**");
    }
  }
  WriteResults(absl::GetFlag(FLAGS_out), "gpu_kv_transfer", out, md);
  return all_identical ? 0 : 1;
}

}  // namespace
}  // namespace claa::gpu

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return claa::gpu::Main();
}
