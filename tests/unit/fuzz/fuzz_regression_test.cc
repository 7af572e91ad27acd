// Every committed fuzz input -- the seed corpus and each input a fuzzer once crashed on -- goes
// through its target's entry point again. A broken invariant is a test failure naming the file;
// a crash is a crash. One test per target, so `ctest -R fuzz.` shows which parser regressed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {

// Test names and failure messages show the target's name, not its bytes.
void PrintTo(const Target& target, std::ostream* os) { *os << target.name; }

void ReportFailure(const char* file, int line, const std::string& message) {
  ADD_FAILURE_AT(file, line) << message;
}

namespace {

std::vector<std::filesystem::path> InputsUnder(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class FuzzReplayTest : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzReplayTest, CorpusAndRegressions) {
  const Target& target = GetParam();
  if (target.unavailable != nullptr) {
    const std::string why = target.unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
  }
  const std::filesystem::path root = std::filesystem::path(CLAA_SOURCE_DIR) / "tests" / "fuzz";
  const std::vector<std::filesystem::path> regressions =
      InputsUnder(root / "regressions" / target.name);
  const std::vector<std::filesystem::path> corpus = InputsUnder(root / "corpus" / target.name);
  // A target without a seed corpus is a packaging mistake, not a pass.
  ASSERT_FALSE(corpus.empty()) << "no corpus under " << (root / "corpus" / target.name);
  for (const auto* files : {&regressions, &corpus}) {
    for (const std::filesystem::path& file : *files) {
      SCOPED_TRACE(file.string());
      const std::string bytes = ReadBytes(file);
      target.entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
  }
  RecordProperty("regressions", static_cast<int>(regressions.size()));
  RecordProperty("corpus", static_cast<int>(corpus.size()));
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplayTest, ::testing::ValuesIn(AllTargets()),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace claa::fuzz
