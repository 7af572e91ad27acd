#ifndef CLAA_TESTS_UNIT_ATTNCACHE_ATTNCACHE_TEST_UTIL_H_
#define CLAA_TESTS_UNIT_ATTNCACHE_ATTNCACHE_TEST_UTIL_H_

// Small random models and scratch directories for the AttnCache tests.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/weights.h"
#include "engine/runtime/model_runner.h"
#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa::testing {

// SmallConfig with weights large enough (std 0.2) that attention is far from uniform, so a
// wrong map shows in the output.
inline std::unique_ptr<ModelRunner> MakeRunner(int tp = 1, int blocks = 64, uint64_t seed = 7) {
  ModelConfig c = SmallConfig();
  auto runner = ModelRunner::Create(
      [c, seed](TpShard shard) -> absl::StatusOr<ModelWeights> {
        return MakeRandomWeights(c, seed, shard, 0.2f);
      },
      tp, RunnerOptions{blocks, 8});
  EXPECT_TRUE(runner.ok()) << runner.status();
  return runner.ok() ? *std::move(runner) : nullptr;
}

inline std::vector<int32_t> Tokens(int n, uint32_t seed, int vocab = 97) {
  std::vector<int32_t> t(n);
  uint32_t x = seed * 2654435761u + 1;
  for (int& v : t) {
    x = x * 1664525u + 1013904223u;
    v = int((x >> 8) % uint32_t(vocab));
  }
  return t;
}

// A fresh directory under the test's temp dir, removed at destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    path_ = std::filesystem::path(tmp ? tmp : "/tmp") /
            ("claa_attncache_" + name + "_" + std::to_string(getpid()));
    std::filesystem::remove_all(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_ATTNCACHE_ATTNCACHE_TEST_UTIL_H_
