// NcclCommunicator (engine/gpu/nccl_group.h), the claa::Communicator interface over NCCL, on
// every visible GPU pair or more: each collective on random inputs against the sum / gather /
// copy computed on the host. fp32 sums of `size` terms in NCCL's order differ from the host's
// order by rounding only: tolerance 1e-5 relative. Skips, saying so, with fewer than two GPUs.
#include <cuda_runtime_api.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "engine/gpu/nccl_group.h"
#include "gtest/gtest.h"

namespace claa::gpu {
namespace {

int Devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Runs fn(rank, communicator, device buffer of `count` floats holding `inputs[rank]`) on one
// thread per rank; returns each rank's buffer afterwards (`out_count` floats).
template <typename Fn>
std::vector<std::vector<float>> RunRanks(int size, const std::vector<std::vector<float>>& inputs,
                                         size_t out_count, Fn fn) {
  auto group = NcclGroup::Create(0, size);
  EXPECT_TRUE(group.ok()) << group.status();
  std::vector<std::vector<float>> outs(size, std::vector<float>(out_count));
  if (!group.ok()) return outs;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      auto comm = NcclCommunicator::Create(*group, r);
      ASSERT_TRUE(comm.ok()) << comm.status();
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      float* buf = nullptr;
      const size_t n = std::max(out_count, inputs[r].size());
      ASSERT_EQ(cudaMalloc(&buf, n * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(buf, inputs[r].data(), inputs[r].size() * sizeof(float),
                           cudaMemcpyHostToDevice),
                cudaSuccess);
      absl::Status s = fn(r, **comm, buf);
      EXPECT_TRUE(s.ok()) << "rank " << r << ": " << s;
      EXPECT_EQ(cudaMemcpy(outs[r].data(), buf, out_count * sizeof(float),
                           cudaMemcpyDeviceToHost),
                cudaSuccess);
      cudaFree(buf);
    });
  }
  for (auto& t : threads) t.join();
  return outs;
}

class NcclCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    size_ = Devices();
    if (size_ < 2) GTEST_SKIP() << "NCCL checks need 2 GPUs, " << size_ << " visible: skipped";
  }
  int size_ = 0;
};

TEST_F(NcclCheck, AllReduceSumMatchesHostSum) {
  const size_t n = 100003;  // not a multiple of any chunk size
  std::vector<std::vector<float>> in;
  for (int r = 0; r < size_; ++r) in.push_back(Random(n, 10 + r));
  auto outs = RunRanks(size_, in, n, [&](int, NcclCommunicator& c, float* buf) {
    return c.AllReduceSum(buf, n);
  });
  for (size_t i = 0; i < n; ++i) {
    double want = 0;
    for (int r = 0; r < size_; ++r) want += in[r][i];
    for (int r = 0; r < size_; ++r) {
      ASSERT_NEAR(outs[r][i], want, 1e-5 * size_) << "rank " << r << " element " << i;
    }
  }
  // Every rank holds the very same values (NCCL computes each element once).
  for (int r = 1; r < size_; ++r) EXPECT_EQ(outs[r], outs[0]);
}

TEST_F(NcclCheck, AllGatherConcatenatesInRankOrder) {
  const size_t n = 4099;
  std::vector<std::vector<float>> in;
  for (int r = 0; r < size_; ++r) in.push_back(Random(n, 20 + r));
  std::vector<std::vector<float>> padded = in;
  for (auto& v : padded) v.resize(n * size_, 0.f);
  auto outs = RunRanks(size_, padded, n * size_, [&](int, NcclCommunicator& c, float* buf) {
    // Gather from the first n floats into a second buffer, then copy back over buf.
    float* tmp = nullptr;
    if (cudaMalloc(&tmp, n * size_ * sizeof(float)) != cudaSuccess) {
      return absl::InternalError("cudaMalloc");
    }
    absl::Status s = c.AllGather(buf, n, tmp);
    cudaMemcpy(buf, tmp, n * size_ * sizeof(float), cudaMemcpyDeviceToDevice);
    cudaFree(tmp);
    return s;
  });
  for (int r = 0; r < size_; ++r) {
    for (int src = 0; src < size_; ++src) {
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(outs[r][src * n + i], in[src][i]) << "rank " << r << " from " << src;
      }
    }
  }
}

TEST_F(NcclCheck, BroadcastAndSendRecv) {
  const size_t n = 777;
  std::vector<std::vector<float>> in;
  for (int r = 0; r < size_; ++r) in.push_back(Random(n, 30 + r));
  const int root = size_ - 1;
  auto outs = RunRanks(size_, in, n, [&](int, NcclCommunicator& c, float* buf) {
    return c.Broadcast(buf, n, root);
  });
  for (int r = 0; r < size_; ++r) EXPECT_EQ(outs[r], in[root]) << "rank " << r;

  // Rank 0 sends its data to rank 1; rank 1's buffer becomes rank 0's input.
  outs = RunRanks(size_, in, n, [&](int rank, NcclCommunicator& c, float* buf) {
    if (rank == 0) return c.Send(buf, n, 1);
    if (rank == 1) return c.Recv(buf, n, 0);
    return absl::OkStatus();
  });
  EXPECT_EQ(outs[1], in[0]);
  EXPECT_EQ(outs[0], in[0]);
}

}  // namespace
}  // namespace claa::gpu
