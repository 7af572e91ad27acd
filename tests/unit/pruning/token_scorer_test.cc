// Scorers and selection on small cases worked out by hand, and the window / last-query / oracle
// signals against straightforward loops.
#include "engine/pruning/token_scorer.h"

#include <cmath>
#include <random>

#include "engine/pruning/attention_scores.h"
#include "gtest/gtest.h"

namespace claa {
namespace {

LayerScores Layer(int layer, std::vector<std::vector<float>> rows) {
  LayerScores s;
  s.layer = layer;
  s.num_kv_heads = int(rows.size());
  s.prefix_len = int(rows[0].size());
  for (auto& r : rows) s.values.insert(s.values.end(), r.begin(), r.end());
  return s;
}

// Two layers x two KV heads over a 4-token prefix (prompt of 6, window 2). By hand:
//   A0 = [1 2 3 4]  mean 2.5  sd sqrt(1.25)  z = [-1.342 -0.447  0.447  1.342]
//   A1 = [4 0 0 0]  mean 1    sd sqrt(3)     z = [ 1.732 -0.577 -0.577 -0.577]
//   B0 = [0 0 5 1]  mean 1.5  sd sqrt(4.25)  z = [-0.728 -0.728  1.698 -0.243]
//   B1 = [2 2 2 2]  constant                 z = [ 0      0      0      0    ]
// CLAA n=2: max = [1.732 0 1.698 1.342] -> ranking 0, 2, 3, 1.
// CLAA n=1 (layer B only): max = [0 0 1.698 0] -> 2, then ties 0, 1, 3 by index.
// FastKV (sum of B): [2 2 7 3] -> 2, 3, then 0, 1.
const std::vector<LayerScores> kHistory = {Layer(0, {{1, 2, 3, 4}, {4, 0, 0, 0}}),
                                           Layer(1, {{0, 0, 5, 1}, {2, 2, 2, 2}})};

TEST(TokenScorerTest, ClaaByHand) {
  auto s = ClaaScorer(2).Score(kHistory);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_NEAR(s[0], std::sqrt(3.0), 1e-6);
  EXPECT_NEAR(s[1], 0.0, 1e-6);
  EXPECT_NEAR(s[2], 3.5 / std::sqrt(4.25), 1e-6);
  EXPECT_NEAR(s[3], 1.5 / std::sqrt(1.25), 1e-6);
  EXPECT_EQ(SelectKeptTokens(s, 6, 2, 3), (std::vector<int>{0, 4, 5}));
  EXPECT_EQ(SelectKeptTokens(s, 6, 2, 4), (std::vector<int>{0, 2, 4, 5}));
  EXPECT_EQ(SelectKeptTokens(s, 6, 2, 5), (std::vector<int>{0, 2, 3, 4, 5}));
  auto one = ClaaScorer(1).Score(kHistory);
  EXPECT_EQ(SelectKeptTokens(one, 6, 2, 3), (std::vector<int>{2, 4, 5}));
  EXPECT_EQ(SelectKeptTokens(one, 6, 2, 4), (std::vector<int>{0, 2, 4, 5}));
}

TEST(TokenScorerTest, FastKvAndFixedByHand) {
  auto f = HeadSumScorer().Score(kHistory);
  EXPECT_EQ(f, (std::vector<float>{2, 2, 7, 3}));
  EXPECT_EQ(SelectKeptTokens(f, 6, 2, 4), (std::vector<int>{2, 3, 4, 5}));
  auto o = FixedScorer({0.1f, 0.9f, 0.2f, 0.3f, 0.0f, 0.0f}).Score(kHistory);
  EXPECT_EQ(SelectKeptTokens(o, 6, 2, 4), (std::vector<int>{1, 3, 4, 5}));
}

// A prompt no longer than the window leaves an empty prefix (found by UBSan in a disaggregated
// CLAA prefill of a short prompt: the scorer indexed an empty vector).
TEST(TokenScorerTest, EmptyPrefix) {
  LayerScores empty;
  empty.num_kv_heads = 2;
  const std::vector<LayerScores> history = {empty, empty};
  EXPECT_TRUE(ClaaScorer(2).Score(history).empty());
  EXPECT_TRUE(HeadSumScorer().Score(history).empty());
}

TEST(TokenScorerTest, SelectionEdgeCases) {
  EXPECT_EQ(SelectKeptTokens({}, 3, 8, 3), (std::vector<int>{0, 1, 2}));  // prompt < window
  EXPECT_EQ(SelectKeptTokens({5, 4, 3}, 5, 2, 5), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(SelectKeptTokens({5, 4, 3}, 5, 2, 2), (std::vector<int>{3, 4}));  // window only
  const float nan = std::nanf("");
  EXPECT_EQ(TopIndicesAscending({nan, 1, nan, 0}, 2), (std::vector<int>{1, 3}));
}

TEST(AttentionScoresTest, AveragePoolCountsPadding) {
  std::vector<float> in = {3, 6, 9, 12}, out(4);
  AveragePool1d(in.data(), 4, 3, out.data());
  EXPECT_FLOAT_EQ(out[0], 3.0f);   // (0 + 3 + 6) / 3
  EXPECT_FLOAT_EQ(out[1], 6.0f);
  EXPECT_FLOAT_EQ(out[2], 9.0f);
  EXPECT_FLOAT_EQ(out[3], 7.0f);   // (9 + 12 + 0) / 3
  AveragePool1d(in.data(), 4, 1, out.data());
  EXPECT_EQ(out, in);
  // Kernel wider than the input: every window sees the whole input plus padding.
  std::vector<float> two = {3, 6}, two_out(2);
  AveragePool1d(two.data(), 2, 5, two_out.data());
  EXPECT_FLOAT_EQ(two_out[0], 1.8f);
  EXPECT_FLOAT_EQ(two_out[1], 1.8f);
  // Kernel 7 on ones: the edges see 4, 5, 6 real values of 7.
  std::vector<float> ones(10, 1.0f), pooled(10);
  AveragePool1d(ones.data(), 10, 7, pooled.data());
  EXPECT_FLOAT_EQ(pooled[0], 4.f / 7);
  EXPECT_FLOAT_EQ(pooled[1], 5.f / 7);
  EXPECT_FLOAT_EQ(pooled[2], 6.f / 7);
  EXPECT_FLOAT_EQ(pooled[3], 1.f);
  EXPECT_FLOAT_EQ(pooled[9], 4.f / 7);
}

struct RandomQk {
  RandomQk(int p, int heads, int kv_heads, int d, uint32_t seed)
      : q(size_t(p) * heads * d), k(size_t(p) * kv_heads * d) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : q) x = u(rng);
    for (float& x : k) x = u(rng);
    qk = PromptQk{q.data(), heads * d, k.data(), kv_heads * d, p, heads, kv_heads, d};
  }
  std::vector<float> q, k;
  PromptQk qk;
};

TEST(AttentionScoresTest, WindowAndLastQueryAgainstLoops) {
  const int P = 23, nh = 4, nkv = 2, d = 8, w = 5, pool = 3, prefix = P - w;
  RandomQk r(P, nh, nkv, d, 3);
  auto dot = [&](int t, int h, int s) {
    double acc = 0;
    for (int i = 0; i < d; ++i) acc += double(r.q[(t * nh + h) * d + i]) * r.k[(s * nkv + h / 2) * d + i];
    return acc;
  };
  std::vector<double> want(nkv * prefix, 0.0), last(nkv * prefix, 0.0);
  for (int h = 0; h < nh; ++h) {
    std::vector<double> acc(prefix, 0.0);
    for (int t = prefix; t < P; ++t) {
      double sum = 0;
      for (int s = 0; s <= t; ++s) sum += std::exp(dot(t, h, s) / std::sqrt(double(d)));
      for (int s = 0; s < prefix; ++s) acc[s] += std::exp(dot(t, h, s) / std::sqrt(double(d))) / sum;
    }
    for (int s = 0; s < prefix; ++s) {
      double pooled = 0;
      for (int j = s - 1; j <= s + 1; ++j) pooled += (j >= 0 && j < prefix) ? acc[j] : 0.0;
      want[(h / 2) * prefix + s] += pooled / pool;
      double lp = 0;
      for (int j = s - 1; j <= s + 1; ++j) lp += (j >= 0 && j < prefix) ? dot(P - 1, h, j) : 0.0;
      last[(h / 2) * prefix + s] += lp / pool;
    }
  }
  auto got = WindowScores(r.qk, w, pool);
  auto got_last = LastQueryScores(r.qk, w, pool);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(got_last.size(), last.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-5) << i;
    EXPECT_NEAR(got_last[i], last[i], 1e-4) << i;
  }
  EXPECT_TRUE(WindowScores(r.qk, P, pool).empty());
}

TEST(AttentionScoresTest, OracleAgainstLoops) {
  // 10 prompt tokens followed by 4 answer tokens: the queries are rows 9..13.
  const int T = 14, C = 10, nh = 2, nkv = 1, d = 4, pool = 3, nq = T - C + 1;
  RandomQk r(T, nh, nkv, d, 9);
  std::vector<float> running;
  AccumulateOracleLayer(r.qk, C - 1, C, &running);
  ASSERT_EQ(running.size(), size_t(nq) * C);
  std::vector<double> mean(C, 0.0);
  for (int i = 0; i < nq; ++i) {
    const int t = C - 1 + i;
    std::vector<double> best(C, 0.0);
    for (int h = 0; h < nh; ++h) {
      std::vector<double> e(C);
      double sum = 0;
      for (int s = 0; s < C; ++s) {
        double acc = 0;
        for (int j = 0; j < d; ++j) acc += double(r.q[(t * nh + h) * d + j]) * r.k[s * d + j];
        sum += (e[s] = std::exp(acc / 2.0));
      }
      for (int s = 0; s < C; ++s) best[s] = std::max(best[s], e[s] / sum);
    }
    for (int s = 0; s < C; ++s) {
      EXPECT_NEAR(running[i * C + s], best[s], 1e-6);
      mean[s] += best[s] / nq;
    }
  }
  auto oracle = FinishOracle(running, nq, C, pool);
  for (int s = 0; s < C; ++s) {
    double p = 0;
    for (int j = s - 1; j <= s + 1; ++j) p += (j >= 0 && j < C) ? mean[j] : 0.0;
    EXPECT_NEAR(oracle[s], p / pool, 1e-6);
  }
}

}  // namespace
}  // namespace claa
