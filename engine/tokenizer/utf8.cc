#include "engine/tokenizer/utf8.h"

namespace claa::tokenizer_internal {
namespace {

bool IsCont(unsigned char b) { return (b & 0xC0) == 0x80; }

// Returns the number of bytes of the valid sequence at pos, or 0; on failure `error_len` is set to
// the number of bytes Rust's Utf8Chunks would replace with a single U+FFFD.
size_t Classify(std::string_view s, size_t pos, size_t& error_len) {
  const auto byte = [&](size_t i) -> int {
    return pos + i < s.size() ? static_cast<unsigned char>(s[pos + i]) : -1;
  };
  const int first = byte(0);
  error_len = 1;
  if (first < 0x80) return 1;
  int width = 0;
  if (first >= 0xC2 && first <= 0xDF)
    width = 2;
  else if (first >= 0xE0 && first <= 0xEF)
    width = 3;
  else if (first >= 0xF0 && first <= 0xF4)
    width = 4;
  if (width == 0) return 0;
  const int second = byte(1);
  if (second < 0) return 0;
  bool second_ok = false;
  if (width == 2) {
    second_ok = IsCont(second);
  } else if (width == 3) {
    second_ok = (first == 0xE0 && second >= 0xA0 && second <= 0xBF) ||
                (first >= 0xE1 && first <= 0xEC && IsCont(second)) ||
                (first == 0xED && second >= 0x80 && second <= 0x9F) ||
                (first >= 0xEE && IsCont(second));
  } else {
    second_ok = (first == 0xF0 && second >= 0x90 && second <= 0xBF) ||
                (first >= 0xF1 && first <= 0xF3 && IsCont(second)) ||
                (first == 0xF4 && second >= 0x80 && second <= 0x8F);
  }
  if (!second_ok) return 0;
  if (width == 2) return 2;
  for (int i = 2; i < width; ++i) {
    const int b = byte(i);
    if (b < 0 || !IsCont(b)) {
      error_len = i;
      return 0;
    }
  }
  return width;
}

}  // namespace

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  size_t error_len = 0;
  return Classify(text, pos, error_len);
}

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

char32_t DecodeCodePoint(std::string_view text, size_t& pos) {
  const unsigned char b0 = text[pos];
  const size_t n = CharLength(text, pos);
  char32_t cp = 0;
  switch (n) {
    case 1:
      cp = b0;
      break;
    case 2:
      cp = b0 & 0x1F;
      break;
    case 3:
      cp = b0 & 0x0F;
      break;
    default:
      cp = b0 & 0x07;
      break;
  }
  for (size_t i = 1; i < n; ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

void AppendCodePoint(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t CharLength(std::string_view text, size_t pos) {
  const unsigned char b = text[pos];
  size_t n = 1;
  if (b >= 0xF0)
    n = 4;
  else if (b >= 0xE0)
    n = 3;
  else if (b >= 0xC0)
    n = 2;
  return pos + n <= text.size() ? n : 1;
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t error_len = 0;
    const size_t n = Classify(bytes, pos, error_len);
    if (n > 0) {
      out.append(bytes.substr(pos, n));
      pos += n;
    } else {
      out.append(kReplacementChar);
      pos += error_len;
    }
  }
  return out;
}

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

size_t CodePointCount(std::string_view text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); pos += CharLength(text, pos)) ++count;
  return count;
}

}  // namespace claa::tokenizer_internal
