#ifndef CLAA_SERVER_FLAGS_USAGE_H_
#define CLAA_SERVER_FLAGS_USAGE_H_

// Makes --help list the flags defined in this binary's main file. Abseil's default shows only
// flags from a file named after the binary, which our Google-style file names are not.
#include <string>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace claa {

inline void ShowFlagsOfFileInHelp(std::string main_file_suffix) {
  absl::FlagsUsageConfig config;
  auto filter = [main_file_suffix](absl::string_view file) {
    return absl::EndsWith(file, main_file_suffix);
  };
  config.contains_helpshort_flags = filter;
  config.contains_help_flags = filter;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace claa

#endif  // CLAA_SERVER_FLAGS_USAGE_H_
