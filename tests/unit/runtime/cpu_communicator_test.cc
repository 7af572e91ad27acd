// In-process collectives with 2 and 4 rank threads.
#include "engine/runtime/cpu_communicator.h"

#include <functional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

using ::claa::testing::RandomVector;

// Runs fn(comm) on one thread per rank.
void RunRanks(CpuCommGroup& group, const std::function<void(Communicator*)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < group.size(); ++r) threads.emplace_back(fn, group.rank(r));
  for (auto& t : threads) t.join();
}

class CommTest : public ::testing::TestWithParam<int> {};

TEST_P(CommTest, AllReduceSumIsRankOrderedAndIdentical) {
  const int size = GetParam();
  CpuCommGroup group(size);
  for (size_t count : {size_t{1}, size_t{3}, size_t{1000}, size_t{4099}}) {
    std::vector<std::vector<float>> inputs, results(size);
    for (int r = 0; r < size; ++r) inputs.push_back(RandomVector(count, 100 + r, 1e3f));
    RunRanks(group, [&](Communicator* c) {
      std::vector<float> data = inputs[c->rank()];
      for (int iter = 0; iter < 20; ++iter) {  // Repeat to shake out barrier races.
        data = inputs[c->rank()];
        ASSERT_TRUE(c->AllReduceSum(data.data(), data.size()).ok());
      }
      results[c->rank()] = data;
    });
    for (size_t i = 0; i < count; ++i) {
      float want = inputs[0][i];
      for (int r = 1; r < size; ++r) want += inputs[r][i];  // Rank order, fp32.
      for (int r = 0; r < size; ++r) ASSERT_EQ(results[r][i], want) << r << " " << i;
    }
  }
}

TEST_P(CommTest, AllGatherConcatenatesInRankOrder) {
  const int size = GetParam();
  CpuCommGroup group(size);
  const size_t count = 37;
  std::vector<std::vector<float>> outs(size);
  RunRanks(group, [&](Communicator* c) {
    std::vector<float> in = RandomVector(count, 200 + c->rank());
    std::vector<float> out(size * count);
    ASSERT_TRUE(c->AllGather(in.data(), count, out.data()).ok());
    outs[c->rank()] = out;
  });
  for (int r = 0; r < size; ++r) {
    for (int src = 0; src < size; ++src) {
      auto want = RandomVector(count, 200 + src);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), outs[r].begin() + src * count));
    }
  }
}

TEST_P(CommTest, BroadcastFromEveryRoot) {
  const int size = GetParam();
  CpuCommGroup group(size);
  for (int root = 0; root < size; ++root) {
    std::vector<std::vector<float>> outs(size);
    RunRanks(group, [&](Communicator* c) {
      std::vector<float> data = RandomVector(50, 300 + c->rank());
      ASSERT_TRUE(c->Broadcast(data.data(), data.size(), root).ok());
      outs[c->rank()] = data;
    });
    for (int r = 0; r < size; ++r) EXPECT_EQ(outs[r], RandomVector(50, 300 + root));
  }
}

TEST_P(CommTest, SendRecvRingAndAllPairs) {
  const int size = GetParam();
  CpuCommGroup group(size);
  RunRanks(group, [&](Communicator* c) {
    const int me = c->rank();
    // Everyone sends first (buffered), then receives: must not deadlock.
    for (int peer = 0; peer < size; ++peer) {
      if (peer == me) continue;
      for (int k = 0; k < 3; ++k) {
        auto msg = RandomVector(10 + k, 1000 * me + 10 * peer + k);
        ASSERT_TRUE(c->Send(msg.data(), msg.size(), peer).ok());
      }
    }
    for (int peer = 0; peer < size; ++peer) {
      if (peer == me) continue;
      for (int k = 0; k < 3; ++k) {  // FIFO per pair.
        std::vector<float> got(10 + k);
        ASSERT_TRUE(c->Recv(got.data(), got.size(), peer).ok());
        EXPECT_EQ(got, RandomVector(10 + k, 1000 * peer + 10 * me + k));
      }
    }
  });
}

TEST_P(CommTest, MismatchedCountsFailOnEveryRank) {
  const int size = GetParam();
  CpuCommGroup group(size);
  std::vector<absl::StatusCode> codes(size);
  RunRanks(group, [&](Communicator* c) {
    std::vector<float> data(8 + c->rank(), 1.0f);
    codes[c->rank()] = c->AllReduceSum(data.data(), data.size()).code();
    // The group stays usable afterwards.
    std::vector<float> ok(4, 1.0f);
    ASSERT_TRUE(c->AllReduceSum(ok.data(), ok.size()).ok());
    EXPECT_EQ(ok[0], float(size));
  });
  for (auto code : codes) EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Sizes, CommTest, ::testing::Values(2, 4));

TEST(CommGroupTest, SizeOneIsIdentity) {
  CpuCommGroup group(1);
  Communicator* c = group.rank(0);
  std::vector<float> d = {1, 2, 3}, out(3);
  ASSERT_TRUE(c->AllReduceSum(d.data(), 3).ok());
  EXPECT_EQ(d, (std::vector<float>{1, 2, 3}));
  ASSERT_TRUE(c->AllGather(d.data(), 3, out.data()).ok());
  EXPECT_EQ(out, d);
  ASSERT_TRUE(c->Broadcast(d.data(), 3, 0).ok());
  EXPECT_EQ(group.rank(1), nullptr);
}

TEST(CommGroupTest, AbortReleasesBlockedRanks) {
  CpuCommGroup group(2);
  absl::Status recv_status, reduce_status;
  std::thread waiter([&] {
    float x;
    recv_status = group.rank(0)->Recv(&x, 1, 1);  // Nobody sends.
  });
  std::thread reducer([&] {
    float x = 1;
    reduce_status = group.rank(1)->AllReduceSum(&x, 1);  // Rank 0 never joins.
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  group.Abort();
  waiter.join();
  reducer.join();
  EXPECT_EQ(recv_status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(reduce_status.code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(group.aborted());
}

}  // namespace
}  // namespace claa
