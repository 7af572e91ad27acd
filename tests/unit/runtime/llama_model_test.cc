// LlamaModel / ModelRunner on small random models: against a naive dense reference,
// incremental decode vs one prefill, batched vs alone, validation, tensor parallelism.
#include "engine/runtime/llama_model.h"

#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "engine/runtime/cpu_communicator.h"
#include "engine/runtime/model_runner.h"
#include "gtest/gtest.h"
#include "tests/unit/runtime/reference_model.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

using ::claa::testing::ReferenceLogits;
using ::claa::testing::RelL2;
using ::claa::testing::SmallConfig;

// Larger than the 0.02 default so attention is peaked and every component moves the logits.
constexpr float kInitStd = 0.15f;

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 31 + salt * 17 + 3) % vocab;
  return t;
}

// One tp=1 model with its own cache and block manager.
struct Harness {
  explicit Harness(const ModelConfig& c, int num_blocks = 64, int block_size = 4)
      : weights(MakeRandomWeights(c, 1234, {0, 1}, kInitStd)),
        cache(c.num_layers, num_blocks, block_size, c.num_kv_heads, c.head_dim),
        blocks(num_blocks, block_size),
        model(&weights, nullptr, &cache) {}

  SequenceKv NewSeq() { return SequenceKv(weights.config.num_layers); }

  // Reserves and runs one item.
  std::vector<float> Run(SequenceKv* kv, absl::Span<const int32_t> tokens, bool all = false) {
    EXPECT_TRUE(ReserveTokens(blocks, kv, kv->max_layer_length() + int(tokens.size())).ok());
    std::vector<float> logits;
    ForwardItem item{kv, tokens, kv->num_positions};
    absl::Status s = model.Forward({&item, 1}, &logits, all);
    EXPECT_TRUE(s.ok()) << s;
    return logits;
  }

  ModelWeights weights;
  PagedKvCache cache;
  BlockManager blocks;
  LlamaModel model;
};

std::vector<float> Row(const std::vector<float>& m, int row, int width) {
  return std::vector<float>(m.begin() + size_t(row) * width, m.begin() + size_t(row + 1) * width);
}

class ModelVariantTest : public ::testing::TestWithParam<int> {
 protected:
  // 0: plain Llama (untied head). 1: Qwen2-style q/k/v bias + o bias, tied embeddings.
  ModelConfig Config() const {
    ModelConfig c = SmallConfig();
    if (GetParam() == 1) {
      c.qkv_bias = true;
      c.o_bias = true;
      c.tie_word_embeddings = true;
    }
    return c;
  }
};

TEST_P(ModelVariantTest, MatchesNaiveDenseReference) {
  Harness h(Config());
  const auto tokens = Tokens(23, h.weights.config.vocab_size, 1);
  SequenceKv kv = h.NewSeq();
  auto logits = h.Run(&kv, tokens, /*all=*/true);
  auto ref = ReferenceLogits(h.weights, tokens);
  ASSERT_EQ(logits.size(), ref.size());
  std::vector<float> ref_f(ref.begin(), ref.end());
  // fp32 vs double through 3 layers; fp32 RoPE angles. 1e-5 relative L2.
  EXPECT_LT(RelL2(logits, ref_f), 1e-5);
  EXPECT_EQ(kv.num_positions, 23);
  EXPECT_EQ(kv.layer_lengths, std::vector<int>(3, 23));
}

TEST_P(ModelVariantTest, IncrementalDecodeEqualsFullPrefill) {
  Harness h(Config());
  const int vocab = h.weights.config.vocab_size;
  const auto tokens = Tokens(40, vocab, 2);
  SequenceKv full = h.NewSeq();
  auto all = h.Run(&full, tokens, /*all=*/true);

  // Prefill 9, a chunk of 6 (past > 0 and several new tokens), then one token at a time.
  SequenceKv inc = h.NewSeq();
  auto logits = h.Run(&inc, absl::MakeConstSpan(tokens).subspan(0, 9));
  EXPECT_LT(RelL2(logits, Row(all, 8, vocab)), 1e-5);
  logits = h.Run(&inc, absl::MakeConstSpan(tokens).subspan(9, 6));
  EXPECT_LT(RelL2(logits, Row(all, 14, vocab)), 1e-5);
  for (int t = 15; t < 40; ++t) {
    logits = h.Run(&inc, absl::MakeConstSpan(tokens).subspan(t, 1));
    ASSERT_LT(RelL2(logits, Row(all, t, vocab)), 1e-5) << "step " << t;
  }
}

TEST_P(ModelVariantTest, BatchedEqualsEachAlone) {
  Harness batched(Config(), 128), alone(Config(), 128);
  const int vocab = batched.weights.config.vocab_size;
  // Different cached prefixes (0 = fresh prefill) and different new-token counts.
  const int prefix[] = {0, 5, 13, 1};
  const int fresh[] = {7, 1, 30, 1};
  std::vector<SequenceKv> kb, ka;
  std::vector<std::vector<int32_t>> toks;
  for (int i = 0; i < 4; ++i) {
    toks.push_back(Tokens(prefix[i] + fresh[i], vocab, 10 + i));
    kb.push_back(batched.NewSeq());
    ka.push_back(alone.NewSeq());
    if (prefix[i] > 0) {
      batched.Run(&kb[i], absl::MakeConstSpan(toks[i]).subspan(0, prefix[i]));
      alone.Run(&ka[i], absl::MakeConstSpan(toks[i]).subspan(0, prefix[i]));
    }
  }
  std::vector<ForwardItem> items;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ReserveTokens(batched.blocks, &kb[i], prefix[i] + fresh[i]).ok());
    items.push_back({&kb[i], absl::MakeConstSpan(toks[i]).subspan(prefix[i]), prefix[i]});
  }
  std::vector<float> logits;
  ASSERT_TRUE(batched.model.Forward(items, &logits).ok());
  ASSERT_EQ(logits.size(), size_t(4) * vocab);
  for (int i = 0; i < 4; ++i) {
    auto want = alone.Run(&ka[i], absl::MakeConstSpan(toks[i]).subspan(prefix[i]));
    EXPECT_LT(RelL2(Row(logits, i, vocab), want), 1e-5) << "item " << i;
    EXPECT_EQ(kb[i].num_positions, prefix[i] + fresh[i]);
  }
  // all_logits in a batch: rows in batch order, one per token.
  std::vector<float> all;
  items.clear();
  std::vector<int32_t> one = {5}, two = {6, 7};
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(ReserveTokens(batched.blocks, &kb[i], kb[i].num_positions + 2).ok());
  items.push_back({&kb[0], one, kb[0].num_positions});
  items.push_back({&kb[1], two, kb[1].num_positions});
  ASSERT_TRUE(batched.model.Forward(items, &all, /*all_logits=*/true).ok());
  EXPECT_EQ(all.size(), size_t(3) * vocab);
  auto w0 = alone.Run(&ka[0], one);
  auto w1 = alone.Run(&ka[1], two, true);
  EXPECT_LT(RelL2(Row(all, 0, vocab), w0), 1e-5);
  EXPECT_LT(RelL2(Row(all, 1, vocab), Row(w1, 0, vocab)), 1e-5);
  EXPECT_LT(RelL2(Row(all, 2, vocab), Row(w1, 1, vocab)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelVariantTest, ::testing::Values(0, 1));

TEST(LlamaModelTest, RejectsBadBatchesWithoutSideEffects) {
  Harness h(SmallConfig(), 8, 4);
  SequenceKv kv = h.NewSeq();
  ASSERT_TRUE(ReserveTokens(h.blocks, &kv, 8).ok());
  std::vector<float> logits;
  auto code = [&](std::vector<ForwardItem> items) {
    return h.model.Forward(items, &logits).code();
  };
  std::vector<int32_t> good = {1, 2, 3}, bad_high = {1, 97}, bad_neg = {-1}, empty;
  EXPECT_EQ(code({{&kv, bad_high, 0}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{&kv, bad_neg, 0}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{&kv, empty, 0}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{&kv, good, 1}}), absl::StatusCode::kInvalidArgument);  // start_pos != 0
  EXPECT_EQ(code({{nullptr, good, 0}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({{&kv, good, 0}, {&kv, good, 0}}), absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> nine(9, 1);
  EXPECT_EQ(code({{&kv, nine, 0}}), absl::StatusCode::kFailedPrecondition);  // 8 slots reserved
  SequenceKv wrong_layers(2);
  EXPECT_EQ(code({{&wrong_layers, good, 0}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv.num_positions, 0);
  EXPECT_EQ(kv.layer_lengths, std::vector<int>(3, 0));
  // Positions beyond max_position_embeddings (256).
  SequenceKv far = h.NewSeq();
  far.num_positions = 255;
  far.blocks = {0, 1};
  EXPECT_EQ(code({{&far, good, 255}}), absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> last = {4};
  EXPECT_TRUE(h.model.Forward(std::vector<ForwardItem>{{&far, last, 255}}, &logits).ok());
  // Block ids outside the cache.
  SequenceKv foreign = h.NewSeq();
  foreign.blocks = {100};
  EXPECT_EQ(code({{&foreign, last, 0}}), absl::StatusCode::kInvalidArgument);
  // A valid call still works.
  EXPECT_TRUE(h.model.Forward(std::vector<ForwardItem>{{&kv, good, 0}}, &logits).ok());
  EXPECT_EQ(logits.size(), 97u);
}

// ---- Tensor parallelism through ModelRunner ----

// Runs two sequences (prefill + 4 decode steps, batched) and returns every step's logits.
std::vector<std::vector<float>> RunScript(ModelRunner& runner) {
  const int vocab = runner.config().vocab_size;
  std::vector<std::vector<float>> out;
  SequenceKv a(runner.config().num_layers), b(runner.config().num_layers);
  auto ta = Tokens(19, vocab, 3), tb = Tokens(6, vocab, 4);
  EXPECT_TRUE(ReserveTokens(runner.block_manager(), &a, 40).ok());
  EXPECT_TRUE(ReserveTokens(runner.block_manager(), &b, 40).ok());
  std::vector<ForwardItem> items = {{&a, ta, 0}, {&b, tb, 0}};
  std::vector<float> logits;
  absl::Status s = runner.Forward(items, &logits, /*all_logits=*/true);
  EXPECT_TRUE(s.ok()) << s;
  out.push_back(logits);
  for (int step = 0; step < 4; ++step) {
    std::vector<int32_t> na = {int32_t((step * 7 + 1) % vocab)}, nb = {int32_t((step * 5 + 2) % vocab)};
    items = {{&a, na, a.num_positions}, {&b, nb, b.num_positions}};
    s = runner.Forward(items, &logits);
    EXPECT_TRUE(s.ok()) << s;
    out.push_back(logits);
  }
  ReleaseSequence(runner.block_manager(), &a);
  ReleaseSequence(runner.block_manager(), &b);
  EXPECT_EQ(runner.block_manager().num_used(), 0);
  return out;
}

std::unique_ptr<ModelRunner> MakeRunner(const ModelConfig& c, int tp) {
  auto r = ModelRunner::Create(
      [&c](TpShard s) -> absl::StatusOr<ModelWeights> {
        return MakeRandomWeights(c, 99, s, kInitStd);
      },
      tp, RunnerOptions{32, 4});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

class TpTest : public ::testing::TestWithParam<int> {};

TEST_P(TpTest, MatchesTp1) {
  ModelConfig c = SmallConfig();
  if (GetParam() == 1) {  // Biases and llama3 RoPE scaling.
    c.qkv_bias = c.o_bias = true;
    c.rope_scaling.type = RopeScalingType::kLlama3;
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.original_max_position_embeddings = 16;
  }
  auto ref_runner = MakeRunner(c, 1);
  ASSERT_NE(ref_runner, nullptr);
  auto ref = RunScript(*ref_runner);
  for (int tp : {2, 4}) {
    auto runner = MakeRunner(c, tp);
    ASSERT_NE(runner, nullptr);
    EXPECT_EQ(runner->tp_size(), tp);
    auto got = RunScript(*runner);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_LT(RelL2(got[i], ref[i]), 1e-5) << "tp=" << tp << " step " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, TpTest, ::testing::Values(0, 1));

TEST(TpTest, EveryRankComputesIdenticalLogits) {
  ModelConfig c = SmallConfig();
  const int tp = 4;
  CpuCommGroup group(tp);
  BlockManager blocks(16, 4);
  SequenceKv kv(c.num_layers);
  ASSERT_TRUE(ReserveTokens(blocks, &kv, 11).ok());
  auto tokens = Tokens(11, c.vocab_size, 5);
  std::vector<std::vector<float>> logits(tp);
  std::vector<ModelWeights> weights;
  std::vector<std::unique_ptr<PagedKvCache>> caches;
  for (int r = 0; r < tp; ++r) {
    weights.push_back(MakeRandomWeights(c, 5, {r, tp}, kInitStd));
    caches.push_back(std::make_unique<PagedKvCache>(c.num_layers, 16, 4, c.num_kv_heads / tp,
                                                    c.head_dim));
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r) {
    threads.emplace_back([&, r] {
      LlamaModel model(&weights[r], group.rank(r), caches[r].get());
      ForwardItem item{&kv, tokens, 0};
      absl::Status s = model.Forward({&item, 1}, &logits[r], true);
      EXPECT_TRUE(s.ok()) << s;
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 1; r < tp; ++r) EXPECT_EQ(logits[r], logits[0]) << "rank " << r;
  // The shared SequenceKv advanced once, not tp times.
  EXPECT_EQ(kv.num_positions, 11);
  EXPECT_EQ(kv.layer_lengths, std::vector<int>(c.num_layers, 11));
}

TEST(ModelRunnerTest, RejectsUnsplittableTpAndBadOptions) {
  ModelConfig c = SmallConfig();
  auto loader = [&c](TpShard s) -> absl::StatusOr<ModelWeights> {
    if (absl::Status v = ValidateTpShard(c, s); !v.ok()) return v;
    return MakeRandomWeights(c, 1, s);
  };
  EXPECT_EQ(ModelRunner::Create(loader, 3, {8, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ModelRunner::Create(loader, 0, {8, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ModelRunner::Create(loader, 1, {0, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto failing = [](TpShard s) -> absl::StatusOr<ModelWeights> {
    return absl::NotFoundError("no weights");
  };
  EXPECT_EQ(ModelRunner::Create(failing, 2, {8, 4}).status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelRunnerTest, InvalidBatchDoesNotBreakTheGroup) {
  auto runner = MakeRunner(SmallConfig(), 2);
  ASSERT_NE(runner, nullptr);
  SequenceKv kv(runner->config().num_layers);
  ASSERT_TRUE(ReserveTokens(runner->block_manager(), &kv, 4).ok());
  std::vector<int32_t> bad = {1000}, good = {1, 2};
  std::vector<float> logits;
  std::vector<ForwardItem> items = {{&kv, bad, 0}};
  EXPECT_EQ(runner->Forward(items, &logits).code(), absl::StatusCode::kInvalidArgument);
  items = {{&kv, good, 0}};
  EXPECT_TRUE(runner->Forward(items, &logits).ok());
  EXPECT_EQ(logits.size(), size_t(runner->config().vocab_size));
  EXPECT_EQ(kv.num_positions, 2);
}

TEST(RunnerOptionsTest, FromMemoryBudget) {
  ModelConfig c = SmallConfig();  // 3 layers, 4 KV heads, head_dim 16
  // Per block per rank at tp=2: K+V * 3 layers * 16 slots * 2 heads * 16 dims * 4 bytes.
  const size_t per_block = 2 * 3 * 16 * 2 * 16 * 4;
  RunnerOptions o = RunnerOptions::FromMemoryBudget(c, 2, per_block * 10 + 5);
  EXPECT_EQ(o.block_size, 16);
  EXPECT_EQ(o.num_kv_blocks, 10);
  EXPECT_EQ(RunnerOptions::FromMemoryBudget(c, 1, per_block * 10, 8).num_kv_blocks, 10);
}

}  // namespace
}  // namespace claa
