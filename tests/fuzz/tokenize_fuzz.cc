// Fuzzes tokenization of arbitrary bytes with the built-in tokenizer and with SmolLM2's real
// tokenizer.json (from ../shared), and tokenizer.json loading itself. The invariants are the
// ones the server relies on: invalid UTF-8 is refused (never mis-tokenized), ids are in range,
// byte-level tokenizers round-trip text (minus characters their vocabulary cannot spell), BOS
// handling matches bos_id(), and the streaming detokenizer (what clients receive) equals a
// one-shot Decode.
#include <algorithm>
#include <bitset>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {
namespace {

struct CheckOptions {
  // Encode then Decode(skip_special_tokens=false) gives the text back. True for byte-level BPE
  // without a normalizer (the built-in tokenizer, SmolLM2); not for arbitrary tokenizer.json.
  bool round_trip = false;
  // Bytes whose byte-level character has no token. Hugging Face tokenizers (BPE without
  // unk_token or byte_fallback) silently drop such a character, and so does Encode; SmolLM2's
  // vocabulary lacks 0x04 0x06 0x13 0x14 0x16 0x1D and some bytes rare or invalid in UTF-8.
  std::bitset<256> dropped;
};

// GPT-2's byte -> printable character table, as UTF-8 (the byte-level alphabet).
std::string ByteLevelChar(uint8_t b) {
  uint32_t cp = b;
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  if (!printable) {
    // Unprintable bytes take the code points 256, 257, ... in byte order.
    uint32_t n = 0;
    for (uint32_t c = 0; c < b; ++c) {
      if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) ++n;
    }
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

CheckOptions ByteLevelOptions(const Tokenizer& tok) {
  CheckOptions options;
  options.round_trip = true;
  for (int b = 0; b < 256; ++b) {
    options.dropped[b] = !tok.TokenToId(ByteLevelChar(static_cast<uint8_t>(b))).has_value();
  }
  return options;
}

// Decode(ids) == concatenation of StreamingDecoder::Push(id) for each id, then Flush().
int CheckStreaming(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  auto whole = tok.Decode(ids, skip_special);
  CLAA_FUZZ_CHECK(whole.ok(), whole.status().ToString());
  StreamingDecoder stream(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    auto piece = stream.Push(id);
    CLAA_FUZZ_CHECK(piece.ok(), "Push(", id, "): ", piece.status().ToString());
    streamed += *piece;
  }
  streamed += stream.Flush();
  CLAA_FUZZ_CHECK(streamed == *whole, "skip_special=", skip_special, " streamed \"",
                  Escape(streamed), "\" != decoded \"", Escape(*whole), "\" (", ids.size(),
                  " ids)");
  return 0;
}

// Runs every check on `text` as a prompt and on its bytes as token ids.
int CheckTokenizer(const Tokenizer& tok, std::string_view text, const CheckOptions& options) {
  const bool valid = IsValidUtf8(text);
  const int32_t vocab = tok.vocab_size();
  auto plain = tok.Encode(text, /*add_special_tokens=*/false);
  auto with_special = tok.Encode(text, /*add_special_tokens=*/true);
  if (!valid) {
    // Both must refuse: a prompt with invalid UTF-8 is the client's error.
    CLAA_FUZZ_CHECK(!plain.ok() && plain.status().code() == absl::StatusCode::kInvalidArgument,
                    "invalid UTF-8 \"", Escape(text), "\" -> ", plain.status().ToString());
    CLAA_FUZZ_CHECK(!with_special.ok(), "invalid UTF-8 accepted with special tokens");
  } else {
    CLAA_FUZZ_CHECK(plain.ok(), "\"", Escape(text), "\": ", plain.status().ToString());
    CLAA_FUZZ_CHECK(with_special.ok(), with_special.status().ToString());
    for (int32_t id : *with_special) CLAA_FUZZ_CHECK(id >= 0 && id < vocab, "id ", id);
    if (const std::optional<int32_t> bos = tok.bos_id(); bos.has_value()) {
      CLAA_FUZZ_CHECK(!with_special->empty() && with_special->front() == *bos, "no BOS");
    }
    // Special tokens wrap the plain encoding (BOS before it, e.g. Roberta's </s> after it).
    CLAA_FUZZ_CHECK(std::search(with_special->begin(), with_special->end(), plain->begin(),
                                plain->end()) != with_special->end() ||
                        plain->empty(),
                    "the plain encoding is not inside the one with special tokens");
    auto decoded = tok.Decode(*plain, /*skip_special_tokens=*/false);
    CLAA_FUZZ_CHECK(decoded.ok(), decoded.status().ToString());
    if (options.round_trip) {
      // The text minus the characters the vocabulary cannot spell. Only dropped ASCII bytes are
      // modelled: dropping one byte of a multi-byte character leaves broken UTF-8 for Decode.
      std::string expected;
      bool modelled = true;
      for (char c : text) {
        const uint8_t b = static_cast<uint8_t>(c);
        if (!options.dropped[b]) {
          expected += c;
        } else if (b >= 0x80) {
          modelled = false;
        }
      }
      CLAA_FUZZ_CHECK(!modelled || *decoded == expected, "round trip \"", Escape(text),
                      "\" -> \"", Escape(*decoded), "\"");
    }
    CheckStreaming(tok, *with_special, false);
    CheckStreaming(tok, *with_special, true);
  }

  // The same bytes as little-endian 16-bit ids, some beyond the vocabulary: out-of-range ids are
  // refused by name, in-range ones decode, one-shot and streamed alike.
  std::vector<int32_t> ids;
  bool out_of_range = false;
  for (size_t i = 0; i + 1 < text.size() && ids.size() < 256; i += 2) {
    const uint32_t raw = static_cast<uint8_t>(text[i]) | (static_cast<uint8_t>(text[i + 1]) << 8);
    const int32_t id = static_cast<int32_t>(raw % (static_cast<uint32_t>(vocab) + 4));
    if (id >= vocab || !tok.IdToToken(id).has_value()) out_of_range = true;
    ids.push_back(id);
  }
  auto decoded_ids = tok.Decode(ids, /*skip_special_tokens=*/false);
  if (out_of_range) {
    CLAA_FUZZ_CHECK(!decoded_ids.ok() &&
                        decoded_ids.status().code() == absl::StatusCode::kInvalidArgument,
                    "an out-of-range id was decoded");
  } else {
    CLAA_FUZZ_CHECK(decoded_ids.ok(), decoded_ids.status().ToString());
    CheckStreaming(tok, ids, false);
    CheckStreaming(tok, ids, true);
  }
  return 0;
}

std::optional<std::filesystem::path> SmolLM2Path() {
  std::filesystem::path dir;
  if (const char* env = std::getenv("CLAA_SHARED_DIR"); env != nullptr && *env != '\0') {
    dir = env;
  } else {
    dir = std::filesystem::path(CLAA_SOURCE_DIR) / ".." / "shared";
  }
  std::filesystem::path p = dir / "tokenizers" / "smollm2-135m" / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return std::nullopt;
  return p;
}

struct Loaded {
  const Tokenizer* tokenizer = nullptr;
  CheckOptions options;
};

const Loaded& SmolLM2() {
  static const Loaded loaded = [] {
    Loaded l;
    std::optional<std::filesystem::path> path = SmolLM2Path();
    if (!path) return l;
    auto t = Tokenizer::FromFile(*path);
    if (!t.ok()) return l;
    l.tokenizer = t->release();
    l.options = ByteLevelOptions(*l.tokenizer);
    return l;
  }();
  return loaded;
}

const Loaded& Builtin() {
  static const Loaded loaded = [] {
    Loaded l;
    l.tokenizer = Tokenizer::FromJson(BuiltinTokenizerJson())->release();
    l.options = ByteLevelOptions(*l.tokenizer);
    return l;
  }();
  return loaded;
}

}  // namespace

int FuzzTokenizeBuiltin(const uint8_t* data, size_t size) {
  const Loaded& builtin = Builtin();
  // The built-in vocabulary spells every byte: its round trip is exact.
  CLAA_FUZZ_CHECK(builtin.options.dropped.none(), builtin.options.dropped.count(), " bytes");
  return CheckTokenizer(*builtin.tokenizer,
                        std::string_view(reinterpret_cast<const char*>(data), size),
                        builtin.options);
}

std::string SmolLM2Unavailable() {
  if (!SmolLM2Path()) {
    return "tokenizers/smollm2-135m/tokenizer.json not found (set CLAA_SHARED_DIR; default "
           "<source>/../shared)";
  }
  if (SmolLM2().tokenizer == nullptr) return "tokenizers/smollm2-135m/tokenizer.json does not load";
  return "";
}

int FuzzTokenizeSmolLM2(const uint8_t* data, size_t size) {
  const Loaded& smollm2 = SmolLM2();
  if (smollm2.tokenizer == nullptr) return 0;
  return CheckTokenizer(*smollm2.tokenizer,
                        std::string_view(reinterpret_cast<const char*>(data), size),
                        smollm2.options);
}

int FuzzTokenizerJson(const uint8_t* data, size_t size) {
  auto tok = Tokenizer::FromJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!tok.ok()) {
    CLAA_FUZZ_CHECK(tok.status().code() == absl::StatusCode::kInvalidArgument ||
                        tok.status().code() == absl::StatusCode::kUnimplemented,
                    tok.status().ToString());
    return 0;
  }
  CLAA_FUZZ_CHECK((*tok)->vocab_size() >= 0, (*tok)->vocab_size());
  // Whatever loads must tokenize anything without crashing and keep its own ids consistent.
  static const char* const kSamples[] = {
      "",
      "Hello, world! The quick brown fox.",
      "  leading\tand trailing \n\n",
      "na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80",
      "<s></s><unk><|endoftext|>[CLS]",
      "12345 67.89",
      "bad \xFF\xFE utf8",
  };
  for (const char* sample : kSamples) CheckTokenizer(**tok, sample, {});
  for (int32_t id = 0; id < std::min<int32_t>((*tok)->vocab_size(), 64); ++id) {
    std::optional<std::string> token = (*tok)->IdToToken(id);
    if (!token) continue;
    CLAA_FUZZ_CHECK((*tok)->TokenToId(*token).has_value(), "token of id ", id, " has no id");
  }
  return 0;
}

}  // namespace claa::fuzz
