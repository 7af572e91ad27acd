// The GPU model (engine/gpu, loaded through libclaa_cuda_backend.so with dlopen, as the server
// will) against the CPU engine (engine/runtime LlamaModel): full-model logits for stories260K and
// random GQA models (head_dim 64 and 128) over prefill, chunked prefill, mixed batches and decode
// steps, and the pruned prefill (CLAA at keep 0.1/0.2/0.4, FastKV, GemFilter, Oracle): kept
// tokens, per-layer cache lengths, logits and decode after it. Each case also runs with the GPU
// model split over two GPUs (NCCL tensor parallelism; skipped with fewer GPUs) against the same
// single-process CPU reference, with the same tolerances.
//
// Both sides use the same weights: the fp32 weights are rounded to bf16 once and the CPU runs
// on those values, so what is measured is the GPU's bf16 arithmetic (bf16 activations, residual
// stream and KV cache, fp32 accumulation), not weight quantisation.
//
// Tolerances (logits): ||gpu - cpu|| / ||cpu|| <= 4e-2 and max |gpu - cpu| <= 0.1 max |cpu| per
// step; greedy tokens must agree wherever the CPU's top-2 margin exceeds twice that step's max
// error. Why 4e-2: bf16 activations perturb every layer by ~2^-9 relative, and how much that moves
// the logits depends on the model, not the code. Measured on the CPU path: perturbing the weights
// of the random models below (std 0.02) by 0.4% relative noise moves their fp32 logits by
// 1.4-1.9% (relL2; 4 and 8 layers); the trained stories260K moves far less (its GPU error is
// ~3e-3). With std 0.08 weights the same perturbation moves logits by 5-15%, which is why the
// random models use 0.02. Selections: see ExpectSameSelection. Without a CUDA device every GPU
// case skips.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "engine/attncache/attention_reuse.h"
#include "engine/gpu/backend_loader.h"
#include "engine/model/model_loader.h"
#include "engine/pruning/token_scorer.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/llama_model.h"
#include "gtest/gtest.h"
#include "tests/test_data.h"

namespace claa::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Report.

struct Row {
  std::string name;
  double max_err, max_ref, rel_l2;
  std::string note;
  bool ok;
};
std::vector<Row>& Rows() {
  static auto* rows = new std::vector<Row>();
  return *rows;
}
class ReportEnv : public ::testing::Environment {
 public:
  void TearDown() override {
    if (Rows().empty()) return;
    std::ostringstream os;
    char line[512];
    std::snprintf(line, sizeof(line), "\n%-52s %11s %11s %11s %s\n", "check (GPU vs CPU)",
                  "max|err|", "max|ref|", "relL2", "result / note");
    os << line;
    for (const Row& r : Rows()) {
      std::snprintf(line, sizeof(line), "%-52s %11.3e %11.3e %11.3e %s %s\n", r.name.c_str(),
                    r.max_err, r.max_ref, r.rel_l2, r.ok ? "PASS" : "FAIL", r.note.c_str());
      os << line;
    }
    std::fputs(os.str().c_str(), stdout);
    if (const char* path = std::getenv("CLAA_GPU_MODEL_REPORT"); path != nullptr && *path) {
      std::ofstream(path) << os.str();
    }
  }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ReportEnv);

constexpr double kRelL2Tol = 4e-2;
constexpr double kMaxErrFrac = 0.1;

// Logits of `rows` rows (vocab each) compared row by row.
::testing::AssertionResult CompareLogits(const std::string& name, const std::vector<float>& gpu,
                                         const std::vector<float>& cpu, int vocab) {
  if (gpu.size() != cpu.size() || cpu.empty()) {
    Rows().push_back({name, 0, 0, 0, "size mismatch", false});
    return ::testing::AssertionFailure() << name << ": size " << gpu.size() << " vs "
                                         << cpu.size();
  }
  const int rows = int(cpu.size() / vocab);
  double worst_rel = 0, worst_err = 0, worst_ref = 0;
  int top1_checked = 0, top1_bad = 0;
  bool ok = true;
  std::ostringstream why;
  for (int r = 0; r < rows; ++r) {
    const float* g = &gpu[size_t(r) * vocab];
    const float* c = &cpu[size_t(r) * vocab];
    double num = 0, den = 0, max_err = 0, max_ref = 0;
    for (int v = 0; v < vocab; ++v) {
      const double e = std::fabs(double(g[v]) - c[v]);
      max_err = std::isfinite(g[v]) ? std::max(max_err, e) : INFINITY;
      max_ref = std::max(max_ref, std::fabs(double(c[v])));
      num += e * e;
      den += double(c[v]) * c[v];
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    worst_rel = std::max(worst_rel, rel);
    worst_err = std::max(worst_err, max_err);
    worst_ref = std::max(worst_ref, max_ref);
    if (!(rel <= kRelL2Tol) || !(max_err <= kMaxErrFrac * max_ref)) {
      ok = false;
      why << " row " << r << ": relL2 " << rel << " max|err| " << max_err << ";";
    }
    // Greedy agreement where the CPU's choice is clear.
    std::vector<int> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + 2, idx.end(),
                      [&](int a, int b) { return c[a] > c[b]; });
    const int gpu_top = int(std::max_element(g, g + vocab) - g);
    if (c[idx[0]] - c[idx[1]] > 2 * max_err) {
      ++top1_checked;
      if (gpu_top != idx[0]) {
        ++top1_bad;
        ok = false;
        why << " row " << r << ": top-1 " << gpu_top << " vs " << idx[0] << ";";
      }
    }
  }
  Rows().push_back({name, worst_err, worst_ref, worst_rel,
                    "top1 " + std::to_string(top1_checked - top1_bad) + "/" +
                        std::to_string(top1_checked) + " clear rows",
                    ok});
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ":" << why.str();
}

// ---------------------------------------------------------------------------------------------
// The backend, loaded once.

absl::StatusOr<std::unique_ptr<GpuBackendLibrary>>& Library() {
  static auto* lib = new absl::StatusOr<std::unique_ptr<GpuBackendLibrary>>(
      GpuBackendLibrary::Load(CLAA_CUDA_BACKEND_PATH, /*require_device=*/true));
  return *lib;
}

// Skips without a device; a missing or broken library is a failure (it is built with the check).
#define REQUIRE_GPU_BACKEND()                                                                  \
  do {                                                                                         \
    const auto& lib_ = Library();                                                              \
    if (!lib_.ok()) {                                                                          \
      if (lib_.status().code() == absl::StatusCode::kFailedPrecondition &&                     \
          lib_.status().message().find("no CUDA device") != std::string::npos) {               \
        GTEST_SKIP() << "no CUDA device: GPU model checks skipped (" << lib_.status() << ")";  \
      }                                                                                        \
      FAIL() << lib_.status();                                                                 \
    }                                                                                          \
  } while (0)

float RoundBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return f;
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

void RoundWeights(ModelWeights& w) {
  auto r = [](std::vector<float>& v) {
    for (float& f : v) f = RoundBf16(f);
  };
  r(w.embed_tokens);
  r(w.final_norm);
  r(w.lm_head);
  for (LayerWeights& l : w.layers) {
    for (auto* v : {&l.input_norm, &l.post_attention_norm, &l.q_proj, &l.k_proj, &l.v_proj,
                    &l.q_bias, &l.k_bias, &l.v_bias, &l.o_proj, &l.o_bias, &l.gate_proj,
                    &l.up_proj, &l.down_proj}) {
      r(*v);
    }
  }
}

constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 1024;

// Visible CUDA devices (0 without a backend).
int GpuCount() {
  return Library().ok() ? (*Library())->backend().DeviceCount() : 0;
}

// Tensor-parallel cases need that many GPUs; on fewer they skip, saying so.
#define REQUIRE_GPUS(n)                                                                      \
  do {                                                                                       \
    if (GpuCount() < (n)) {                                                                  \
      GTEST_SKIP() << "tensor parallelism over " << (n) << " GPUs: only " << GpuCount()       \
                   << " visible; skipped (run on nvidia-h200-x2)";                           \
    }                                                                                        \
  } while (0)

// A CPU reference (tp = 1, fp32 on bf16-rounded weights) and the GPU model over the same
// weights, the GPU one split over `tp` GPUs (shards of the same model, rounded alike). Sequences
// get disjoint block ranges; each side has its own SequenceKv (Forward advances it).
class ModelPair {
 public:
  using ShardMaker = std::function<ModelWeights(TpShard)>;
  explicit ModelPair(const ShardMaker& make, int tp = 1)
      : weights_(make(TpShard{})),
        cache_(weights_.config.num_layers, kNumBlocks, kBlockSize, weights_.config.num_kv_heads,
               weights_.config.head_dim),
        cpu_(&weights_, nullptr, &cache_) {
    RoundWeights(weights_);
    GpuModelOptions opts;
    opts.num_blocks = kNumBlocks;
    opts.block_size = kBlockSize;
    absl::StatusOr<std::unique_ptr<GpuModel>> gpu;
    if (tp == 1) {
      gpu = (*Library())->backend().CreateModel(weights_, opts);
    } else {
      std::vector<ModelWeights> shards;
      for (int r = 0; r < tp; ++r) {
        shards.push_back(make(TpShard{r, tp}));
        RoundWeights(shards.back());
      }
      gpu = (*Library())->backend().CreateTpModel(shards, opts);
    }
    status_ = gpu.status();
    if (gpu.ok()) gpu_ = std::move(*gpu);
  }
  const absl::Status& status() const { return status_; }
  const ModelConfig& config() const { return weights_.config; }
  LlamaModel& cpu() { return cpu_; }
  GpuModel& gpu() { return *gpu_; }
  PagedKvCache& cpu_cache() { return cache_; }

  // A fresh sequence with room for `tokens` slots, on each side.
  struct Seq {
    SequenceKv cpu, gpu;
  };
  Seq NewSequence(int tokens) {
    Seq s{SequenceKv(config().num_layers), SequenceKv(config().num_layers)};
    const int blocks = (tokens + kBlockSize - 1) / kBlockSize;
    for (int b = 0; b < blocks; ++b) {
      s.cpu.blocks.push_back(next_block_ + b);
      s.gpu.blocks.push_back(next_block_ + b);
    }
    next_block_ += blocks;
    return s;
  }

 private:
  ModelWeights weights_;
  PagedKvCache cache_;
  LlamaModel cpu_;
  std::unique_ptr<GpuModel> gpu_;
  absl::Status status_;
  int next_block_ = 0;
};

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(1, vocab - 1);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = dist(rng);
  return t;
}

int Argmax(const std::vector<float>& logits, int row, int vocab) {
  const float* p = &logits[size_t(row) * vocab];
  return int(std::max_element(p, p + vocab) - p);
}

// Runs the same batch on both sides. items[i] = (sequence, tokens, prefill options or null).
struct Step {
  ModelPair::Seq* seq;
  std::vector<int32_t> tokens;
  const PrefillOptions* cpu_prefill = nullptr;
  const PrefillOptions* gpu_prefill = nullptr;
};
::testing::AssertionResult RunBoth(ModelPair& m, const std::string& name, std::vector<Step>& steps,
                                   std::vector<float>* cpu_logits = nullptr) {
  std::vector<ForwardItem> cb, gb;
  for (Step& s : steps) {
    cb.push_back(ForwardItem{&s.seq->cpu, s.tokens, s.seq->cpu.num_positions, s.cpu_prefill});
    gb.push_back(ForwardItem{&s.seq->gpu, s.tokens, s.seq->gpu.num_positions, s.gpu_prefill});
  }
  std::vector<float> cl, gl;
  if (absl::Status s = m.cpu().Forward(cb, &cl); !s.ok()) {
    return ::testing::AssertionFailure() << name << " CPU: " << s;
  }
  if (absl::Status s = m.gpu().Forward(gb, &gl, false); !s.ok()) {
    return ::testing::AssertionFailure() << name << " GPU: " << s;
  }
  for (Step& s : steps) {
    if (s.seq->cpu.layer_lengths != s.seq->gpu.layer_lengths ||
        s.seq->cpu.num_positions != s.seq->gpu.num_positions) {
      return ::testing::AssertionFailure() << name << ": layer lengths / positions differ";
    }
  }
  if (cpu_logits != nullptr) *cpu_logits = cl;
  return CompareLogits(name, gl, cl, m.config().vocab_size);
}

// ---------------------------------------------------------------------------------------------
// stories260K: a real trained model (head_dim 8: the generic attention kernel).

std::vector<int32_t> ExpectedGreedy(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids;
  size_t at = text.find("\"generated_ids\"");
  if (at == std::string::npos) return ids;
  at = text.find('[', at);
  const size_t end = text.find(']', at);
  std::istringstream list(text.substr(at + 1, end - at - 1));
  std::string item;
  while (std::getline(list, item, ',')) ids.push_back(std::stoi(item));
  return ids;
}

// Each case runs on one GPU and tensor-parallel over two (the latter skips on one GPU).
std::string TpName(const ::testing::TestParamInfo<int>& info) {
  return "tp" + std::to_string(info.param);
}

class GpuStories260K : public ::testing::TestWithParam<int> {};

TEST_P(GpuStories260K, PrefillChunksDecode) {
  REQUIRE_GPU_BACKEND();
  const int tp = GetParam();
  REQUIRE_GPUS(tp);
  CLAA_REQUIRE_SHARED(dir, "models/stories260K");
  absl::Status load_status;
  ModelPair m(
      [&](TpShard shard) {
        absl::StatusOr<ModelWeights> w = LoadModelDir(dir, shard);
        if (!w.ok()) load_status = w.status();
        return w.ok() ? std::move(*w) : ModelWeights{};
      },
      tp);
  ASSERT_TRUE(load_status.ok()) << load_status;
  ASSERT_TRUE(m.status().ok()) << m.status();
  const std::string tag = tp == 1 ? "stories260K " : "stories260K tp" + std::to_string(tp) + " ";
  const int vocab = m.config().vocab_size;

  // Real text: BOS then the model's own greedy continuation (expected_greedy.json).
  std::vector<int32_t> text{1};
  const std::vector<int32_t> greedy = ExpectedGreedy(dir / "expected_greedy.json");
  ASSERT_GE(greedy.size(), 60u);
  text.insert(text.end(), greedy.begin(), greedy.begin() + 60);

  ModelPair::Seq a = m.NewSequence(64), b = m.NewSequence(64);
  std::vector<Step> prefill{{&a, {text.begin(), text.begin() + 40}}};
  EXPECT_TRUE(RunBoth(m, tag + "prefill 40", prefill));
  for (int t = 40; t < 48; ++t) {
    std::vector<Step> dec{{&a, {text[t]}}};
    EXPECT_TRUE(RunBoth(m, tag + "decode pos " + std::to_string(t), dec));
  }
  // Chunked prefill: 25 tokens, then 15 more against the cached 25 (mixed attention path).
  std::vector<Step> c1{{&b, {text.begin(), text.begin() + 25}}};
  EXPECT_TRUE(RunBoth(m, tag + "chunk 0..25", c1));
  std::vector<Step> c2{{&b, {text.begin() + 25, text.begin() + 40}}};
  EXPECT_TRUE(RunBoth(m, tag + "chunk 25..40", c2));

  // Greedy generation from BOS on the GPU alone against the reference continuation (HF made it).
  ModelPair::Seq g = m.NewSequence(64);
  std::vector<int32_t> tok{1};
  int matched = 0;
  for (int t = 0; t < 40; ++t) {
    ForwardItem item{&g.gpu, tok, g.gpu.num_positions};
    std::vector<float> logits;
    ASSERT_TRUE(m.gpu().Forward(absl::MakeConstSpan(&item, 1), &logits, false).ok());
    tok = {Argmax(logits, 0, vocab)};
    if (tok[0] != greedy[t]) break;
    ++matched;
  }
  // Informational beyond the first tokens: bf16 may flip a near-tie, after which the texts part.
  Rows().push_back({tag + "GPU greedy vs expected_greedy.json", 0, 0, 0,
                    std::to_string(matched) + "/40 tokens identical", matched >= 8});
  EXPECT_GE(matched, 8) << "greedy decoding left the reference after " << matched << " tokens";
}

INSTANTIATE_TEST_SUITE_P(Tp, GpuStories260K, ::testing::Values(1, 2), TpName);

// ---------------------------------------------------------------------------------------------
// Random GQA models, head_dim 64 and 128.

ModelConfig RandomConfig(int head_dim, int layers) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 1024;
  c.num_layers = layers;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = head_dim;
  c.hidden_size = c.num_heads * head_dim;
  c.intermediate_size = 2 * c.hidden_size;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-5;
  if (head_dim == 128) {  // Llama-3.1's rope scaling on the 128 model
    c.rope_theta = 500000.0;
    c.rope_scaling.type = RopeScalingType::kLlama3;
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 8192;
  }
  return c;
}

// Weights with std 0.02 (the engine's default): sensitive enough to catch wrong code, calm enough
// that bf16 rounding stays ~1-2% of the logits (see the tolerance note at the top). The full
// tensors are drawn from the seed and then sliced, so every tp sees the same model.
ModelPair::ShardMaker RandomShards(const ModelConfig& c, uint64_t seed) {
  return [c, seed](TpShard shard) { return MakeRandomWeights(c, seed, shard, 0.02f); };
}

// (head_dim, tp)
class GpuRandomModel : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(GpuRandomModel, BatchedPrefillMixedAndDecode) {
  REQUIRE_GPU_BACKEND();
  const auto [d, tp] = GetParam();
  REQUIRE_GPUS(tp);
  ModelPair m(RandomShards(RandomConfig(d, 4), 11 + d), tp);
  ASSERT_TRUE(m.status().ok()) << m.status();
  const std::string tag =
      "random d" + std::to_string(d) + (tp > 1 ? " tp" + std::to_string(tp) : "") + " ";
  ModelPair::Seq a = m.NewSequence(400), b = m.NewSequence(400);
  const std::vector<int32_t> ta = RandomTokens(300, 1024, 1), tb = RandomTokens(200, 1024, 2);
  // Two prompts in one batch (varlen prefill).
  std::vector<Step> s1{{&a, ta}, {&b, {tb.begin(), tb.begin() + 77}}};
  EXPECT_TRUE(RunBoth(m, tag + "prefill 300+77", s1));
  // A decode token and a 50-token chunk in one batch (mixed: gathered paged K/V).
  std::vector<Step> s2{{&a, {5}}, {&b, {tb.begin() + 77, tb.begin() + 127}}};
  EXPECT_TRUE(RunBoth(m, tag + "decode+chunk 50", s2));
  // Decode steps of both (paged decode attention).
  for (int t = 0; t < 4; ++t) {
    std::vector<Step> s{{&a, {int32_t(100 + t)}}, {&b, {int32_t(200 + t)}}};
    EXPECT_TRUE(RunBoth(m, tag + "decode batch 2 step " + std::to_string(t), s));
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDimTp, GpuRandomModel,
                         ::testing::Values(std::pair{64, 1}, std::pair{128, 1}, std::pair{64, 2},
                                           std::pair{128, 2}),
                         [](const auto& info) {
                           return "d" + std::to_string(info.param.first) + "_tp" +
                                  std::to_string(info.param.second);
                         });

// ---------------------------------------------------------------------------------------------
// Pruned prefill.

// The CPU's per-token selection score for a method, from an unpruned capture run (layers up to
// the pruning layer are the same with and without pruning).
std::vector<float> CpuSelectionScores(const PruningConfig& c, const ScoreCapture& cap,
                                      const std::vector<float>& oracle) {
  switch (c.method) {
    case PruningMethod::kClaa: {
      std::vector<LayerScores> h(cap.window_by_layer.begin() + c.pruning_layer -
                                     c.aggregation_layers + 1,
                                 cap.window_by_layer.begin() + c.pruning_layer + 1);
      return ClaaScorer(c.aggregation_layers).Score(h);
    }
    case PruningMethod::kFastKv:
      return HeadSumScorer().Score(absl::MakeConstSpan(&cap.window_by_layer[c.pruning_layer], 1));
    case PruningMethod::kGemFilter:
      return HeadSumScorer().Score(
          absl::MakeConstSpan(&cap.last_query_by_layer[c.pruning_layer], 1));
    case PruningMethod::kOracle:
      return std::vector<float>(oracle.begin(), oracle.end() - c.window);
    default:
      return {};
  }
}

// The kept sets must be equal, except for tokens whose CPU score lies within the measured score
// error of the selection threshold (a bf16 near-tie: either side's choice is right). Returns
// whether they are exactly equal.
bool ExpectSameSelection(const std::string& name, const std::vector<int>& gpu_kept,
                         const std::vector<int>& cpu_kept, const std::vector<float>& gpu_scores,
                         const std::vector<float>& cpu_scores, int top) {
  double err = 0, lo = INFINITY, hi = -INFINITY;
  for (size_t j = 0; j < cpu_scores.size(); ++j) {
    err = std::max(err, std::fabs(double(gpu_scores[j]) - cpu_scores[j]));
    lo = std::min(lo, double(cpu_scores[j]));
    hi = std::max(hi, double(cpu_scores[j]));
  }
  std::vector<float> sorted(cpu_scores);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const double threshold = top > 0 ? sorted[top - 1] : INFINITY;
  std::vector<int> diff;
  std::set_symmetric_difference(gpu_kept.begin(), gpu_kept.end(), cpu_kept.begin(),
                                cpu_kept.end(), std::back_inserter(diff));
  double worst_gap = 0;
  bool explained = gpu_kept.size() == cpu_kept.size();
  for (int t : diff) {
    const double gap = t < int(cpu_scores.size()) ? std::fabs(cpu_scores[t] - threshold) : INFINITY;
    worst_gap = std::max(worst_gap, gap);
    explained = explained && gap <= 2 * err;
  }
  // Scores themselves: within 5% of their range.
  const bool scores_ok = err <= 0.05 * (hi - lo);
  char note[256];
  std::snprintf(note, sizeof(note), "kept %zu, %zu differ (max gap to threshold %.2e, allowed %.2e)",
                cpu_kept.size(), diff.size(), worst_gap, 2 * err);
  Rows().push_back({name, err, std::max(std::fabs(lo), std::fabs(hi)), 0, note,
                    explained && scores_ok});
  EXPECT_TRUE(scores_ok) << name << ": score error " << err << " vs range " << hi - lo;
  EXPECT_TRUE(explained) << name << ": " << note;
  return diff.empty();
}

// Tensor parallel: the ranks combine their scores before top-k; LastSelectionScores fails
// unless every rank holds the same scores, so a passing case also shows the ranks agree.
class GpuPrunedPrefill : public ::testing::TestWithParam<int> {};

TEST_P(GpuPrunedPrefill, SelectionsCacheAndDecode) {
  REQUIRE_GPU_BACKEND();
  const int tp = GetParam();
  REQUIRE_GPUS(tp);
  const int layers = 8;
  ModelPair m(RandomShards(RandomConfig(128, layers), 5), tp);
  ASSERT_TRUE(m.status().ok()) << m.status();
  const int n = 1000;
  const std::vector<int32_t> prompt = RandomTokens(n, 1024, 9);

  // CPU scores of every layer from one unpruned capture run.
  ScoreCapture cap;
  cap.window_scores = true;
  cap.last_query_scores = true;
  cap.window = 8;
  cap.window_pool = 7;
  cap.last_query_pool = 5;
  {
    PrefillOptions opts;
    opts.capture = &cap;
    ModelPair::Seq s = m.NewSequence(n);
    ForwardItem item{&s.cpu, prompt, 0, &opts};
    std::vector<float> logits;
    ASSERT_TRUE(m.cpu().Forward(absl::MakeConstSpan(&item, 1), &logits).ok());
  }
  std::vector<float> oracle(n);
  std::mt19937 rng(3);
  for (float& x : oracle) x = std::uniform_real_distribution<float>(0, 1)(rng);

  struct Case {
    PruningMethod method;
    double keep;
  };
  for (const Case& k : {Case{PruningMethod::kClaa, 0.1}, Case{PruningMethod::kClaa, 0.2},
                        Case{PruningMethod::kClaa, 0.4}, Case{PruningMethod::kFastKv, 0.2},
                        Case{PruningMethod::kGemFilter, 0.2}, Case{PruningMethod::kOracle, 0.2}}) {
    const std::string name = std::string(PruningMethodName(k.method)) + " keep " +
                             std::to_string(k.keep).substr(0, 3) +
                             (tp > 1 ? " tp" + std::to_string(tp) : "");
    SCOPED_TRACE(name);
    PrefillReport cpu_report, gpu_report;
    PrefillOptions cpu_opts, gpu_opts;
    cpu_opts.pruning = gpu_opts.pruning = DefaultPruningConfig(k.method, layers, k.keep);
    cpu_opts.oracle_scores = gpu_opts.oracle_scores = oracle;
    cpu_opts.report = &cpu_report;
    gpu_opts.report = &gpu_report;
    ModelPair::Seq s = m.NewSequence(n + 8);
    std::vector<ForwardItem> cb{{&s.cpu, prompt, 0, &cpu_opts}}, gb{{&s.gpu, prompt, 0, &gpu_opts}};
    std::vector<float> cl, gl;
    ASSERT_TRUE(m.cpu().Forward(cb, &cl).ok());
    absl::Status gs = m.gpu().Forward(gb, &gl, false);
    ASSERT_TRUE(gs.ok()) << gs;
    EXPECT_EQ(gpu_report.layer_lengths, cpu_report.layer_lengths);
    EXPECT_EQ(s.gpu.layer_lengths, s.cpu.layer_lengths);
    EXPECT_EQ(s.gpu.num_positions, s.cpu.num_positions);

    absl::StatusOr<std::vector<float>> gpu_scores = m.gpu().LastSelectionScores(0);
    ASSERT_TRUE(gpu_scores.ok()) << gpu_scores.status();
    const std::vector<float> cpu_scores = CpuSelectionScores(cpu_opts.pruning, cap, oracle);
    ASSERT_EQ(gpu_scores->size(), cpu_scores.size());
    const int keep = cpu_opts.pruning.KeepCount(n);
    const bool same = ExpectSameSelection(name + " selection", gpu_report.kept_tokens,
                                          cpu_report.kept_tokens, *gpu_scores, cpu_scores,
                                          keep - cpu_opts.pruning.window);
    if (!same) {
      // A near-tie went the other way: check everything downstream of the selection against a
      // CPU run that is given the GPU's choice. CLAA / FastKV: the CPU's Oracle path with the
      // GPU's kept tokens as the ranking (same propagation and cache policy); GemFilter: a plain
      // CPU prefill of the kept tokens at positions 0..kept-1 (what its re-run is).
      SequenceKv cpu_ref(layers);
      cpu_ref.blocks = s.cpu.blocks;
      PrefillOptions ref_opts;
      std::vector<int32_t> ref_tokens = prompt;
      if (k.method == PruningMethod::kGemFilter) {
        ref_tokens.clear();
        for (int t : gpu_report.kept_tokens) ref_tokens.push_back(prompt[t]);
      } else {
        ref_opts.pruning = DefaultPruningConfig(PruningMethod::kOracle, layers, k.keep);
        ref_opts.oracle_scores.assign(n, 0.0f);
        for (int t : gpu_report.kept_tokens) ref_opts.oracle_scores[t] = 1.0f;
      }
      ForwardItem ref{&cpu_ref, ref_tokens, 0,
                      k.method == PruningMethod::kGemFilter ? nullptr : &ref_opts};
      ASSERT_TRUE(m.cpu().Forward(absl::MakeConstSpan(&ref, 1), &cl).ok());
      s.cpu = cpu_ref;
    }
    EXPECT_EQ(s.gpu.layer_lengths, s.cpu.layer_lengths);
    EXPECT_TRUE(CompareLogits(name + (same ? "" : " (CPU given GPU's kept)") + " prefill logits",
                              gl, cl, m.config().vocab_size));
    // Decode over the compact cache (per-layer lengths; per-head compacted layers).
    for (int t = 0; t < 3; ++t) {
      std::vector<Step> dec{{&s, {int32_t(Argmax(cl, 0, m.config().vocab_size))}}};
      EXPECT_TRUE(RunBoth(m, name + " decode " + std::to_string(t), dec, &cl));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tp, GpuPrunedPrefill, ::testing::Values(1, 2), TpName);


// ---------------------------------------------------------------------------------------------
// AttnCache on the GPU: maps captured on the device against the CPU's, and hits (A @ V from
// stored maps) against the CPU's hits on the same maps, alone and in a batch with an ordinary
// prompt; a resident hit (same key) reproduces the first hit bit for bit.

// Probabilities of two captures: max and mean |gpu - cpu|.
::testing::AssertionResult CompareMaps(const std::string& name, const std::vector<uint16_t>& gpu,
                                       const std::vector<uint16_t>& cpu) {
  auto half = [](uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) {
      f = std::ldexp(float(man), -24);
    } else {
      uint32_t u = sign | ((exp + 112) << 23) | (man << 13);
      std::memcpy(&f, &u, 4);
      return f;
    }
    return sign ? -f : f;
  };
  if (gpu.size() != cpu.size() || cpu.empty()) {
    return ::testing::AssertionFailure() << name << ": sizes " << gpu.size() << " / " << cpu.size();
  }
  double max_err = 0, sum_err = 0, max_ref = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double e = std::fabs(double(half(gpu[i])) - half(cpu[i]));
    max_err = std::isfinite(e) ? std::max(max_err, e) : INFINITY;
    sum_err += e;
    max_ref = std::max(max_ref, double(half(cpu[i])));
  }
  const double mean_err = sum_err / cpu.size();
  // bf16 Q/K (8-bit mantissa) move a logit q.k/sqrt(d) by ~2^-8 of its size; probabilities move
  // by about as much of themselves.
  const bool ok = max_err <= 2e-2 && mean_err <= 1e-3;
  Rows().push_back({name, max_err, max_ref, mean_err, "(relL2 column: mean|err|)", ok});
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": max|err| " << max_err << " mean " << mean_err;
}

class GpuAttnCache : public ::testing::TestWithParam<int> {};

TEST_P(GpuAttnCache, CaptureAndHitMatchCpu) {
  REQUIRE_GPU_BACKEND();
  const int tp = GetParam();
  REQUIRE_GPUS(tp);
  const ModelConfig c = RandomConfig(64, 4);
  ModelPair m(RandomShards(c, 31), tp);
  ASSERT_TRUE(m.status().ok()) << m.status();
  const std::string tag = "attncache" + std::string(tp == 1 ? "" : " tp" + std::to_string(tp));
  const int n = 150;
  const std::vector<int32_t> prompt = RandomTokens(n, c.vocab_size, 5);

  // Capture: the same prompt on both sides, each keeping its maps.
  attncache::AttentionCapture cpu_capture(c.num_layers, c.num_heads, n);
  attncache::AttentionCapture gpu_capture(c.num_layers, c.num_heads, n);
  ModelPair::Seq s0 = m.NewSequence(n);
  std::vector<float> cpu_hidden, gpu_hidden;
  {
    ForwardItem ci{&s0.cpu, prompt, 0, nullptr, &cpu_capture, &cpu_hidden};
    ForwardItem gi{&s0.gpu, prompt, 0, nullptr, &gpu_capture, &gpu_hidden};
    std::vector<float> cl, gl;
    ASSERT_TRUE(m.cpu().Forward(absl::MakeConstSpan(&ci, 1), &cl).ok());
    ASSERT_TRUE(m.gpu().Forward(absl::MakeConstSpan(&gi, 1), &gl, false).ok());
    EXPECT_TRUE(CompareLogits(tag + " capture forward logits", gl, cl, c.vocab_size));
    EXPECT_TRUE(CompareMaps(tag + " captured maps", gpu_capture.maps(), cpu_capture.maps()));
    // The final-norm hidden states (what Embed pools), compared as rows of logits are.
    EXPECT_TRUE(CompareLogits(tag + " final hidden states", gpu_hidden, cpu_hidden,
                              c.hidden_size));
  }

  // A hit on the CPU's maps, on both sides (the GPU's A @ V against the CPU's).
  attncache::CachedAttention cpu_hit(cpu_capture.view());
  attncache::CachedAttention gpu_hit(cpu_capture.view(), /*key=*/7);
  std::vector<float> first_hit;
  for (int round = 0; round < 2; ++round) {  // round 1 finds the maps resident
    ModelPair::Seq s = m.NewSequence(n);
    ForwardItem ci{&s.cpu, prompt, 0, nullptr, &cpu_hit};
    ForwardItem gi{&s.gpu, prompt, 0, nullptr, &gpu_hit};
    std::vector<float> cl, gl;
    ASSERT_TRUE(m.cpu().Forward(absl::MakeConstSpan(&ci, 1), &cl).ok());
    absl::Status st = m.gpu().Forward(absl::MakeConstSpan(&gi, 1), &gl, false);
    ASSERT_TRUE(st.ok()) << st;
    if (round == 0) {
      EXPECT_TRUE(CompareLogits(tag + " hit (A @ V) logits", gl, cl, c.vocab_size));
      first_hit = gl;
    } else {
      EXPECT_EQ(gl, first_hit) << "a resident hit must repeat the first hit exactly";
      Rows().push_back({tag + " resident hit == first hit", 0, 0, 0, "bitwise",
                        gl == first_hit});
    }
  }

  // A prefix of the entry serves a shorter input (the first rows of a causal map), in one batch
  // with an ordinary prompt (the mixed path: attention for both, then the hit's rows replaced).
  const int short_n = 90;
  const std::vector<int32_t> shorter(prompt.begin(), prompt.begin() + short_n);
  const std::vector<int32_t> other = RandomTokens(70, c.vocab_size, 6);
  ModelPair::Seq s1 = m.NewSequence(short_n), s2 = m.NewSequence(70);
  std::vector<ForwardItem> cb{{&s1.cpu, shorter, 0, nullptr, &cpu_hit}, {&s2.cpu, other, 0}};
  std::vector<ForwardItem> gb{{&s1.gpu, shorter, 0, nullptr, &gpu_hit}, {&s2.gpu, other, 0}};
  std::vector<float> cl, gl;
  ASSERT_TRUE(m.cpu().Forward(cb, &cl).ok());
  absl::Status st = m.gpu().Forward(gb, &gl, false);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(CompareLogits(tag + " mixed batch: prefix hit + prompt", gl, cl, c.vocab_size));

  // Misuse is refused before any work: a hit on a sequence that already holds tokens.
  ModelPair::Seq s3 = m.NewSequence(n + 1);
  ForwardItem plain{&s3.gpu, shorter, 0};
  ASSERT_TRUE(m.gpu().Forward(absl::MakeConstSpan(&plain, 1), &gl, false).ok());
  ForwardItem late{&s3.gpu, absl::MakeConstSpan(prompt.data(), 1), short_n, nullptr, &gpu_hit};
  EXPECT_EQ(m.gpu().Forward(absl::MakeConstSpan(&late, 1), &gl, false).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Tp, GpuAttnCache, ::testing::Values(1, 2), TpName);


// ---------------------------------------------------------------------------------------------
// The host-staged KV handoff on the GPU (GpuModel::ReadKvSlots / WriteKvSlots, what
// disaggregated prefill and decode workers move): slots read after a GPU prefill match the CPU
// model's cache (bf16 tolerance), a CPU cache written into a fresh GPU sequence decodes like the
// CPU, and writing then reading returns the values rounded to bf16 exactly.

class GpuKvSlots : public ::testing::TestWithParam<int> {};

TEST_P(GpuKvSlots, ReadAfterPrefillAndDecodeAfterWrite) {
  REQUIRE_GPU_BACKEND();
  const int tp = GetParam();
  REQUIRE_GPUS(tp);
  const ModelConfig c = RandomConfig(64, 4);
  ModelPair m(RandomShards(c, 41), tp);
  ASSERT_TRUE(m.status().ok()) << m.status();
  const std::string tag = "kv slots" + std::string(tp == 1 ? "" : " tp" + std::to_string(tp));
  const int n = 75;  // spans 5 blocks, the last one partly
  const std::vector<int32_t> prompt = RandomTokens(n, c.vocab_size, 8);
  ModelPair::Seq a = m.NewSequence(n + 1);
  std::vector<Step> prefill{{&a, prompt}};
  ASSERT_TRUE(RunBoth(m, tag + " prefill", prefill));

  const size_t row = size_t(c.num_kv_heads) * c.head_dim;
  std::vector<float> gpu_k, cpu_k, gpu_v, cpu_v;
  for (int l = 0; l < c.num_layers; ++l) {
    std::vector<float> k(n * row), v(n * row);
    // Two reads (slots 0..29 and 30..74) exercise ranges that start inside a block.
    ASSERT_TRUE(m.gpu().ReadKvSlots(a.gpu, l, 0, 30, k.data(), v.data()).ok());
    absl::Status st = m.gpu().ReadKvSlots(a.gpu, l, 30, n - 30, k.data() + 30 * row,
                                          v.data() + 30 * row);
    ASSERT_TRUE(st.ok()) << st;
    gpu_k.insert(gpu_k.end(), k.begin(), k.end());
    gpu_v.insert(gpu_v.end(), v.begin(), v.end());
    for (int s = 0; s < n; ++s) {
      const float* ck = m.cpu_cache().k_slot(l, a.cpu.blocks, s);
      const float* cv = m.cpu_cache().v_slot(l, a.cpu.blocks, s);
      cpu_k.insert(cpu_k.end(), ck, ck + row);
      cpu_v.insert(cpu_v.end(), cv, cv + row);
    }
  }
  // Rows of head_dim values compared like logits rows (relL2 and max error per row).
  EXPECT_TRUE(CompareLogits(tag + " K read after prefill", gpu_k, cpu_k, int(row)));
  EXPECT_TRUE(CompareLogits(tag + " V read after prefill", gpu_v, cpu_v, int(row)));

  // The CPU's cache written into a fresh GPU sequence; the next token decodes alike.
  ModelPair::Seq b = m.NewSequence(n + 1);
  for (int l = 0; l < c.num_layers; ++l) {
    absl::Status st = m.gpu().WriteKvSlots(b.gpu, l, 0, n, cpu_k.data() + size_t(l) * n * row,
                                           cpu_v.data() + size_t(l) * n * row);
    ASSERT_TRUE(st.ok()) << st;
  }
  b.gpu.layer_lengths.assign(c.num_layers, n);
  b.gpu.num_positions = n;
  // Read back: exactly the bf16 rounding of what was written.
  std::vector<float> back_k(n * row), back_v(n * row), want(n * row);
  ASSERT_TRUE(m.gpu().ReadKvSlots(b.gpu, 1, 0, n, back_k.data(), back_v.data()).ok());
  for (size_t i = 0; i < want.size(); ++i) want[i] = RoundBf16(cpu_k[size_t(n) * row + i]);
  EXPECT_EQ(back_k, want) << "write then read must return the bf16-rounded values";
  Rows().push_back({tag + " write then read == bf16(values)", 0, 0, 0, "bitwise", back_k == want});

  const int32_t next = 17;
  ForwardItem ci{&a.cpu, absl::MakeConstSpan(&next, 1), n};
  ForwardItem gi{&b.gpu, absl::MakeConstSpan(&next, 1), n};
  std::vector<float> cl, gl;
  ASSERT_TRUE(m.cpu().Forward(absl::MakeConstSpan(&ci, 1), &cl).ok());
  absl::Status st = m.gpu().Forward(absl::MakeConstSpan(&gi, 1), &gl, false);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(CompareLogits(tag + " decode after write", gl, cl, c.vocab_size));

  // Out of range: a read past the sequence's blocks is refused, not performed.
  std::vector<float> big((n + 100) * row);
  EXPECT_EQ(m.gpu().ReadKvSlots(b.gpu, 0, 0, n + 100, big.data(), big.data()).code(),
            absl::StatusCode::kOutOfRange);
}

INSTANTIATE_TEST_SUITE_P(Tp, GpuKvSlots, ::testing::Values(1, 2), TpName);

// The NCCL transport between worker processes (GpuModel::OpenKvLink, engine/gpu/peer_kv_link.h),
// here with both ends in one process on two GPUs (one thread each, as two processes would be):
// a CLAA-pruned prefill's compact cache goes GPU 0 -> GPU 1 into different block ids and reads
// back bit for bit, and the next token decodes alike on both. Then every wait is bounded: a
// receive nobody sends to, and a join nobody answers, end at their deadline or cancel, and a
// new link works afterwards.
TEST(GpuKvLink, CompactCacheBetweenGpusAndBoundedWaits) {
  REQUIRE_GPU_BACKEND();
  REQUIRE_GPUS(2);
  const ModelConfig c = RandomConfig(64, 4);
  ModelWeights w = RandomShards(c, 43)(TpShard{});
  RoundWeights(w);
  GpuModelOptions o0, o1;
  o0.num_blocks = o1.num_blocks = kNumBlocks;
  o0.block_size = o1.block_size = kBlockSize;
  o1.device = 1;
  auto a = (*Library())->backend().CreateModel(w, o0);
  auto b = (*Library())->backend().CreateModel(w, o1);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
  GpuModel& src = **a;
  GpuModel& dst = **b;

  const int n = 300;
  const std::vector<int32_t> prompt = RandomTokens(n, c.vocab_size, 9);
  SequenceKv ka(c.num_layers), kb(c.num_layers);
  for (int i = 0; i < (n + kBlockSize) / kBlockSize + 1; ++i) {
    ka.blocks.push_back(i);
    kb.blocks.push_back(kNumBlocks - 1 - i);  // other ids: the receiver writes at its own
  }
  PrefillOptions opts;
  opts.pruning = DefaultPruningConfig(PruningMethod::kClaa, c.num_layers, 0.2);
  ForwardItem item{&ka, prompt, 0, &opts};
  std::vector<float> logits;
  ASSERT_TRUE(src.Forward(absl::MakeConstSpan(&item, 1), &logits, false).ok());
  EXPECT_LT(ka.layer_lengths.back(), n) << "the prefill should have pruned the cache";

  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  absl::StatusOr<std::string> id = dst.NewKvLinkId();
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<std::unique_ptr<GpuKvLink>> sender = absl::UnknownError("not run");
  std::thread join([&] { sender = src.OpenKvLink(*id, 0, deadline, nullptr); });
  absl::StatusOr<std::unique_ptr<GpuKvLink>> receiver = dst.OpenKvLink(*id, 1, deadline, nullptr);
  join.join();
  ASSERT_TRUE(sender.ok() && receiver.ok()) << sender.status() << " / " << receiver.status();

  absl::StatusOr<size_t> sent = absl::UnknownError("not run");
  std::thread send([&] { sent = (*sender)->Send(ka, deadline, nullptr); });
  auto stage = (*receiver)->Recv(ka.layer_lengths, deadline, nullptr);
  send.join();
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_TRUE(stage.ok()) << stage.status();
  size_t slots = 0;
  for (int len : ka.layer_lengths) slots += len;
  EXPECT_EQ((*stage)->bytes(), 2 * slots * c.num_kv_heads * c.head_dim * 2)
      << "the link moves the compact cache's bf16 bytes";
  EXPECT_EQ(*sent, (*stage)->bytes()) << "bytes sent = bytes received";
  ASSERT_TRUE(dst.WriteStagedKv(**stage, kb).ok());
  kb.layer_lengths = ka.layer_lengths;
  kb.num_positions = ka.num_positions;

  const size_t row = size_t(c.num_kv_heads) * c.head_dim;
  bool same = true;
  for (int l = 0; l < c.num_layers; ++l) {
    const int len = ka.layer_lengths[l];
    std::vector<float> k0(len * row), v0(len * row), k1(len * row), v1(len * row);
    ASSERT_TRUE(src.ReadKvSlots(ka, l, 0, len, k0.data(), v0.data()).ok());
    ASSERT_TRUE(dst.ReadKvSlots(kb, l, 0, len, k1.data(), v1.data()).ok());
    same = same && k0 == k1 && v0 == v1;
  }
  EXPECT_TRUE(same) << "the received cache differs from the sent one";
  Rows().push_back({"kv link: received compact cache == sent", 0, 0, 0, "bitwise", same});

  const int32_t next = 5;
  ForwardItem da{&ka, absl::MakeConstSpan(&next, 1), ka.num_positions};
  ForwardItem db{&kb, absl::MakeConstSpan(&next, 1), kb.num_positions};
  std::vector<float> la, lb;
  ASSERT_TRUE(src.Forward(absl::MakeConstSpan(&da, 1), &la, false).ok());
  ASSERT_TRUE(dst.Forward(absl::MakeConstSpan(&db, 1), &lb, false).ok());
  EXPECT_TRUE(CompareLogits("kv link: decode after the transfer", lb, la, c.vocab_size));

  // A receive nobody sends to ends at its deadline and breaks the link. The other end's next
  // send returns in bounded time too: small messages fit NCCL's buffers, so it may even
  // "succeed" into the aborted peer (the server's protocol never reuses a link after an abort:
  // the decode worker opens a new one, which replaces the old one at the prefill worker).
  absl::Time t0 = absl::Now();
  auto lost = (*receiver)->Recv(ka.layer_lengths, absl::Now() + absl::Milliseconds(300), nullptr);
  const double waited = absl::ToDoubleSeconds(absl::Now() - t0);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kDeadlineExceeded) << lost.status();
  EXPECT_LT(waited, 5.0);
  EXPECT_TRUE((*receiver)->broken());
  t0 = absl::Now();
  absl::Status orphan =
      (*sender)->Send(ka, absl::Now() + absl::Milliseconds(500), nullptr).status();
  const double orphan_s = absl::ToDoubleSeconds(absl::Now() - t0);
  EXPECT_LT(orphan_s, 6.0);
  std::printf("kv link: receive without a sender ended after %.3f s (%s); a send to the aborted "
              "peer returned after %.3f s (%s)\n", waited, lost.status().ToString().c_str(),
              orphan_s, orphan.ToString().c_str());
  Rows().push_back({"kv link: lost peer ends at the deadline", waited, 0, 0, "seconds",
                    lost.status().code() == absl::StatusCode::kDeadlineExceeded});

  // A join nobody answers ends when cancelled.
  absl::StatusOr<std::string> lonely = dst.NewKvLinkId();
  ASSERT_TRUE(lonely.ok());
  const absl::Time cancel_at = absl::Now() + absl::Milliseconds(200);
  auto cancelled = dst.OpenKvLink(*lonely, 1, absl::Now() + absl::Seconds(60),
                                  [&] { return absl::Now() > cancel_at; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();

  // A fresh link works again.
  sender->reset();
  receiver->reset();
  id = dst.NewKvLinkId();
  ASSERT_TRUE(id.ok());
  std::thread rejoin([&] { sender = src.OpenKvLink(*id, 0, deadline, nullptr); });
  receiver = dst.OpenKvLink(*id, 1, deadline, nullptr);
  rejoin.join();
  ASSERT_TRUE(sender.ok() && receiver.ok()) << sender.status() << " / " << receiver.status();
  std::thread resend([&] { sent = (*sender)->Send(ka, deadline, nullptr); });
  stage = (*receiver)->Recv(ka.layer_lengths, deadline, nullptr);
  resend.join();
  EXPECT_TRUE(sent.ok() && stage.ok()) << sent.status() << " / " << stage.status();
}

}  // namespace
}  // namespace claa::gpu
