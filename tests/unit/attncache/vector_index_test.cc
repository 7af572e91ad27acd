// FAISS index wrapper: exact flat search, removal, the switch to IVF-Flat, bad input as Status.
#include "engine/attncache/vector_index.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa::attncache {
namespace {

std::vector<float> Vec(int dim, uint32_t seed) { return claa::testing::RandomVector(dim, seed); }

TEST(VectorIndex, FlatFindsTheNearestAndRemoves) {
  auto index = VectorIndex::Create(IndexOptions{8, 4, 2, 0});
  ASSERT_TRUE(index.ok()) << index.status();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*index)->Add(100 + i, Vec(8, i)).ok());
  EXPECT_FALSE((*index)->is_ivf());
  std::vector<float> q = Vec(8, 7);
  q[0] += 0.01f;
  auto near = (*index)->Search(q, 3);
  ASSERT_TRUE(near.ok()) << near.status();
  ASSERT_EQ(near->size(), 3u);
  EXPECT_EQ((*near)[0].id, 107);
  EXPECT_NEAR((*near)[0].distance, 0.01, 1e-4);  // L2, not squared
  EXPECT_LE((*near)[0].distance, (*near)[1].distance);
  ASSERT_TRUE((*index)->Remove(107).ok());
  near = (*index)->Search(q, 1);
  ASSERT_TRUE(near.ok());
  EXPECT_NE((*near)[0].id, 107);
  EXPECT_EQ((*index)->size(), 19);
  EXPECT_EQ((*index)->Add(100, Vec(8, 0)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*index)->Add(1, Vec(7, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*index)->Search(Vec(9, 0), 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VectorIndex, EmptySearchReturnsNothing) {
  auto index = VectorIndex::Create(IndexOptions{});
  ASSERT_TRUE(index.ok());
  auto near = (*index)->Search(Vec(128, 1), 1);
  ASSERT_TRUE(near.ok());
  EXPECT_TRUE(near->empty());
}

TEST(VectorIndex, SwitchesToIvfAndStillFindsExactDuplicates) {
  // nlist 4, IVF from 64 vectors, nprobe = nlist so the search is exact.
  auto index = VectorIndex::Create(IndexOptions{16, 4, 4, 64});
  ASSERT_TRUE(index.ok());
  for (int i = 0; i < 63; ++i) ASSERT_TRUE((*index)->Add(i, Vec(16, 1000 + i)).ok());
  EXPECT_FALSE((*index)->is_ivf());
  ASSERT_TRUE((*index)->Add(63, Vec(16, 1063)).ok());
  EXPECT_TRUE((*index)->is_ivf());
  for (int i = 64; i < 200; ++i) ASSERT_TRUE((*index)->Add(i, Vec(16, 1000 + i)).ok());
  for (int i : {0, 63, 64, 150, 199}) {
    auto near = (*index)->Search(Vec(16, 1000 + i), 1);
    ASSERT_TRUE(near.ok());
    ASSERT_EQ(near->size(), 1u);
    EXPECT_EQ((*near)[0].id, i);
    EXPECT_NEAR((*near)[0].distance, 0.0, 1e-3);
  }
  ASSERT_TRUE((*index)->Remove(150).ok());
  auto near = (*index)->Search(Vec(16, 1150), 1);
  ASSERT_TRUE(near.ok());
  EXPECT_NE((*near)[0].id, 150);
}

TEST(VectorIndex, RejectsBadOptions) {
  EXPECT_EQ(VectorIndex::Create(IndexOptions{0, 4, 1, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace claa::attncache
