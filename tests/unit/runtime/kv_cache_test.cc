#include "engine/runtime/kv_cache.h"

#include <vector>

#include "gtest/gtest.h"

namespace claa {
namespace {

TEST(KvCacheTest, ReserveGrowsAllOrNothing) {
  BlockManager m(5, 4);
  SequenceKv kv(3);
  EXPECT_EQ(kv.layer_lengths, (std::vector<int>{0, 0, 0}));
  ASSERT_TRUE(ReserveTokens(m, &kv, 1).ok());
  EXPECT_EQ(kv.blocks.size(), 1u);
  ASSERT_TRUE(ReserveTokens(m, &kv, 4).ok());
  EXPECT_EQ(kv.blocks.size(), 1u);  // Still fits.
  ASSERT_TRUE(ReserveTokens(m, &kv, 9).ok());
  EXPECT_EQ(kv.blocks.size(), 3u);
  EXPECT_EQ(kv.capacity(4), 12);
  ASSERT_TRUE(ReserveTokens(m, &kv, 2).ok());  // Never shrinks.
  EXPECT_EQ(kv.blocks.size(), 3u);

  SequenceKv other(3);
  EXPECT_EQ(ReserveTokens(m, &other, 12).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(other.blocks.empty());
  EXPECT_EQ(m.num_free(), 2);
  EXPECT_EQ(ReserveTokens(m, &kv, -1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, ReleaseFreesAndResets) {
  BlockManager m(5, 4);
  SequenceKv kv(2);
  ASSERT_TRUE(ReserveTokens(m, &kv, 10).ok());
  kv.layer_lengths = {10, 7};
  kv.num_positions = 10;
  EXPECT_EQ(kv.max_layer_length(), 10);
  ReleaseSequence(m, &kv);
  EXPECT_TRUE(kv.blocks.empty());
  EXPECT_EQ(kv.layer_lengths, (std::vector<int>{0, 0}));
  EXPECT_EQ(kv.num_positions, 0);
  EXPECT_EQ(m.num_free(), 5);
}

TEST(KvCacheTest, LayoutMatchesDocumentedIndexing) {
  const int layers = 3, blocks = 7, bs = 4, heads = 2, d = 5;
  PagedKvCache cache(layers, blocks, bs, heads, d);
  EXPECT_EQ(cache.token_stride(), heads * d);
  EXPECT_EQ(cache.bytes(), 2 * sizeof(float) * layers * blocks * bs * heads * d);
  EXPECT_EQ(PagedKvCache::BytesPerBlock(layers, bs, heads, d),
            2 * sizeof(float) * layers * bs * heads * d);
  const float* k0 = cache.k_block(0, 0);
  const float* v0 = cache.v_block(0, 0);
  std::vector<int> table = {5, 2, 6};
  for (int l = 0; l < layers; ++l) {
    for (int s = 0; s < 12; ++s) {
      // [layers][num_blocks][block_size][kv_heads][head_dim]
      const size_t off = ((size_t(l) * blocks + table[s / bs]) * bs + s % bs) * heads * d;
      EXPECT_EQ(cache.k_slot(l, table, s), k0 + off);
      EXPECT_EQ(cache.v_slot(l, table, s), v0 + off);
    }
  }
  // The last slot of the last block is writable (no off-by-one in the pool size).
  float* last = cache.k_slot(layers - 1, std::vector<int>{blocks - 1}, bs - 1);
  last[heads * d - 1] = 1.0f;
  EXPECT_EQ(last + heads * d, cache.k_block(0, 0) + size_t(layers) * blocks * bs * heads * d);
}

}  // namespace
}  // namespace claa
