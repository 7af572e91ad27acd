#ifndef CLAA_ENGINE_TOKENIZER_UTF8_H_
#define CLAA_ENGINE_TOKENIZER_UTF8_H_

// Small UTF-8 helpers. The tokenizer works on std::string bytes throughout; these helpers
// step over code points and reproduce Rust's String::from_utf8_lossy, because the reference
// `tokenizers` library's byte-level decoder is defined in terms of it.
#include <cstddef>
#include <string>
#include <string_view>

namespace claa::tokenizer_internal {

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Length in bytes of the valid UTF-8 sequence starting at text[pos], or 0 when invalid/truncated.
size_t ValidSequenceLength(std::string_view text, size_t pos);

// Decodes the code point at text[pos] of a string known to be valid UTF-8 and advances pos.
char32_t DecodeCodePoint(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of `cp`.
void AppendCodePoint(char32_t cp, std::string& out);

// Byte length of the character starting at text[pos] of valid UTF-8 (1 for stray bytes).
size_t CharLength(std::string_view text, size_t pos);

// Replaces invalid sequences with U+FFFD exactly like Rust's from_utf8_lossy (one replacement
// per maximal invalid subpart).
std::string Utf8Lossy(std::string_view bytes);

// Rust's char::is_whitespace (Unicode White_Space property).
bool IsUnicodeWhitespace(char32_t cp);

// Number of code points in valid UTF-8.
size_t CodePointCount(std::string_view text);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_UTF8_H_
