#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/utf8.h"

namespace claa::tokenizer_internal {
namespace {

struct Tables {
  std::array<char32_t, 256> to_unicode{};
  std::array<std::string, 256> to_utf8;
  // Every alphabet code point is below 324 (256 + 68 remapped bytes).
  std::array<int, 512> to_byte{};

  Tables() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes keep their code point; the rest are moved, in order, to 256+.
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_unicode[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      AppendCodePoint(to_unicode[b], to_utf8[b]);
      to_byte[to_unicode[b]] = b;
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

char32_t ByteToUnicode(unsigned char b) { return GetTables().to_unicode[b]; }

const std::string& ByteToUnicodeUtf8(unsigned char b) { return GetTables().to_utf8[b]; }

std::optional<unsigned char> UnicodeToByte(char32_t cp) {
  if (cp >= 512) return std::nullopt;
  const int b = GetTables().to_byte[cp];
  if (b < 0) return std::nullopt;
  return static_cast<unsigned char>(b);
}

std::string BytesToAlphabet(std::string_view text) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char b : text) out += t.to_utf8[b];
  return out;
}

}  // namespace claa::tokenizer_internal
