#ifndef CLAA_ENGINE_TOKENIZER_ABSL_COMPAT_H_
#define CLAA_ENGINE_TOKENIZER_ABSL_COMPAT_H_

// Debian's Abseil is built with its own absl::string_view (not an alias of std::string_view),
// and the two do not convert implicitly. The tokenizer uses std::string_view; this bridges it
// for Abseil string functions and heterogeneous hash-map lookups.
#include <string_view>

#include "absl/strings/string_view.h"

namespace claa::tokenizer_internal {

inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_ABSL_COMPAT_H_
