// AttnCache end to end in the engine: lookup / insert / hit through PrefillEngine, scores against
// a plain forward pass, near-duplicates, shorter-entry refusal, persistence across reopen.
#include "engine/attncache/prefill_engine.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tests/unit/attncache/attncache_test_util.h"

namespace claa::attncache {
namespace {

using ::claa::testing::MakeRunner;
using ::claa::testing::ScratchDir;
using ::claa::testing::Tokens;

std::unique_ptr<AttnCache> OpenCache(const ModelRunner& runner, const std::string& dir,
                                     double threshold = 0.995, bool allow_longer = false) {
  AttnCacheOptions o;
  o.dir = dir;
  o.threshold = threshold;
  o.allow_longer_entries = allow_longer;
  auto cache = AttnCache::Open(o, runner.weights(0), nullptr, nullptr);
  EXPECT_TRUE(cache.ok()) << cache.status();
  return cache.ok() ? *std::move(cache) : nullptr;
}

// log P(cont | prompt) from one plain forward pass with every token's logits.
double ReferenceLogprob(ModelRunner& runner, const std::vector<int32_t>& prompt,
                        const std::vector<int32_t>& cont) {
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), cont.begin(), cont.end());
  SequenceKv kv(runner.config().num_layers);
  EXPECT_TRUE(ReserveTokens(runner.block_manager(), &kv, int(seq.size())).ok());
  ForwardItem item;
  item.kv = &kv;
  item.tokens = seq;
  std::vector<float> logits;
  EXPECT_TRUE(runner.Forward({&item, 1}, &logits, /*all_logits=*/true).ok());
  ReleaseSequence(runner.block_manager(), &kv);
  const int v = runner.config().vocab_size;
  double total = 0;
  for (size_t j = 0; j < cont.size(); ++j) {
    const float* row = &logits[(prompt.size() - 1 + j) * v];
    double mx = *std::max_element(row, row + v), z = 0;
    for (int i = 0; i < v; ++i) z += std::exp(row[i] - mx);
    total += row[cont[j]] - mx - std::log(z);
  }
  return total;
}

TEST(PrefillEngine, ScoresMatchAPlainForwardPass) {
  auto runner = MakeRunner();
  PrefillEngine engine(runner.get(), nullptr);
  const std::vector<int32_t> prompt = Tokens(30, 1);
  const std::vector<std::vector<int32_t>> conts = {{5}, {6}, {7, 8, 9}, {5, 1}};
  auto r = engine.Score(prompt, conts, CacheMode::kLookupAndInsert);  // no cache: off
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->continuations.size(), conts.size());
  EXPECT_EQ(r->sequences.size(), 3u);  // {5} and {6} share the prompt's forward
  for (size_t i = 0; i < conts.size(); ++i) {
    EXPECT_NEAR(r->continuations[i].logprob, ReferenceLogprob(*runner, prompt, conts[i]), 1e-4)
        << i;
    EXPECT_EQ(r->continuations[i].token_logprobs.size(), conts[i].size());
    EXPECT_FALSE(r->continuations[i].cache.consulted);
  }
  EXPECT_EQ(runner->block_manager().num_used(), 0);
}

TEST(PrefillEngine, IdenticalInputHitsAndReproducesTheInsertedOutput) {
  ScratchDir dir("identical");
  auto runner = MakeRunner();
  auto cache = OpenCache(*runner, dir.str());
  PrefillEngine engine(runner.get(), cache.get());
  const std::vector<int32_t> prompt = Tokens(50, 2);
  const std::vector<std::vector<int32_t>> labels = {{3}, {4}, {10}, {20, 21}};

  auto off = engine.Score(prompt, labels, CacheMode::kOff);
  auto first = engine.Score(prompt, labels, CacheMode::kLookupAndInsert);
  ASSERT_TRUE(off.ok() && first.ok());
  for (const CacheOutcome& o : first->sequences) {
    EXPECT_TRUE(o.consulted);
    EXPECT_FALSE(o.hit);
    EXPECT_TRUE(o.inserted);
  }
  EXPECT_EQ(cache->entries(), 2);
  auto second = engine.Score(prompt, labels, CacheMode::kLookup);
  auto third = engine.Score(prompt, labels, CacheMode::kLookupAndInsert);
  ASSERT_TRUE(second.ok() && third.ok());
  EXPECT_EQ(cache->entries(), 2);  // hits insert nothing
  for (const CacheOutcome& o : second->sequences) {
    EXPECT_TRUE(o.hit);
    EXPECT_NEAR(o.similarity, 1.0, 1e-6);
    EXPECT_FALSE(o.inserted);
  }
  int best_off = 0, best_hit = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    // The first (inserting) run computed attention normally: it equals the uncached answer.
    EXPECT_EQ(first->continuations[i].logprob, off->continuations[i].logprob);
    // A hit reproduces it up to the fp16 rounding of the stored probabilities...
    EXPECT_NEAR(second->continuations[i].logprob, first->continuations[i].logprob, 2e-3) << i;
    // ...and every hit gives exactly the same result.
    EXPECT_EQ(third->continuations[i].logprob, second->continuations[i].logprob);
    if (off->continuations[i].logprob > off->continuations[best_off].logprob) best_off = int(i);
    if (second->continuations[i].logprob > second->continuations[best_hit].logprob) {
      best_hit = int(i);
    }
  }
  EXPECT_EQ(best_hit, best_off);
}

TEST(PrefillEngine, EmbedHitMatchesAndPoolsAsAsked) {
  ScratchDir dir("embed");
  auto runner = MakeRunner();
  auto cache = OpenCache(*runner, dir.str());
  PrefillEngine engine(runner.get(), cache.get());
  const std::vector<int32_t> prompt = Tokens(40, 3);
  auto miss = engine.Embed(prompt, Pooling::kMean, true, CacheMode::kLookupAndInsert);
  auto hit = engine.Embed(prompt, Pooling::kMean, true, CacheMode::kLookup);
  auto last = engine.Embed(prompt, Pooling::kLast, false, CacheMode::kOff);
  ASSERT_TRUE(miss.ok() && hit.ok() && last.ok());
  EXPECT_TRUE(miss->cache.inserted);
  EXPECT_TRUE(hit->cache.hit);
  ASSERT_EQ(miss->embedding.size(), size_t(runner->config().hidden_size));
  double norm = 0, cos = 0;
  for (size_t i = 0; i < miss->embedding.size(); ++i) {
    norm += double(miss->embedding[i]) * miss->embedding[i];
    cos += double(miss->embedding[i]) * hit->embedding[i];
  }
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_GT(cos, 0.9999);
  EXPECT_NE(last->embedding, miss->embedding);
}

TEST(PrefillEngine, NearDuplicateHitsWithALowerThresholdOnly) {
  ScratchDir dir("near");
  auto runner = MakeRunner();
  std::vector<int32_t> a = Tokens(120, 4);
  std::vector<int32_t> b = a;
  b[60] = (b[60] + 1) % 97;  // one token differs
  {
    auto strict = OpenCache(*runner, dir.str(), 1.0);
    auto sim_a = strict->Feature(a), sim_b = strict->Feature(b);
    const double sim = FeatureSimilarity(sim_a, sim_b);
    EXPECT_LT(sim, 1.0);
    EXPECT_GT(sim, 0.9);
    PrefillEngine engine(runner.get(), strict.get());
    ASSERT_TRUE(engine.Score(a, {{1}}, CacheMode::kLookupAndInsert).ok());
    auto r = engine.Score(b, {{1}}, CacheMode::kLookup);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->sequences[0].hit);
    EXPECT_NEAR(r->sequences[0].similarity, sim, 1e-5);
  }
  auto loose = OpenCache(*runner, dir.str(), 0.9);  // reopened: the entry of `a` persisted
  ASSERT_EQ(loose->entries(), 1);
  PrefillEngine engine(runner.get(), loose.get());
  auto r = engine.Score(b, {{1}, {2}}, CacheMode::kLookup);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->sequences[0].hit);
}

class LengthPolicy : public ::testing::TestWithParam<bool> {};

TEST_P(LengthPolicy, NeverUsesAnEntryShorterThanTheInput) {
  const bool allow_longer = GetParam();
  ScratchDir dir(allow_longer ? "longer" : "exact");
  auto runner = MakeRunner();
  auto cache = OpenCache(*runner, dir.str(), -0.5, allow_longer);  // any neighbour would do
  PrefillEngine engine(runner.get(), cache.get());
  const std::vector<int32_t> long_input = Tokens(60, 5);
  const std::vector<int32_t> short_input(long_input.begin(), long_input.begin() + 30);
  ASSERT_TRUE(engine.Embed(short_input, Pooling::kLast, false, CacheMode::kLookupAndInsert).ok());
  auto r = engine.Embed(long_input, Pooling::kLast, false, CacheMode::kLookup);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->cache.hit);
  EXPECT_TRUE(r->cache.consulted);
  // The other way round, the longer entry's first rows serve the shorter input when allowed.
  ASSERT_TRUE(engine.Embed(long_input, Pooling::kLast, false, CacheMode::kLookupAndInsert).ok());
  std::vector<int32_t> other_short = short_input;
  other_short[3] = (other_short[3] + 1) % 97;  // not identical to the stored 30-token entry
  auto s = engine.Embed(other_short, Pooling::kLast, false, CacheMode::kLookup);
  auto plain = engine.Embed(other_short, Pooling::kLast, false, CacheMode::kOff);
  ASSERT_TRUE(s.ok() && plain.ok());
  EXPECT_TRUE(s->cache.hit);  // the 30-token entry always fits
  // Whatever served it, the output has the input's shape.
  EXPECT_EQ(s->embedding.size(), plain->embedding.size());
}

INSTANTIATE_TEST_SUITE_P(AllowLonger, LengthPolicy, ::testing::Bool());

TEST(PrefillEngine, RejectsBadInput) {
  auto runner = MakeRunner(1, 4);  // 4 blocks of 8: 32 tokens
  PrefillEngine engine(runner.get(), nullptr);
  EXPECT_EQ(engine.max_sequence_tokens(), 32);
  EXPECT_EQ(engine.Score({}, {{1}}, CacheMode::kOff).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Score({1, 2}, {}, CacheMode::kOff).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Score({1, 200}, {{1}}, CacheMode::kOff).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Score(Tokens(30, 1), {{1, 2, 3, 4}}, CacheMode::kOff).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Several sequences that do not fit together run one after another.
  auto r = engine.Score(Tokens(20, 1), {{1, 2}, {3, 4}, {5, 6}}, CacheMode::kOff);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequences.size(), 3u);
}

}  // namespace
}  // namespace claa::attncache
