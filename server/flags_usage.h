#ifndef CLAA_SERVER_FLAGS_USAGE_H_
#define CLAA_SERVER_FLAGS_USAGE_H_

// Makes --help list the flags defined in this binary's main file. Abseil's default shows only
// flags from a file named after the binary, which our Google-style file names are not.
#include <string>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace claa {

// Files whose path ends with one of the suffixes have their flags listed.
inline void ShowFlagsOfFileInHelp(std::string main_file_suffix, std::string other_suffix = "") {
  absl::FlagsUsageConfig config;
  auto filter = [main_file_suffix, other_suffix](absl::string_view file) {
    return absl::EndsWith(file, main_file_suffix) ||
           (!other_suffix.empty() && absl::EndsWith(file, other_suffix));
  };
  config.contains_helpshort_flags = filter;
  config.contains_help_flags = filter;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace claa

#endif  // CLAA_SERVER_FLAGS_USAGE_H_
