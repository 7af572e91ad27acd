#ifndef CLAA_ENGINE_TOKENIZER_TOKENIZER_H_
#define CLAA_ENGINE_TOKENIZER_TOKENIZER_H_

// Hugging Face tokenizer.json loader and runner (BPE models: byte-level GPT-2/Llama-3/SmolLM2
// style and SentencePiece-style with byte fallback). Encode/Decode reproduce the reference
// `tokenizers` library's ids and text. All methods are const and thread-safe after loading.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace claa {

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(
      const std::filesystem::path& tokenizer_json);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text);
  ~Tokenizer();

  // Invalid UTF-8 input -> InvalidArgument.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  // An id out of range (or with no token) -> InvalidArgument.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;
  // Max id + 1 over vocab and added tokens.
  int32_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  // BOS the post-processor prepends with add_special_tokens (first special token of the
  // TemplateProcessing single template), if any.
  std::optional<int32_t> bos_id() const;

 private:
  friend class StreamingDecoder;
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);

  // Whether `id` is a "<0xNN>" token that the decoder turns into a raw byte; the streaming
  // decoder holds such runs because their rendering depends on the bytes that follow.
  bool IsByteFallbackToken(int32_t id) const;
  // A plain token with a context-free one-character rendering, used by the streaming decoder
  // as a stand-in left context so that "first token" decoder rules do not fire mid-stream.
  std::optional<int32_t> stream_anchor_id() const;

  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: feed ids one at a time; returns the newly completed text. It never emits
// broken UTF-8: bytes of an incomplete multi-byte character are held until complete. Its output,
// concatenated with Flush(), equals Decode(all ids). Works by re-decoding a small window of
// recent ids and emitting only the stable suffix (like vLLM/TGI incremental detokenization).
class StreamingDecoder {
 public:
  StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);
  absl::StatusOr<std::string> Push(int32_t id);
  // Remaining text; an incomplete trailing character becomes U+FFFD as Decode would. Resets
  // the decoder for a new stream.
  std::string Flush();

 private:
  // Decodes ids_[0, end), with the anchor in front once the window no longer starts the stream.
  std::string DecodeWindow(size_t end) const;

  const Tokenizer* tokenizer_;  // not owned; a pointer keeps the decoder assignable
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // the window: ids not yet known to be out of decoding context
  size_t read_ = 0;           // ids_[0, read_) have had their text emitted
  bool window_at_start_ = true;
};

// The built-in tokenizer of the built-in demo model: a byte-level BPE tokenizer.json (text)
// with 256 byte tokens (GPT-2 byte-to-unicode alphabet, id = byte value), 254 merged tokens
// generated deterministically from common English fragments and words, plus special tokens
// "<|begin_of_text|>" (id 510, BOS, prepended by a TemplateProcessing post-processor) and
// "<|end_of_text|>" (id 511, EOS).
std::string BuiltinTokenizerJson();

}  // namespace claa

#endif  // CLAA_ENGINE_TOKENIZER_TOKENIZER_H_
