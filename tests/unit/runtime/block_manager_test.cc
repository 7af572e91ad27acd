#include "engine/runtime/block_manager.h"

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace claa {
namespace {

TEST(BlockManagerTest, FreshAccounting) {
  BlockManager m(10, 16);
  EXPECT_EQ(m.num_blocks(), 10);
  EXPECT_EQ(m.block_size(), 16);
  EXPECT_EQ(m.num_free(), 10);
  EXPECT_EQ(m.num_used(), 0);
  EXPECT_DOUBLE_EQ(m.usage(), 0.0);
  EXPECT_EQ(m.BlocksFor(0), 0);
  EXPECT_EQ(m.BlocksFor(1), 1);
  EXPECT_EQ(m.BlocksFor(16), 1);
  EXPECT_EQ(m.BlocksFor(17), 2);
}

TEST(BlockManagerTest, AllocateGivesDistinctIdsInRange) {
  BlockManager m(10, 4);
  auto a = m.Allocate(3);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (std::vector<int>{0, 1, 2}));
  auto b = m.Allocate(4);
  ASSERT_TRUE(b.ok());
  std::set<int> all(a->begin(), a->end());
  all.insert(b->begin(), b->end());
  EXPECT_EQ(all.size(), 7u);
  for (int id : all) EXPECT_TRUE(id >= 0 && id < 10);
  EXPECT_EQ(m.num_used(), 7);
  EXPECT_EQ(m.num_free(), 3);
  EXPECT_DOUBLE_EQ(m.usage(), 0.7);
  auto none = m.Allocate(0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(m.Allocate(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockManagerTest, ExhaustionIsAllOrNothing) {
  BlockManager m(5, 4);
  ASSERT_TRUE(m.Allocate(3).ok());
  auto r = m.Allocate(3);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(m.num_free(), 2);  // Nothing was taken by the failed call.
  ASSERT_TRUE(m.Allocate(2).ok());
  EXPECT_EQ(m.num_free(), 0);
  EXPECT_DOUBLE_EQ(m.usage(), 1.0);
  EXPECT_EQ(m.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockManagerTest, FreeAndReuse) {
  BlockManager m(4, 4);
  auto a = m.Allocate(4);
  ASSERT_TRUE(a.ok());
  m.Free({(*a)[1], (*a)[3]});
  EXPECT_EQ(m.num_free(), 2);
  auto b = m.Allocate(2);
  ASSERT_TRUE(b.ok());
  std::vector<int> got = *b;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{(*a)[1], (*a)[3]}));
  EXPECT_EQ(m.num_free(), 0);
}

TEST(BlockManagerTest, DoubleFreeAndForeignIdsAreIgnored) {
  BlockManager m(4, 4);
  auto a = m.Allocate(2);
  ASSERT_TRUE(a.ok());
  m.Free(*a);
  EXPECT_EQ(m.num_free(), 4);
  m.Free(*a);             // Double free: logged, ignored.
  m.Free({-1, 4, 1000});  // Foreign ids: logged, ignored.
  EXPECT_EQ(m.num_free(), 4);
  EXPECT_EQ(m.num_used(), 0);
  // The free list holds each id once: exactly 4 can be allocated, all distinct.
  auto all = m.Allocate(4);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(std::set<int>(all->begin(), all->end()).size(), 4u);
  EXPECT_FALSE(m.Allocate(1).ok());
}

TEST(BlockManagerTest, ConcurrentAllocateFree) {
  BlockManager m(64, 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 2000; ++i) {
        auto r = m.Allocate(1 + i % 5);
        if (r.ok()) m.Free(*r);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.num_free(), 64);
  auto all = m.Allocate(64);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(std::set<int>(all->begin(), all->end()).size(), 64u);
}

}  // namespace
}  // namespace claa
