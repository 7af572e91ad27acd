#ifndef CLAA_ENGINE_TOKENIZER_REGEX_H_
#define CLAA_ENGINE_TOKENIZER_REGEX_H_

// Thin PCRE2 wrapper. Hugging Face tokenizer.json patterns are Oniguruma regexes; compiled with
// PCRE2_UTF | PCRE2_UCP the ones found in practice (GPT-2, Llama-3, Qwen, digits, punctuation)
// behave identically. Compiled code is immutable and shared; match data is per call, so one
// Regex may be used from several threads at once.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace claa::tokenizer_internal {

class Regex {
 public:
  // `literal` compiles the pattern as a fixed string (tokenizer.json {"String": ...} patterns).
  static absl::StatusOr<std::shared_ptr<const Regex>> Compile(std::string_view pattern,
                                                              bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches as [begin, end) byte ranges, with the Rust `regex`/`onig`
  // iteration rule for empty matches: an empty match right where the previous match ended is
  // skipped. `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex(void* code, std::string pattern) : code_(code), pattern_(std::move(pattern)) {}
  void* code_;  // pcre2_code_8*, kept opaque so users do not need the PCRE2 headers.
  std::string pattern_;
};

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_REGEX_H_
