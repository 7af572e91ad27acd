// Paged causal GQA attention against a naive full-matrix attention in double precision.
#include "engine/runtime/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

using ::claa::testing::MaxRelErr;
using ::claa::testing::RandomVector;

struct Case {
  int num_heads, kv_heads, head_dim, block_size, past_len, num_tokens;
};

void RunCase(const Case& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads=" << c.num_heads << " kv=" << c.kv_heads
                                    << " d=" << c.head_dim << " bs=" << c.block_size
                                    << " past=" << c.past_len << " new=" << c.num_tokens);
  const int total = c.past_len + c.num_tokens;
  const int layers = 2, layer = 1;
  const int blocks_needed = (total + c.block_size - 1) / c.block_size;
  const int num_blocks = blocks_needed + 5;
  PagedKvCache cache(layers, num_blocks, c.block_size, c.kv_heads, c.head_dim);
  // Scattered, out-of-order block table: attention must follow it.
  std::vector<int> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  std::vector<int> table(perm.begin(), perm.begin() + blocks_needed);

  const int stride = c.kv_heads * c.head_dim;
  auto keys = RandomVector(size_t(total) * stride, seed + 1);
  auto values = RandomVector(size_t(total) * stride, seed + 2);
  for (int s = 0; s < total; ++s) {
    std::copy_n(&keys[size_t(s) * stride], stride, cache.k_slot(layer, table, s));
    std::copy_n(&values[size_t(s) * stride], stride, cache.v_slot(layer, table, s));
  }
  // Layer 0 holds garbage that must never be read.
  for (int s = 0; s < total; ++s) {
    std::fill_n(cache.k_slot(0, table, s), stride, 1e6f);
    std::fill_n(cache.v_slot(0, table, s), stride, 1e6f);
  }

  const int q_dim = c.num_heads * c.head_dim;
  const int q_stride = q_dim + 3, out_stride = q_dim + 5;
  auto q = RandomVector(size_t(c.num_tokens) * q_stride, seed + 3, 2.0f);
  std::vector<float> out(size_t(c.num_tokens) * out_stride, -7.0f);
  AttentionScratch scratch;
  PagedCausalAttention(cache, layer, table, c.past_len, q.data(), q_stride, c.num_tokens,
                       c.num_heads, out.data(), out_stride, &scratch);

  // Naive: query t (position past + t) attends to keys 0..past+t of its KV head.
  const int group = c.num_heads / c.kv_heads;
  std::vector<double> ref(size_t(c.num_tokens) * q_dim);
  std::vector<float> got(ref.size());
  for (int t = 0; t < c.num_tokens; ++t) {
    for (int h = 0; h < c.num_heads; ++h) {
      const int g = h / group;
      const int visible = c.past_len + t + 1;
      std::vector<double> p(visible);
      double mx = -1e300;
      for (int s = 0; s < visible; ++s) {
        double dot = 0;
        for (int i = 0; i < c.head_dim; ++i) {
          dot += double(q[size_t(t) * q_stride + h * c.head_dim + i]) *
                 keys[size_t(s) * stride + g * c.head_dim + i];
        }
        p[s] = dot / std::sqrt(double(c.head_dim));
        mx = std::max(mx, p[s]);
      }
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v - mx));
      for (int i = 0; i < c.head_dim; ++i) {
        double o = 0;
        for (int s = 0; s < visible; ++s) o += p[s] / sum * values[size_t(s) * stride + g * c.head_dim + i];
        ref[size_t(t) * q_dim + h * c.head_dim + i] = o;
        got[size_t(t) * q_dim + h * c.head_dim + i] = out[size_t(t) * out_stride + h * c.head_dim + i];
      }
    }
    // Padding columns of out are untouched.
    for (int j = q_dim; j < out_stride; ++j) EXPECT_EQ(out[size_t(t) * out_stride + j], -7.0f);
  }
  // fp32 dot products and sums over at most a few hundred terms: 1e-5 relative to max |out|.
  EXPECT_LT(MaxRelErr(got.data(), ref.data(), got.size()), 1e-5);
}

TEST(PagedAttentionTest, PrefillFromEmpty) { RunCase({4, 2, 16, 4, 0, 13}, 1); }
TEST(PagedAttentionTest, ChunkedPrefillAfterPast) { RunCase({6, 2, 16, 4, 7, 5}, 2); }
TEST(PagedAttentionTest, SingleTokenDecode) { RunCase({8, 2, 32, 16, 40, 1}, 3); }
TEST(PagedAttentionTest, MultiHeadNoGqa) { RunCase({3, 3, 8, 5, 3, 9}, 4); }
TEST(PagedAttentionTest, MultiQuery) { RunCase({4, 1, 8, 3, 2, 6}, 5); }
// More queries than one GEMM chunk (256), with a partial last block.
TEST(PagedAttentionTest, LongPrefillSpansQueryChunks) { RunCase({2, 1, 8, 16, 5, 600}, 6); }

}  // namespace
}  // namespace claa
