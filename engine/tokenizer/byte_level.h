#ifndef CLAA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define CLAA_ENGINE_TOKENIZER_BYTE_LEVEL_H_

// GPT-2's reversible byte <-> printable-code-point alphabet, used by byte-level BPE so that
// every byte sequence maps to a vocabulary string without whitespace/control characters.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace claa::tokenizer_internal {

// The GPT-2 pre-tokenization regex (ByteLevel with use_regex).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The code point byte `b` maps to.
char32_t ByteToUnicode(unsigned char b);
// UTF-8 of ByteToUnicode(b), precomputed.
const std::string& ByteToUnicodeUtf8(unsigned char b);
// Inverse mapping; nullopt when `cp` is not in the alphabet.
std::optional<unsigned char> UnicodeToByte(char32_t cp);

// Maps every byte of `text` to its alphabet character.
std::string BytesToAlphabet(std::string_view text);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
