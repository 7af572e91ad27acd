// AttnCache on the GPU (AttnCache issue, DESIGN.md §3): the same prefill-only forward with the
// cache off, as an inserting miss (maps captured on the device and copied to the host), and as
// a hit on those maps -- resident in GPU memory (hot) or copied from the host store first
// (cold). Reports end-to-end milliseconds, the attention block (everything a hit replaces: QKV
// GEMM, RoPE, K/V writes, attention; on a hit the V-only GEMM and A @ V), and how far the hit's
// logits are from the uncached ones (the same input, so only bf16 rounding of the maps).
//
//   gpu_attncache_bench --shape=small --lengths=512,1024,2048 [--runs=10] [--out=DIR]
//
// Shapes (random bf16 weights drawn on the GPU): small = the CPU benchmark's synthetic model
// (tests/bench/attn_cache_bench.cc: hidden 2048, 8 layers, 32 heads / 8 KV heads, FFN 5632);
// 8b = Llama-3.1-8B (--layers to cut it). Baseline: the cache-off forward in the same run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/attncache/attention_reuse.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/device_weights.h"
#include "nlohmann/json.hpp"
#include "tests/bench/gpu_bench_util.h"

ABSL_FLAG(std::string, shape, "small", "small (the CPU benchmark's model) or 8b");
ABSL_FLAG(int, layers, 0, "decoder layers (0: the shape's own)");
ABSL_FLAG(std::string, lengths, "512,1024,2048", "prompt lengths");
ABSL_FLAG(int, runs, 10, "timed runs per point (median reported)");
ABSL_FLAG(int, warmups, 2, "untimed runs first");
ABSL_FLAG(std::string, out, ".", "folder for gpu_attncache.json / gpu_attncache.md");

namespace claa::gpu {
namespace {

ModelConfig SmallShape(int layers) {
  ModelConfig c = Llama31_8B(layers > 0 ? layers : 8);
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.rope_scaling = RopeScaling{};
  c.rope_theta = 10000.0;
  return c;
}

// Wall-clock milliseconds of fn() (Forward returns once its results are on the host): median
// of `runs` after `warmups`.
template <typename Fn>
double WallMs(int warmups, int runs, Fn fn) {
  std::vector<double> ms;
  for (int r = 0; r < warmups + runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double t = std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - t0).count();
    if (r >= warmups) ms.push_back(t);
  }
  return Median(ms);
}

// Milliseconds of the attention block in the last (profiled) forward.
double AttentionBlockMs(const CudaLlamaModel& model) {
  auto profile = model.LastProfile();
  BENCH_CHECK(profile.status());
  double ms = 0;
  for (const auto& [name, group_ms] : *profile) {
    if (name == "qkv gemm" || name == "rope" || name == "kv write" || name == "attention") {
      ms += group_ms;
    }
  }
  return ms;
}

struct Compared {
  double rel_l2 = 0;
  bool same_top1 = false;
};
Compared CompareLogits(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += double(a[i] - ref[i]) * (a[i] - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return {std::sqrt(num / std::max(den, 1e-30)),
          std::max_element(a.begin(), a.end()) - a.begin() ==
              std::max_element(ref.begin(), ref.end()) - ref.begin()};
}

int Main() {
  std::vector<int> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(s, &v) || v <= 0) {
      std::fprintf(stderr, "bad --lengths entry '%s'\n", std::string(s).c_str());
      return 2;
    }
    lengths.push_back(v);
  }
  const std::string shape = absl::GetFlag(FLAGS_shape);
  if (shape != "small" && shape != "8b") {
    std::fprintf(stderr, "--shape must be small or 8b\n");
    return 2;
  }
  const int layers = absl::GetFlag(FLAGS_layers);
  const ModelConfig config = shape == "8b" ? Llama31_8B(layers > 0 ? layers : 32)
                                           : SmallShape(layers);
  const int runs = absl::GetFlag(FLAGS_runs), warmups = absl::GetFlag(FLAGS_warmups);

  BENCH_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  const std::string device = absl::StrFormat("%s (%d SMs, %.0f GiB)", prop.name,
                                             prop.multiProcessorCount,
                                             double(prop.totalGlobalMem) / (1 << 30));
  std::printf("device: %s\nmodel: %s shape, %d layers, hidden %d, %d heads / %d KV heads, "
              "head_dim %d, FFN %d\n",
              device.c_str(), shape.c_str(), config.num_layers, config.hidden_size,
              config.num_heads, config.num_kv_heads, config.head_dim, config.intermediate_size);

  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  GpuModelOptions opts;
  opts.block_size = 16;
  opts.num_blocks = max_len / 16 + 16;
  opts.attention_map_bytes = size_t(prop.totalGlobalMem) / 3;
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto weights = RandomDeviceWeights(config, 42, 0.02f, stream, 0);
  BENCH_CHECK(weights.status());
  auto created = CudaLlamaModel::Create(config, std::move(*weights), opts, stream);
  BENCH_CHECK(created.status());
  CudaLlamaModel& model = **created;

  nlohmann::json out;
  out["device"] = device;
  out["shape"] = shape;
  out["layers"] = config.num_layers;
  out["runs"] = runs;
  std::string md = absl::StrFormat(
      "Device: %s. Model: %s shape (%d layers, hidden %d, %d/%d heads, head_dim %d), random "
      "bf16 weights. Median of %d runs; baseline = cache off, same run.\n\n"
      "| tokens | off ms | hit (resident) ms | e2e speedup | attention block off -> hit ms | "
      "attention speedup | cold hit ms | inserting miss ms | hit logits relL2 / same top-1 | "
      "maps per entry: fp16 store / dense bf16 on the GPU |\n|---|---|---|---|---|---|---|---|---|---|\n",
      device, shape, config.num_layers, config.hidden_size, config.num_heads,
      config.num_kv_heads, config.head_dim, runs);
  std::printf("\n%-7s %9s %9s %7s %17s %7s %9s %9s %9s\n", "tokens", "off ms", "hit ms", "e2e x",
              "attn off->hit ms", "attn x", "cold ms", "insert ms", "relL2");
  for (const int n : lengths) {
    std::vector<int32_t> prompt(n);
    for (int i = 0; i < n; ++i) prompt[i] = int32_t((uint64_t(i) * 2654435761u) % 30000) + 1;
    SequenceKv kv(config.num_layers);
    for (int b = 0; b < (n + 15) / 16; ++b) kv.blocks.push_back(b);
    auto run = [&](AttentionReuse* reuse, std::vector<float>* logits) {
      std::fill(kv.layer_lengths.begin(), kv.layer_lengths.end(), 0);
      kv.num_positions = 0;
      ForwardItem item{&kv, prompt, 0, nullptr, reuse};
      BENCH_CHECK(model.Forward(absl::MakeConstSpan(&item, 1), logits, false));
    };
    auto profiled = [&](AttentionReuse* reuse) {
      std::vector<float> logits;
      model.set_profiling(true);
      run(reuse, &logits);
      model.set_profiling(false);
      return AttentionBlockMs(model);
    };

    std::vector<float> off_logits, hit_logits;
    const double off_ms = WallMs(warmups, runs, [&] { run(nullptr, &off_logits); });
    const double off_attn = profiled(nullptr);

    // Inserting miss: capture on the device, maps copied into the host buffer.
    attncache::AttentionCapture capture(config.num_layers, config.num_heads, n);
    const double insert_ms = WallMs(1, std::max(1, runs / 2), [&] {
      std::vector<float> logits;
      run(&capture, &logits);
    });

    // Hot hit: the maps stay resident after the first use (key 1 + n per length).
    attncache::CachedAttention hot(capture.view(), /*key=*/1000000 + n);
    const double hit_ms = WallMs(warmups, runs, [&] { run(&hot, &hit_logits); });
    const double hit_attn = profiled(&hot);
    // A @ V split into 1..16 row-block GEMMs (fewer: more of the zero triangle read; more:
    // smaller GEMMs); the default is 512-row blocks, at most 4.
    std::string sweep;
    for (const int blocks : {1, 2, 4, 8, 16}) {
      model.set_maps_row_blocks(blocks);
      std::vector<float> warm;
      run(&hot, &warm);
      sweep += absl::StrFormat(" %d:%.2f", blocks, profiled(&hot));
    }
    model.set_maps_row_blocks(0);
    std::printf("  hit attention block ms by A @ V row blocks:%s\n", sweep.c_str());
    out["row_block_sweep"][std::to_string(n)] = sweep;
    // Cold hit: key -1, so every use copies the maps from host memory first.
    attncache::CachedAttention cold(capture.view(), /*key=*/-1);
    const double cold_ms = WallMs(1, std::max(1, runs / 2), [&] {
      std::vector<float> logits;
      run(&cold, &logits);
    });
    const Compared cmp = CompareLogits(hit_logits, off_logits);
    const double maps_gb = capture.shape().bytes() / 1e9;
    const double dense_gb =
        double(config.num_layers) * config.num_heads * double(n) * n * 2 / 1e9;

    std::printf("%-7d %9.2f %9.2f %7.2f %8.2f -> %6.2f %7.2f %9.2f %9.2f %9.2e%s\n", n, off_ms,
                hit_ms, off_ms / hit_ms, off_attn, hit_attn, off_attn / hit_attn, cold_ms,
                insert_ms, cmp.rel_l2, cmp.same_top1 ? "" : " (top-1 differs)");
    md += absl::StrFormat(
        "| %d | %.2f | %.2f | **%.2fx** | %.2f -> %.2f | **%.2fx** | %.2f | %.2f | %.1e / %s | "
        "%.2f / %.2f GB |\n",
        n, off_ms, hit_ms, off_ms / hit_ms, off_attn, hit_attn, off_attn / hit_attn, cold_ms,
        insert_ms, cmp.rel_l2, cmp.same_top1 ? "yes" : "no", maps_gb, dense_gb);
    out["lengths"][std::to_string(n)] = {
        {"off_ms", off_ms},           {"hit_ms", hit_ms},
        {"e2e_speedup", off_ms / hit_ms},
        {"attention_off_ms", off_attn}, {"attention_hit_ms", hit_attn},
        {"attention_speedup", off_attn / hit_attn},
        {"cold_hit_ms", cold_ms},     {"inserting_miss_ms", insert_ms},
        {"hit_logits_rel_l2", cmp.rel_l2}, {"hit_same_top1", cmp.same_top1},
        {"maps_gb", maps_gb},         {"dense_gb", dense_gb}};
  }
  WriteResults(absl::GetFlag(FLAGS_out), "gpu_attncache", out, md);
  return 0;
}

}  // namespace
}  // namespace claa::gpu

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return claa::gpu::Main();
}
