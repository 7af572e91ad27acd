#ifndef CLAA_TESTS_TEST_DATA_H_
#define CLAA_TESTS_TEST_DATA_H_

// Locates ../shared test data (real weights, golden tokenizer encodings). The data is never
// copied into the repo; tests skip, saying why, when it is absent.
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace claa::testing {

// CLAA_SHARED_DIR if set, else <source>/../shared. nullopt when that folder does not exist.
inline std::optional<std::filesystem::path> SharedDir() {
  std::filesystem::path dir;
  if (const char* env = std::getenv("CLAA_SHARED_DIR"); env != nullptr && *env != '\0') {
    dir = env;
  } else {
    dir = std::filesystem::path(CLAA_SOURCE_DIR) / ".." / "shared";
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return std::nullopt;
  return std::filesystem::weakly_canonical(dir, ec);
}

// Path of a file or folder under the shared dir, nullopt when missing.
inline std::optional<std::filesystem::path> SharedPath(const std::string& rel) {
  auto dir = SharedDir();
  if (!dir) return std::nullopt;
  std::filesystem::path p = *dir / rel;
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return std::nullopt;
  return p;
}

}  // namespace claa::testing

// Skips the current test with a message when a shared path is missing.
#define CLAA_REQUIRE_SHARED(var, rel)                                                   \
  auto var##_opt = ::claa::testing::SharedPath(rel);                                     \
  if (!var##_opt) {                                                                      \
    GTEST_SKIP() << "test data " << (rel)                                                \
                 << " not found (set CLAA_SHARED_DIR; default <source>/../shared)";     \
  }                                                                                      \
  const std::filesystem::path var = *var##_opt

#endif  // CLAA_TESTS_TEST_DATA_H_
