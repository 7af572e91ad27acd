#ifndef CLAA_TESTS_UNIT_TOKENIZER_TOKENIZER_TEST_UTIL_H_
#define CLAA_TESTS_UNIT_TOKENIZER_TOKENIZER_TEST_UTIL_H_

// Helpers shared by the tokenizer tests: reading golden files, an independent UTF-8 validator
// and printable escaping for failure messages.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace claa::testing {

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// One golden case; `ids_with_bos` is empty when the golden file has no such field.
struct GoldenCase {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<int32_t> ids_with_bos;
  bool has_ids_with_bos = false;
  std::vector<std::string> tokens;
  std::string decoded;
};

inline std::vector<GoldenCase> LoadGolden(const std::filesystem::path& path) {
  std::vector<GoldenCase> cases;
  const auto j = nlohmann::json::parse(ReadFile(path), nullptr, false);
  if (!j.is_array()) return cases;
  for (const auto& item : j) {
    GoldenCase c;
    c.text = item.value("text", "");
    c.ids = item.value("ids", std::vector<int32_t>{});
    if (item.contains("ids_with_bos")) {
      c.has_ids_with_bos = true;
      c.ids_with_bos = item["ids_with_bos"].get<std::vector<int32_t>>();
    }
    c.tokens = item.value("tokens", std::vector<std::string>{});
    c.decoded = item.value("decoded", "");
    cases.push_back(std::move(c));
  }
  return cases;
}

// Strict UTF-8 validation, written independently of the tokenizer's own.
inline bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      n = 2;
      cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      n = 3;
      cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// The text with control and non-ASCII bytes escaped, for readable failure messages.
inline std::string Escape(std::string_view s) {
  std::string out = "\"";
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c == '"')
      out += "\\\"";
    else if (c < 0x20 || c >= 0x7F) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

inline std::string IdsToString(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_TOKENIZER_TOKENIZER_TEST_UTIL_H_
