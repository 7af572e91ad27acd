#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace claa {

using tokenizer_internal::kReplacementChar;

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamingDecoder::DecodeWindow(size_t end) const {
  std::vector<int32_t> window;
  window.reserve(end + 1);
  // Mid-stream, put the anchor in front so that decoder rules for the first token (Metaspace
  // dropping the leading space, Strip) apply to the anchor, as they applied to the real first
  // token of the full sequence, and never to the window's first id.
  const std::optional<int32_t> anchor = tokenizer_->stream_anchor_id();
  if (!window_at_start_ && anchor.has_value()) window.push_back(*anchor);
  window.insert(window.end(), ids_.begin(), ids_.begin() + end);
  // Ids were range-checked on Push, so decoding cannot fail.
  auto text = tokenizer_->Decode(window, skip_special_tokens_);
  return text.ok() ? *std::move(text) : std::string();
}

absl::StatusOr<std::string> StreamingDecoder::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size() || !tokenizer_->IdToToken(id).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("StreamingDecoder: invalid id ", id));
  }
  ids_.push_back(id);
  // A skipped special token renders nothing and must not end a byte run either: Decode drops
  // it before the decoder sees the tokens, joining the bytes on both sides.
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  // A run of byte-fallback tokens renders as text only if the whole run is valid UTF-8, so
  // nothing after its start is stable until a non-byte token ends it.
  if (tokenizer_->IsByteFallbackToken(id)) return std::string();

  const std::string prefix_text = DecodeWindow(read_);
  std::string new_text = DecodeWindow(ids_.size());
  // Hold while the tail is an incomplete character (rendered as U+FFFD) or nothing changed.
  if (new_text.size() <= prefix_text.size() ||
      absl::EndsWith(new_text, tokenizer_internal::AsAbsl(kReplacementChar)) ||
      !absl::StartsWith(new_text, prefix_text)) {
    return std::string();
  }
  std::string delta = new_text.substr(prefix_text.size());
  // Slide the window: ids already emitted before this step only serve as context now.
  if (read_ > 0) {
    ids_.erase(ids_.begin(), ids_.begin() + read_);
    window_at_start_ = false;
  }
  read_ = ids_.size();
  return delta;
}

std::string StreamingDecoder::Flush() {
  std::string delta;
  if (!ids_.empty()) {
    const std::string prefix_text = DecodeWindow(read_);
    const std::string new_text = DecodeWindow(ids_.size());
    if (new_text.size() > prefix_text.size() && absl::StartsWith(new_text, prefix_text)) {
      delta = new_text.substr(prefix_text.size());
    }
  }
  ids_.clear();
  read_ = 0;
  window_at_start_ = true;
  return delta;
}

}  // namespace claa
