// Prompt pruning in the forward pass (CLAA, FastKV, GemFilter, Oracle) against an independent
// double-precision reference: which tokens are kept, what the pruned prefill's logits are, what
// the compact KV cache holds, decoding on it, and tensor parallelism (tp = 1, 2, 4 agree).
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "engine/pruning/pruning_config.h"
#include "engine/runtime/llama_model.h"
#include "engine/runtime/model_runner.h"
#include "engine/runtime/prefill_pruner.h"
#include "gtest/gtest.h"
#include "tests/unit/runtime/reference_model.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

using ::claa::testing::ReferenceLogits;
using ::claa::testing::ReferenceTrace;
using ::claa::testing::RelL2;
using ::claa::testing::SmallConfig;

constexpr float kInitStd = 0.15f;
constexpr int kPrompt = 30;

std::vector<int32_t> Prompt(int n, int vocab) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 37 + 11) % vocab;
  return t;
}

// SmallConfig has 3 layers: layer 0 keeps its full cache, layer 1 is the pruning layer (its cache
// is compacted per KV head), layer 2 runs on the kept tokens only.
PruningConfig Config(PruningMethod method, double keep) {
  PruningConfig p;
  p.method = method;
  p.keep_ratio = keep;
  p.pruning_layer = 1;
  p.window = 4;
  p.aggregation_layers = method == PruningMethod::kClaa ? 2 : 1;
  p.min_layer = 1;
  p.pooling_kernel = method == PruningMethod::kGemFilter ? 5 : 3;
  return p;
}

struct Harness {
  Harness()
      : weights(MakeRandomWeights(SmallConfig(), 77, {0, 1}, kInitStd)),
        cache(3, 64, 4, weights.local_kv_heads, weights.config.head_dim),
        blocks(64, 4),
        model(&weights, nullptr, &cache) {}

  // Prefill of `tokens` with optional prefill options; returns last-token logits.
  std::vector<float> Prefill(SequenceKv* kv, const std::vector<int32_t>& tokens,
                             const PrefillOptions* options) {
    EXPECT_TRUE(ReserveTokens(blocks, kv, int(tokens.size())).ok());
    ForwardItem item{kv, tokens, 0, options};
    std::vector<float> logits;
    absl::Status s = model.Forward({&item, 1}, &logits);
    EXPECT_TRUE(s.ok()) << s;
    return logits;
  }
  std::vector<float> Decode(SequenceKv* kv, int32_t token) {
    EXPECT_TRUE(ReserveTokens(blocks, kv, kv->max_layer_length() + 1).ok());
    std::vector<int32_t> one = {token};
    ForwardItem item{kv, one, kv->num_positions};
    std::vector<float> logits;
    absl::Status s = model.Forward({&item, 1}, &logits);
    EXPECT_TRUE(s.ok()) << s;
    return logits;
  }

  ModelWeights weights;
  PagedKvCache cache;
  BlockManager blocks;
  LlamaModel model;
};

// ---- Reference scores, computed from the reference trace in double precision. ----

std::vector<double> Pool(const std::vector<double>& x, int kernel) {
  const int n = int(x.size()), r = kernel / 2;
  std::vector<double> out(n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i - r; j <= i + r; ++j) {
      if (j >= 0 && j < n) out[i] += x[j];
    }
    out[i] /= kernel;
  }
  return out;
}

// [kv_head][prefix] window scores of one layer.
std::vector<std::vector<double>> RefWindowScores(const ModelConfig& c, const ReferenceTrace& tr,
                                                 int layer, int P, int window, int pool) {
  const int d = c.head_dim, prefix = P - window, group = c.num_heads / c.num_kv_heads;
  std::vector<std::vector<double>> out(c.num_kv_heads, std::vector<double>(prefix, 0.0));
  for (int h = 0; h < c.num_heads; ++h) {
    const int g = h / group;
    std::vector<double> acc(prefix, 0.0);
    for (int t = prefix; t < P; ++t) {
      std::vector<double> p(t + 1);
      double mx = -1e300, sum = 0;
      for (int s = 0; s <= t; ++s) {
        double dot = 0;
        for (int i = 0; i < d; ++i) dot += tr.q[layer][t][h * d + i] * tr.k[layer][s][g * d + i];
        mx = std::max(mx, p[s] = dot / std::sqrt(double(d)));
      }
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int s = 0; s < prefix; ++s) acc[s] += p[s] / sum;
    }
    acc = Pool(acc, pool);
    for (int s = 0; s < prefix; ++s) out[g][s] += acc[s];
  }
  return out;
}

std::vector<double> RefLastQueryScores(const ModelConfig& c, const ReferenceTrace& tr, int layer,
                                       int P, int window, int pool) {
  const int d = c.head_dim, prefix = P - window, group = c.num_heads / c.num_kv_heads;
  std::vector<double> acc(prefix, 0.0);
  for (int h = 0; h < c.num_heads; ++h) {
    for (int s = 0; s < prefix; ++s) {
      for (int i = 0; i < d; ++i) {
        acc[s] += tr.q[layer][P - 1][h * d + i] * tr.k[layer][s][(h / group) * d + i];
      }
    }
  }
  return Pool(acc, pool);
}

std::vector<double> ZScore(const std::vector<double>& x) {
  double mean = std::accumulate(x.begin(), x.end(), 0.0) / x.size(), sq = 0;
  for (double v : x) sq += (v - mean) * (v - mean);
  const double sd = std::sqrt(sq / x.size());
  std::vector<double> z(x.size());
  for (size_t i = 0; i < x.size(); ++i) z[i] = sd > 0 ? (x[i] - mean) / sd : 0.0;
  return z;
}

// Top (keep - window) prefix indices by score (ties: lower index) + the window, ascending.
std::vector<int> RefSelect(const std::vector<double>& score, int P, int window, int keep) {
  std::vector<int> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return score[a] > score[b]; });
  idx.resize(keep - window);
  for (int t = P - window; t < P; ++t) idx.push_back(t);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int> RefKept(const ModelConfig& c, const ReferenceTrace& tr, const PruningConfig& p,
                         int P) {
  const int keep = p.KeepCount(P);
  std::vector<double> score(P - p.window, -1e300);
  if (p.method == PruningMethod::kClaa) {
    for (int l = p.pruning_layer - p.aggregation_layers + 1; l <= p.pruning_layer; ++l) {
      for (const auto& row : RefWindowScores(c, tr, l, P, p.window, p.pooling_kernel)) {
        auto z = ZScore(row);
        for (size_t s = 0; s < z.size(); ++s) score[s] = std::max(score[s], z[s]);
      }
    }
  } else if (p.method == PruningMethod::kFastKv) {
    std::fill(score.begin(), score.end(), 0.0);
    for (const auto& row : RefWindowScores(c, tr, p.pruning_layer, P, p.window, p.pooling_kernel))
      for (size_t s = 0; s < row.size(); ++s) score[s] += row[s];
  } else if (p.method == PruningMethod::kGemFilter) {
    score = RefLastQueryScores(c, tr, p.pruning_layer, P, p.window, p.pooling_kernel);
  }
  return RefSelect(score, P, p.window, keep);
}

std::vector<double> LastRow(const std::vector<double>& m, int vocab) {
  return std::vector<double>(m.end() - vocab, m.end());
}
double RelL2D(const std::vector<float>& a, const std::vector<double>& b) {
  std::vector<float> bf(b.begin(), b.end());
  return RelL2(a, bf);
}

// ---- Tests ----

TEST(PrunedForwardTest, KeepRatioOneGivesExactlyTheFullLogits) {
  Harness h;
  const auto prompt = Prompt(kPrompt, h.weights.config.vocab_size);
  SequenceKv full(3);
  const auto want = h.Prefill(&full, prompt, nullptr);
  for (PruningMethod m : {PruningMethod::kClaa, PruningMethod::kFastKv, PruningMethod::kGemFilter,
                          PruningMethod::kOracle}) {
    SCOPED_TRACE(PruningMethodName(m));
    PrefillOptions options;
    options.pruning = Config(m, 1.0);
    options.oracle_scores = testing::RandomVector(kPrompt, 5);
    PrefillReport report;
    options.report = &report;
    SequenceKv kv(3);
    EXPECT_EQ(h.Prefill(&kv, prompt, &options), want);  // bit for bit
    EXPECT_EQ(kv.layer_lengths, std::vector<int>(3, kPrompt));
    EXPECT_EQ(kv.num_positions, kPrompt);
    EXPECT_EQ(report.kept_tokens.size(), size_t(kPrompt));
    // Decoding on goes on identically too.
    EXPECT_EQ(h.Decode(&kv, 9), h.Decode(&full, 9));
    ReleaseSequence(h.blocks, &kv);
    ReleaseSequence(h.blocks, &full);
    h.Prefill(&full, prompt, nullptr);
  }
}

TEST(PrunedForwardTest, SelectionsMatchTheIndependentReference) {
  Harness h;
  const ModelConfig& c = h.weights.config;
  const auto prompt = Prompt(kPrompt, c.vocab_size);
  ReferenceTrace trace;
  ReferenceLogits(h.weights, prompt, {}, -1, &trace);
  for (PruningMethod m : {PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter}) {
    for (double keep : {0.2, 0.4}) {
      SCOPED_TRACE(std::string(PruningMethodName(m)) + " keep " + std::to_string(keep));
      PrefillOptions options;
      options.pruning = Config(m, keep);
      PrefillReport report;
      options.report = &report;
      SequenceKv kv(3);
      const auto logits = h.Prefill(&kv, prompt, &options);
      const auto want = RefKept(c, trace, options.pruning, kPrompt);
      EXPECT_EQ(report.kept_tokens, want);
      const int k = options.pruning.KeepCount(kPrompt);
      ASSERT_EQ(int(report.kept_tokens.size()), k);
      if (m == PruningMethod::kGemFilter) {
        // The kept tokens re-run from position 0.
        std::vector<int32_t> sub;
        for (int t : want) sub.push_back(prompt[t]);
        EXPECT_LT(RelL2D(logits, LastRow(ReferenceLogits(h.weights, sub), c.vocab_size)), 1e-5);
        EXPECT_EQ(kv.num_positions, k);
        EXPECT_EQ(kv.layer_lengths, std::vector<int>(3, k));
      } else {
        // Token-selective propagation: layer 2 sees only the kept tokens at their positions.
        const auto ref = ReferenceLogits(h.weights, prompt, want, options.pruning.pruning_layer);
        EXPECT_LT(RelL2D(logits, LastRow(ref, c.vocab_size)), 1e-5);
        EXPECT_EQ(kv.num_positions, kPrompt);
        EXPECT_EQ(kv.layer_lengths, (std::vector<int>{kPrompt, k, k}));
        EXPECT_EQ(report.layer_lengths, kv.layer_lengths);
      }
      ReleaseSequence(h.blocks, &kv);
    }
  }
}

TEST(PrunedForwardTest, OracleKeepsTheGivenRanking) {
  Harness h;
  const auto prompt = Prompt(kPrompt, h.weights.config.vocab_size);
  PrefillOptions options;
  options.pruning = Config(PruningMethod::kOracle, 0.3);
  std::vector<float> scores(kPrompt);
  for (int i = 0; i < kPrompt; ++i) scores[i] = float((i * 7) % kPrompt);
  options.oracle_scores = scores;
  PrefillReport report;
  options.report = &report;
  SequenceKv kv(3);
  h.Prefill(&kv, prompt, &options);
  std::vector<double> ds(scores.begin(), scores.end() - 4);
  EXPECT_EQ(report.kept_tokens, RefSelect(ds, kPrompt, 4, options.pruning.KeepCount(kPrompt)));
}

// Layer 1's cache keeps, per KV head, the top tokens by that head's own window score; decoding
// then attends over per-layer, per-head key sets and continues at position = prompt length.
TEST(PrunedForwardTest, CompactCacheAndDecodeMatchTheReference) {
  Harness h;
  const ModelConfig& c = h.weights.config;
  const auto prompt = Prompt(kPrompt, c.vocab_size);
  PrefillOptions options;
  options.pruning = Config(PruningMethod::kClaa, 0.4);
  PrefillReport report;
  options.report = &report;
  SequenceKv kv(3), full(3);
  h.Prefill(&full, prompt, nullptr);
  h.Prefill(&kv, prompt, &options);
  const int k = options.pruning.KeepCount(kPrompt), d = c.head_dim, w = options.pruning.window;

  ReferenceTrace trace;
  ReferenceLogits(h.weights, prompt, report.kept_tokens, 1, &trace);
  // keys[layer][kv_head]: the prompt positions each head attends to while decoding.
  std::vector<std::vector<std::vector<int>>> keys(3, std::vector<std::vector<int>>(c.num_kv_heads));
  const auto per_head = RefWindowScores(c, trace, 1, kPrompt, w, options.pruning.pooling_kernel);
  for (int g = 0; g < c.num_kv_heads; ++g) {
    keys[0][g].resize(kPrompt);
    std::iota(keys[0][g].begin(), keys[0][g].end(), 0);
    keys[1][g] = RefSelect(per_head[g], kPrompt, w, k);
    keys[2][g] = report.kept_tokens;
    // The compacted slots hold exactly those tokens' keys and values (bit for bit: layers 0-1
    // ran the same computation on the whole prompt in both sequences).
    for (int s = 0; s < k; ++s) {
      const int src = keys[1][g][s];
      EXPECT_TRUE(std::equal(h.cache.k_slot(1, kv.blocks, s) + g * d,
                             h.cache.k_slot(1, kv.blocks, s) + (g + 1) * d,
                             h.cache.k_slot(1, full.blocks, src) + g * d))
          << "head " << g << " slot " << s;
      EXPECT_TRUE(std::equal(h.cache.v_slot(1, kv.blocks, s) + g * d,
                             h.cache.v_slot(1, kv.blocks, s) + (g + 1) * d,
                             h.cache.v_slot(1, full.blocks, src) + g * d));
    }
  }

  // Reference decode of two tokens over those key sets, in double precision.
  const int H = c.hidden_size, nh = c.num_heads, F = c.intermediate_size;
  const int group = nh / c.num_kv_heads;
  auto matvec = [](const std::vector<float>& m, int out, int in, const std::vector<double>& x) {
    return testing::RefMatvec(m, out, in, x);
  };
  auto rms = [&](const std::vector<double>& x, const std::vector<float>& g) {
    return testing::RefRmsNorm(x, g, c.rms_norm_eps);
  };
  auto rope = [&](std::vector<double>& v, int heads, int pos) {
    testing::RefRope(v, heads, d, pos, c.rope_theta);
  };
  // Decoded tokens' own K/V per layer, appended as they come.
  std::vector<std::vector<std::vector<double>>> dk(3), dv(3);
  const int32_t next[2] = {5, 42};
  for (int step = 0; step < 2; ++step) {
    const int pos = kPrompt + step;
    std::vector<double> x(H);
    for (int i = 0; i < H; ++i) x[i] = h.weights.embed_tokens[size_t(next[step]) * H + i];
    for (int l = 0; l < 3; ++l) {
      const LayerWeights& lw = h.weights.layers[l];
      auto n = rms(x, lw.input_norm);
      auto q = matvec(lw.q_proj, nh * d, H, n), kk = matvec(lw.k_proj, c.num_kv_heads * d, H, n);
      auto vv = matvec(lw.v_proj, c.num_kv_heads * d, H, n);
      rope(q, nh, pos);
      rope(kk, c.num_kv_heads, pos);
      dk[l].push_back(kk);
      dv[l].push_back(vv);
      std::vector<double> attn(nh * d, 0.0);
      for (int hh = 0; hh < nh; ++hh) {
        const int g = hh / group;
        std::vector<const double*> ks, vs;
        for (int t : keys[l][g]) {
          ks.push_back(&trace.k[l][t][g * d]);
          vs.push_back(&trace.v[l][t][g * d]);
        }
        for (size_t j = 0; j < dk[l].size(); ++j) {
          ks.push_back(&dk[l][j][g * d]);
          vs.push_back(&dv[l][j][g * d]);
        }
        std::vector<double> p(ks.size());
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j < ks.size(); ++j) {
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += q[hh * d + i] * ks[j][i];
          mx = std::max(mx, p[j] = dot / std::sqrt(double(d)));
        }
        for (double& e : p) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j < ks.size(); ++j)
          for (int i = 0; i < d; ++i) attn[hh * d + i] += p[j] / sum * vs[j][i];
      }
      auto o = matvec(lw.o_proj, H, nh * d, attn);
      for (int i = 0; i < H; ++i) x[i] += o[i];
      auto m = rms(x, lw.post_attention_norm);
      auto gt = matvec(lw.gate_proj, F, H, m), up = matvec(lw.up_proj, F, H, m);
      for (int i = 0; i < F; ++i) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
      auto dn = matvec(lw.down_proj, H, F, gt);
      for (int i = 0; i < H; ++i) x[i] += dn[i];
    }
    const auto ref = matvec(h.weights.LmHead(), c.vocab_size, H, rms(x, h.weights.final_norm));
    const auto got = h.Decode(&kv, next[step]);
    EXPECT_LT(RelL2D(got, ref), 1e-5) << "step " << step;
    EXPECT_EQ(kv.num_positions, pos + 1);
    EXPECT_EQ(kv.layer_lengths, (std::vector<int>{kPrompt + step + 1, k + step + 1, k + step + 1}));
  }
}

TEST(PrunedForwardTest, RejectsBadOptions) {
  Harness h;
  const auto prompt = Prompt(kPrompt, h.weights.config.vocab_size);
  std::vector<float> logits;
  auto code = [&](const PrefillOptions& o, int start_pos = 0) {
    SequenceKv kv(3);
    EXPECT_TRUE(ReserveTokens(h.blocks, &kv, 64).ok());
    kv.num_positions = start_pos;
    ForwardItem item{&kv, prompt, start_pos, &o};
    auto s = h.model.Forward({&item, 1}, &logits).code();
    ReleaseSequence(h.blocks, &kv);
    return s;
  };
  PrefillOptions o;
  o.pruning = Config(PruningMethod::kClaa, 0.5);
  o.pruning.pruning_layer = 3;  // the model has 3 layers
  EXPECT_EQ(code(o), absl::StatusCode::kInvalidArgument);
  o.pruning = Config(PruningMethod::kOracle, 0.5);  // no oracle scores
  EXPECT_EQ(code(o), absl::StatusCode::kInvalidArgument);
  o.pruning = Config(PruningMethod::kClaa, 0.5);
  EXPECT_EQ(code(o, 2), absl::StatusCode::kInvalidArgument);  // not a fresh prompt
  EXPECT_EQ(code(o), absl::StatusCode::kOk);
  EXPECT_EQ(h.blocks.num_used(), 0);
}

// Every rank keeps the same tokens, and tp = 2 and 4 match tp = 1.
TEST(PrunedForwardTest, TensorParallelRanksAgreeWithTp1) {
  const ModelConfig c = SmallConfig();
  const auto prompt = Prompt(kPrompt, c.vocab_size);
  for (PruningMethod m : {PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter}) {
    SCOPED_TRACE(PruningMethodName(m));
    std::vector<int> kept1;
    std::vector<float> logits1, decode1;
    for (int tp : {1, 2, 4}) {
      auto runner = ModelRunner::Create(
          [&c](TpShard s) -> absl::StatusOr<ModelWeights> {
            return MakeRandomWeights(c, 77, s, kInitStd);
          },
          tp, RunnerOptions{32, 4});
      ASSERT_TRUE(runner.ok()) << runner.status();
      PrefillOptions options;
      options.pruning = Config(m, 0.3);
      PrefillReport report;
      options.report = &report;
      SequenceKv kv(3);
      ASSERT_TRUE(ReserveTokens((*runner)->block_manager(), &kv, kPrompt + 1).ok());
      ForwardItem item{&kv, prompt, 0, &options};
      std::vector<float> logits, decode;
      ASSERT_TRUE((*runner)->Forward({&item, 1}, &logits).ok());
      std::vector<int32_t> one = {3};
      ForwardItem step{&kv, one, kv.num_positions};
      ASSERT_TRUE((*runner)->Forward({&step, 1}, &decode).ok());
      if (tp == 1) {
        kept1 = report.kept_tokens;
        logits1 = logits;
        decode1 = decode;
        continue;
      }
      SCOPED_TRACE("tp " + std::to_string(tp));
      EXPECT_EQ(report.kept_tokens, kept1);
      EXPECT_LT(RelL2(logits, logits1), 1e-5);
      EXPECT_LT(RelL2(decode, decode1), 1e-5);
    }
  }
}

}  // namespace
}  // namespace claa
