#ifndef CLAA_TESTS_UNIT_SECURITY_TEMP_DIR_H_
#define CLAA_TESTS_UNIT_SECURITY_TEMP_DIR_H_

// A fresh directory under the system temp dir, removed with everything in it at destruction.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace claa::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "claa-sec-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

  // Writes `text` to path()/name (creating parent folders); returns the file's path.
  std::string Write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_SECURITY_TEMP_DIR_H_
