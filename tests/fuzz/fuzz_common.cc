// The target table and helpers shared by every fuzz entry point.
#include <cstdio>

#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {

const std::vector<Target>& AllTargets() {
  static const std::vector<Target> targets = {
      {"safetensors", &FuzzSafetensors, nullptr},
      {"model_config", &FuzzModelConfig, nullptr},
      {"tokenizer_json", &FuzzTokenizerJson, nullptr},
      {"tokenize_builtin", &FuzzTokenizeBuiltin, nullptr},
      {"tokenize_smollm2", &FuzzTokenizeSmolLM2, &SmolLM2Unavailable},
      {"generate_request", &FuzzGenerateRequest, nullptr},
  };
  return targets;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

std::string Escape(std::string_view s, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max_bytes) out += absl::StrCat("...(", s.size(), " bytes)");
  return out;
}

}  // namespace claa::fuzz
