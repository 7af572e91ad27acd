// GPU prefill benchmark (issue 4): Llama-3.1-8B shape with random bf16 weights drawn on the GPU,
// batch 1, prompts of --lengths tokens. For each length: TTFT (prompt in -> logits of the last
// token on the host) of Full KV, CLAA at keep 0.1 / 0.2 / 0.4, FastKV and GemFilter (keep 0.2),
// as the median of --runs after --warmups (CUDA events on the model's stream around Forward,
// which returns once the logits are on the host); MFU of Full KV against the bf16 GEMM peak
// measured in the same run (cuBLASLt, 8192^3); the prefill attention kernel's TFLOP/s
// (causal: 4 s^2 d heads / 2 flops); and, when --hf_json names the output of
// tests/bench/hf_prefill_baseline.py run on the same GPU just before, HF transformers' TTFT.
// With --tp=N the model is split over GPUs 0..N-1 (NCCL tensor parallelism, TpGroupModel): TTFT
// is then the whole group's, MFU is against N times the measured peak, and the profile (rank 0's
// stream) shows the all-reduce share. Writes gpu_prefill.json and gpu_prefill.md (with --tp > 1:
// gpu_prefill_tpN.*) to --out.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/nccl_group.h"
#include "engine/gpu/tp_group_model.h"
#include "kernels/kernels.h"
#include "kernels/model_kernels.h"
#include "nlohmann/json.hpp"
#include "tests/bench/gpu_bench_util.h"

ABSL_FLAG(std::string, lengths, "4096,8192,16384,32768", "prompt lengths");
ABSL_FLAG(std::string, methods,
          "full,claa:0.1,claa:0.2,claa:0.4,fastkv:0.2,gemfilter:0.2,full_packed",
          "method:keep list (full has no keep; full_packed = Full KV with K/V packed before "
          "attention, an A/B of the attention operand layout)");
ABSL_FLAG(int, runs, 5, "timed runs per point (median reported)");
ABSL_FLAG(int, warmups, 2, "untimed runs first");
ABSL_FLAG(int, layers, 0, "decoder layers (0: the shape's own, 32 for 8b, 80 for 70b)");
ABSL_FLAG(std::string, shape, "8b", "model shape: 8b (Llama-3.1-8B) or 70b (Llama-3.1-70B)");
ABSL_FLAG(std::string, out, ".", "folder for gpu_prefill.json / gpu_prefill.md");
ABSL_FLAG(std::string, hf_json, "", "hf_prefill_baseline.py output to merge (optional)");
ABSL_FLAG(int, tp, 1, "tensor-parallel GPUs (devices 0..tp-1, NCCL)");
ABSL_FLAG(bool, attention, true, "also time the attention kernel alone per length");

namespace claa::gpu {
namespace {

// Times fn() on `stream` with events: median milliseconds of `runs` after `warmups`.
template <typename Fn>
double TimeMs(cudaStream_t stream, int warmups, int runs, Fn fn) {
  cudaEvent_t a, b;
  BENCH_CUDA(cudaEventCreate(&a));
  BENCH_CUDA(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int r = 0; r < warmups + runs; ++r) {
    BENCH_CUDA(cudaEventRecord(a, stream));
    fn();
    BENCH_CUDA(cudaEventRecord(b, stream));
    BENCH_CUDA(cudaEventSynchronize(b));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, a, b));
    if (r >= warmups) ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Median(ms);
}

// bf16 GEMM peak of this GPU as cuBLASLt delivers it (8192^3, random operands, rotating
// between two operand sets so that L2 does not serve repeats).
double MeasureGemmPeak(cudaStream_t stream) {
  const int n = 8192;
  const size_t elems = size_t(n) * n;
  DeviceBuffer a[2], w[2], c;
  for (int i = 0; i < 2; ++i) {
    BENCH_CHECK(a[i].Reserve(elems * 2));
    BENCH_CHECK(w[i].Reserve(elems * 2));
    BENCH_CHECK(FillUniformBf16(a[i].get<Bf16>(), elems, 100 + i, -1, 1, stream));
    BENCH_CHECK(FillUniformBf16(w[i].get<Bf16>(), elems, 200 + i, -1, 1, stream));
  }
  BENCH_CHECK(c.Reserve(elems * 2));
  auto gemm = BlasLtGemm::Create();
  BENCH_CHECK(gemm.status());
  int k = 0;
  const double ms = TimeMs(stream, 3, 10, [&] {
    BENCH_CHECK((*gemm)->Run(a[k].get<Bf16>(), n, w[k].get<Bf16>(), n, c.get<Bf16>(), n, n, n, n,
                             0.f, stream));
    k ^= 1;
  });
  return 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
}

// The prefill attention kernel alone: causal, 32 query / 8 KV heads, d 128, batch 1. Layout
// "contiguous": q, k, v in their own buffers (rows of 4096 / 1024 / 1024); "qkv": as the model
// calls it, columns of one fused [s, 6144] QKV buffer (12 KB row stride).
std::pair<double, double> MeasureAttention(int s, bool fused_qkv, cudaStream_t stream) {
  const int heads = 32, kv_heads = 8, d = 128;
  const int64_t q_dim = heads * d, kv_dim = kv_heads * d, qkv_dim = q_dim + 2 * kv_dim;
  DeviceBuffer buf, o, cu;
  BENCH_CHECK(buf.Reserve(size_t(s) * qkv_dim * 2));
  BENCH_CHECK(o.Reserve(size_t(s) * q_dim * 2));
  BENCH_CHECK(cu.Reserve(2 * sizeof(int32_t)));
  BENCH_CHECK(FillUniformBf16(buf.get<Bf16>(), size_t(s) * qkv_dim, 1, -2, 2, stream));
  const int32_t host_cu[2] = {0, s};
  BENCH_CUDA(cudaMemcpy(cu.get(), host_cu, sizeof(host_cu), cudaMemcpyHostToDevice));
  Bf16* base = buf.get<Bf16>();
  VarlenAttentionArgs a;
  if (fused_qkv) {
    a.q = base;
    a.k = base + q_dim;
    a.v = base + q_dim + kv_dim;
    a.q_stride = a.k_stride = a.v_stride = qkv_dim;
  } else {
    a.q = base;
    a.k = base + size_t(s) * q_dim;
    a.v = base + size_t(s) * (q_dim + kv_dim);
    a.q_stride = q_dim;
    a.k_stride = a.v_stride = kv_dim;
  }
  a.out = o.get<Bf16>();
  a.out_stride = q_dim;
  a.cu_seqlens_q = cu.get<int32_t>();
  a.batch = 1;
  a.max_seqlen_q = s;
  a.num_heads = heads;
  a.num_kv_heads = kv_heads;
  a.head_dim = d;
  a.scale = 1.0f / std::sqrt(float(d));
  const double ms =
      TimeMs(stream, 2, 7, [&] { BENCH_CHECK(FlashAttentionPrefill(a, stream)); });
  const double flops = 4.0 * double(s) * s * d * heads / 2;
  return {ms, flops / (ms * 1e-3) / 1e12};
}

// Model FLOPs of a full prefill of s tokens (GEMMs + causal attention + the LM head's one row).
double PrefillFlops(const ModelConfig& c, int s) {
  const double h = c.hidden_size, q = double(c.num_heads) * c.head_dim,
               kv = double(c.num_kv_heads) * c.head_dim, f = c.intermediate_size;
  const double gemm = 2.0 * s * (h * (q + 2 * kv) + q * h + h * 2 * f + f * h);
  const double attn = 4.0 * double(s) * s * c.head_dim * c.num_heads / 2;
  return c.num_layers * (gemm + attn) + 2.0 * h * c.vocab_size;
}

struct Method {
  std::string label;
  PruningMethod method;
  double keep;
  bool pack_kv = false;  // "full_packed": CudaLlamaModel::set_pack_kv (A/B)
};

int Main() {
  std::vector<int> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(s, &v)) lengths.push_back(v);
  }
  std::vector<Method> methods;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_methods), ',')) {
    std::vector<std::string> parts = absl::StrSplit(s, ':');
    if (parts[0] == "full_packed") {
      methods.push_back({"Full KV packed", PruningMethod::kFull, 1.0, true});
      continue;
    }
    auto m = ParsePruningMethod(parts[0]);
    BENCH_CHECK(m.status());
    double keep = 1.0;
    if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &keep)) keep = 1.0;
    methods.push_back({*m == PruningMethod::kFull ? "Full KV"
                                                  : absl::StrFormat("%s %.1f", parts[0], keep),
                       *m, keep});
  }
  const int runs = absl::GetFlag(FLAGS_runs), warmups = absl::GetFlag(FLAGS_warmups);

  BENCH_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  const std::string device = absl::StrFormat("%s (%d SMs, %.0f GiB), driver CUDA %d.%d, runtime %d.%d",
                                             prop.name, prop.multiProcessorCount,
                                             double(prop.totalGlobalMem) / (1 << 30),
                                             driver / 1000, (driver % 1000) / 10,
                                             runtime / 1000, (runtime % 1000) / 10);
  std::printf("device: %s\n", device.c_str());
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const double peak = MeasureGemmPeak(stream);
  std::printf("bf16 GEMM peak (cuBLASLt 8192^3): %.1f TFLOP/s\n", peak);
  nlohmann::json out;
  out["device"] = device;
  out["gemm_peak_tflops"] = peak;
  out["runs"] = runs;
  out["warmups"] = warmups;
  const int tp = absl::GetFlag(FLAGS_tp);
  out["tp"] = tp;
  for (int s : lengths) {
    if (!absl::GetFlag(FLAGS_attention)) break;
    auto [ms, tflops] = MeasureAttention(s, false, stream);
    auto [fused_ms, fused_tflops] = MeasureAttention(s, true, stream);
    std::printf("attention s=%d: %.3f ms/layer, %.1f TFLOP/s (in the fused QKV layout: %.3f ms, "
                "%.1f TFLOP/s)\n", s, ms, tflops, fused_ms, fused_tflops);
    out["attention"][std::to_string(s)] = {{"ms", ms}, {"tflops", tflops},
                                           {"fused_qkv_ms", fused_ms},
                                           {"fused_qkv_tflops", fused_tflops}};
  }

  // The model: 8B shape, random bf16 weights drawn on the GPU.
  const std::string shape = absl::GetFlag(FLAGS_shape);
  if (shape != "8b" && shape != "70b") {
    std::fprintf(stderr, "--shape must be 8b or 70b\n");
    return 2;
  }
  const int layers = absl::GetFlag(FLAGS_layers);
  const ModelConfig config = shape == "70b" ? Llama31_70B(layers > 0 ? layers : 80)
                                            : Llama31_8B(layers > 0 ? layers : 32);
  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  GpuModelOptions opts;
  opts.block_size = 16;
  opts.num_blocks = max_len / 16 + 16;
  // One CudaLlamaModel per GPU; with tp > 1 joined by NCCL into a TpGroupModel whose Forward
  // drives every rank. Timing and profiling use rank 0's stream.
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<NcclGroup> group;
  if (tp > 1) {
    auto g = NcclGroup::Create(0, tp);
    BENCH_CHECK(g.status());
    group = *g;
  }
  std::vector<std::unique_ptr<CudaLlamaModel>> ranks;
  for (int r = 0; r < tp; ++r) {
    BENCH_CUDA(cudaSetDevice(r));
    cudaStream_t model_stream;
    BENCH_CUDA(cudaStreamCreateWithFlags(&model_stream, cudaStreamNonBlocking));
    GpuModelOptions rank_opts = opts;
    rank_opts.device = r;
    auto weights = RandomDeviceWeights(LocalTpConfig(config, tp), 42, 0.02f, model_stream, r);
    BENCH_CHECK(weights.status());
    auto rank = CudaLlamaModel::Create(config, std::move(*weights), rank_opts, model_stream,
                                       TpRank{r, tp, group});
    BENCH_CHECK(rank.status());
    ranks.push_back(std::move(*rank));
  }
  BENCH_CUDA(cudaSetDevice(0));
  std::vector<CudaLlamaModel*> rank_models;
  for (auto& r : ranks) rank_models.push_back(r.get());
  CudaLlamaModel* rank0 = rank_models[0];
  std::unique_ptr<GpuModel> model =
      tp == 1 ? std::unique_ptr<GpuModel>(std::move(ranks[0]))
              : std::unique_ptr<GpuModel>(std::make_unique<TpGroupModel>(std::move(ranks)));
  std::printf("model: %d layers on %d GPU(s), %.2f GB weights, %.2f GB KV pool, init %.1f s\n",
              config.num_layers, tp, model->weight_bytes() / 1e9, model->kv_cache_bytes() / 1e9,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  std::printf("\n%-8s %-16s %10s %10s %8s %8s\n", "len", "method", "TTFT ms", "vs full", "kept",
              "MFU");
  for (int s : lengths) {
    std::vector<int32_t> prompt(s);
    for (int i = 0; i < s; ++i) prompt[i] = int32_t((uint64_t(i) * 2654435761u) % 128000) + 1;
    double full_ms = 0;
    for (const Method& m : methods) {
      PrefillOptions prefill;
      PrefillReport report;
      prefill.pruning = m.method == PruningMethod::kFull
                            ? PruningConfig{}
                            : DefaultPruningConfig(m.method, config.num_layers, m.keep);
      prefill.report = &report;
      SequenceKv kv(config.num_layers);
      for (int b = 0; b < (s + 15) / 16; ++b) kv.blocks.push_back(b);
      std::vector<float> logits;
      bool finite = true;
      for (CudaLlamaModel* r : rank_models) r->set_pack_kv(m.pack_kv);
      const double ms = TimeMs(rank0->stream(), warmups, runs, [&] {
        std::fill(kv.layer_lengths.begin(), kv.layer_lengths.end(), 0);
        kv.num_positions = 0;
        ForwardItem item{&kv, prompt, 0, &prefill};
        BENCH_CHECK(model->Forward(absl::MakeConstSpan(&item, 1), &logits, false));
        for (float x : logits) finite = finite && std::isfinite(x);
      });
      if (m.method == PruningMethod::kFull && !m.pack_kv) full_ms = ms;
      const double mfu = m.method == PruningMethod::kFull
                             ? PrefillFlops(config, s) / (ms * 1e-3) / (tp * peak * 1e12)
                             : 0.0;
      std::printf("%-8d %-16s %10.2f %10.3f %8zu %7.1f%%%s\n", s, m.label.c_str(), ms,
                  full_ms > 0 ? ms / full_ms : 0.0, report.kept_tokens.size(), 100 * mfu,
                  finite ? "" : "  (non-finite logits!)");
      nlohmann::json row = {{"ttft_ms", ms},
                            {"ratio_vs_full", full_ms > 0 ? ms / full_ms : 0.0},
                            {"kept_tokens", report.kept_tokens.size()},
                            {"finite_logits", finite}};
      if (m.method == PruningMethod::kFull) {
        row["mfu"] = mfu;
        row["model_tflop"] = PrefillFlops(config, s) / 1e12;
      }
      // One more run with per-op-group events (not timed above: events add host work).
      if ((m.method == PruningMethod::kFull && !m.pack_kv) ||
          (m.method == PruningMethod::kClaa && std::fabs(m.keep - 0.2) < 1e-9)) {
        rank0->set_profiling(true);
        std::fill(kv.layer_lengths.begin(), kv.layer_lengths.end(), 0);
        kv.num_positions = 0;
        ForwardItem item{&kv, prompt, 0, &prefill};
        BENCH_CHECK(model->Forward(absl::MakeConstSpan(&item, 1), &logits, false));
        rank0->set_profiling(false);
        auto profile = rank0->LastProfile();
        BENCH_CHECK(profile.status());
        for (const auto& [name, group_ms] : *profile) {
          out["profile"][m.label][std::to_string(s)][name] = group_ms;
        }
      }
      out["ttft"][std::to_string(s)][m.label] = row;
    }
  }

  // HF transformers baseline from the same call, if given.
  nlohmann::json hf;
  if (const std::string path = absl::GetFlag(FLAGS_hf_json); !path.empty()) {
    std::ifstream in(path);
    if (in) {
      hf = nlohmann::json::parse(in, nullptr, false);
      if (hf.is_discarded()) hf = nlohmann::json();
    }
    if (hf.is_null()) std::printf("(no HF baseline in %s)\n", path.c_str());
  }
  out["hf"] = hf;

  // Markdown.
  std::string md = absl::StrFormat(
      "Device: %s%s. bf16 GEMM peak measured in this run: %.1f TFLOP/s per GPU. TTFT in ms, "
      "median of %d runs after %d warm-ups (CUDA events), batch 1, random bf16 weights, "
      "Llama-3.1-%s shape (%d layers)%s.\n\n",
      device, tp > 1 ? absl::StrFormat(" x %d", tp) : "", peak, runs, warmups,
      shape == "70b" ? "70B" : "8B", config.num_layers,
      tp > 1 ? absl::StrFormat(", tensor parallel over %d GPUs (NCCL; MFU against %d x peak)",
                               tp, tp)
             : "");
  md += "| prompt |";
  for (const Method& m : methods) md += " " + m.label + " |";
  md += " HF sdpa | Full MFU | attn TFLOP/s |";
  if (!hf.is_null() && hf.contains("sdpa_tflops")) md += " torch SDPA TFLOP/s |";
  md += "\n|---|";
  for (size_t i = 0; i < methods.size() + 3; ++i) md += "---|";
  if (!hf.is_null() && hf.contains("sdpa_tflops")) md += "---|";
  md += "\n";
  for (int s : lengths) {
    const std::string key = std::to_string(s);
    const nlohmann::json& row = out["ttft"][key];
    const double full = row["Full KV"].value("ttft_ms", 0.0);
    md += absl::StrFormat("| %dk |", s / 1024);
    for (const Method& m : methods) {
      const double ms = row[m.label]["ttft_ms"].get<double>();
      md += m.method == PruningMethod::kFull || full <= 0
                ? absl::StrFormat(" %.1f |", ms)
                : absl::StrFormat(" %.1f (%.2fx) |", ms, ms / full);
    }
    if (!hf.is_null() && hf.contains("ttft_ms") && hf["ttft_ms"].contains(key)) {
      const double hms = hf["ttft_ms"][key].get<double>();
      md += absl::StrFormat(" %.1f (ours %.2fx) |", hms, full / hms);
    } else {
      md += " - |";
    }
    md += absl::StrFormat(" %.1f%% |", 100 * row["Full KV"].value("mfu", 0.0));
    md += out.contains("attention")
              ? absl::StrFormat(" %.0f (fused QKV %.0f) |",
                                out["attention"][key]["tflops"].get<double>(),
                                out["attention"][key]["fused_qkv_tflops"].get<double>())
              : std::string(" - |");
    if (!hf.is_null() && hf.contains("sdpa_tflops")) {
      md += hf["sdpa_tflops"].contains(key)
                ? absl::StrFormat(" %.0f |", hf["sdpa_tflops"][key].get<double>())
                : std::string(" - |");
    }
    md += "\n";
  }
  // Where the time goes (one profiled forward each; ms summed over layers).
  if (out.contains("profile")) {
    std::vector<std::pair<std::string, std::string>> cols;  // (method label, length)
    for (int s : lengths) cols.push_back({"Full KV", std::to_string(s)});
    for (int s : lengths) cols.push_back({"claa 0.2", std::to_string(s)});
    md += "\nTime per op group, ms (one forward with CUDA events between groups):\n\n| op group |";
    for (const auto& [label, len] : cols) {
      md += absl::StrFormat(" %s %dk |", label, std::stoi(len) / 1024);
    }
    md += "\n|---|";
    for (size_t i = 0; i < cols.size(); ++i) md += "---|";
    md += "\n";
    for (int g = 0; g < int(CudaLlamaModel::OpGroup::kCount); ++g) {
      const std::string name = CudaLlamaModel::OpGroupName(CudaLlamaModel::OpGroup(g));
      md += "| " + name + " |";
      for (const auto& [label, len] : cols) {
        const bool have = out["profile"].contains(label) && out["profile"][label].contains(len);
        md += have ? absl::StrFormat(" %.1f |", out["profile"][label][len][name].get<double>())
                   : std::string(" - |");
      }
      md += "\n";
    }
  }
  if (!hf.is_null() && hf.contains("versions")) {
    md += "\nHF baseline: " + hf["versions"].dump() + "\n";
  }
  WriteResults(absl::GetFlag(FLAGS_out),
               absl::StrCat("gpu_prefill", shape == "70b" ? "_70b" : "",
                            tp > 1 ? absl::StrFormat("_tp%d", tp) : ""),
               out, md);
  return 0;
}

}  // namespace
}  // namespace claa::gpu

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return claa::gpu::Main();
}
