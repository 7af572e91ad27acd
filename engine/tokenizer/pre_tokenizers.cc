#include "engine/tokenizer/pre_tokenizers.h"

#include <functional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace claa::tokenizer_internal {
namespace {

// Splits every piece with a regex and a behavior (the shape of most pre-tokenizers).
class RegexSplitPreTokenizer : public PreTokenizer {
 public:
  RegexSplitPreTokenizer(std::shared_ptr<const Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (const Piece& p : pieces) {
      SplitByRanges(p, RegexMatchRanges(*regex_, p.text), behavior_, invert_, out);
    }
    pieces = std::move(out);
  }

 private:
  std::shared_ptr<const Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// Splits on single code points chosen by a predicate.
class CharSplitPreTokenizer : public PreTokenizer {
 public:
  CharSplitPreTokenizer(std::function<bool(char32_t)> pred, SplitBehavior behavior)
      : pred_(std::move(pred)), behavior_(behavior) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (const Piece& p : pieces) {
      SplitByRanges(p, CharMatchRanges(pred_, p.text), behavior_, /*invert=*/false, out);
    }
    pieces = std::move(out);
  }

 private:
  std::function<bool(char32_t)> pred_;
  SplitBehavior behavior_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::shared_ptr<const Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' '))
        p.text.insert(p.text.begin(), ' ');
      if (regex_ != nullptr) {
        SplitByRanges(p, RegexMatchRanges(*regex_, p.text), SplitBehavior::kIsolated, false, out);
      } else {
        out.push_back(std::move(p));
      }
    }
    for (Piece& p : out) p.text = BytesToAlphabet(p.text);
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<const Regex> regex_;  // null when use_regex is false
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {
    size_t pos = 0;
    replacement_cp_ = DecodeCodePoint(replacement_, pos);
  }
  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      p.text = absl::StrReplaceAll(p.text, {{" ", replacement_}});
      const bool prepend =
          scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start);
      if (prepend && !absl::StartsWith(p.text, replacement_)) p.text.insert(0, replacement_);
      if (split_) {
        const char32_t rep = replacement_cp_;
        SplitByRanges(p, CharMatchRanges([rep](char32_t c) { return c == rep; }, p.text),
                      SplitBehavior::kMergedWithNext, false, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  char32_t replacement_cp_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// Unicode punctuation (P*) plus ASCII punctuation, as BERT-style splitting defines it.
absl::StatusOr<std::shared_ptr<const Regex>> PunctuationRegex() {
  return Regex::Compile(R"([\p{P}\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}])", false);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeWhitespaceSplit() {
  return std::unique_ptr<PreTokenizer>(
      new CharSplitPreTokenizer(IsUnicodeWhitespace, SplitBehavior::kRemoved));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& j) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  CLAA_ASSIGN_OR_RETURN(std::string type, GetType(j, "pre_tokenizer"));
  if (type == "Sequence") {
    const Json* list = FindField(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence pre_tokenizer needs a 'pretokenizers' array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const Json& item : *list) {
      CLAA_ASSIGN_OR_RETURN(auto part, ParsePreTokenizer(item));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "ByteLevel") {
    CLAA_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(j, "add_prefix_space", true));
    CLAA_ASSIGN_OR_RETURN(bool use_regex, GetBool(j, "use_regex", true));
    std::shared_ptr<const Regex> regex;
    if (use_regex) {
      CLAA_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern, false));
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(add_prefix_space, regex));
  }
  if (type == "Split") {
    CLAA_ASSIGN_OR_RETURN(auto regex, GetPattern(j, "pattern"));
    CLAA_ASSIGN_OR_RETURN(std::string behavior_name, GetString(j, "behavior"));
    CLAA_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseSplitBehavior(behavior_name));
    CLAA_ASSIGN_OR_RETURN(bool invert, GetBool(j, "invert", false));
    return std::unique_ptr<PreTokenizer>(new RegexSplitPreTokenizer(regex, behavior, invert));
  }
  if (type == "Digits") {
    CLAA_ASSIGN_OR_RETURN(bool individual, GetBool(j, "individual_digits", false));
    // Rust's char::is_numeric is the Unicode N category; each digit is one match, and
    // Contiguous merges runs of them.
    CLAA_ASSIGN_OR_RETURN(auto regex, Regex::Compile(R"(\p{N})", false));
    return std::unique_ptr<PreTokenizer>(new RegexSplitPreTokenizer(
        regex, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false));
  }
  if (type == "Metaspace") {
    CLAA_ASSIGN_OR_RETURN(std::string replacement, GetChar(j, "replacement", "\xE2\x96\x81"));
    CLAA_ASSIGN_OR_RETURN(bool split, GetBool(j, "split", true));
    CLAA_ASSIGN_OR_RETURN(auto scheme_name, GetOptionalString(j, "prepend_scheme"));
    PrependScheme scheme = PrependScheme::kAlways;
    if (scheme_name.has_value()) {
      if (*scheme_name == "first")
        scheme = PrependScheme::kFirst;
      else if (*scheme_name == "always")
        scheme = PrependScheme::kAlways;
      else if (*scheme_name == "never")
        scheme = PrependScheme::kNever;
      else
        return absl::InvalidArgumentError(
            absl::StrCat("unknown Metaspace prepend_scheme '", *scheme_name, "'"));
    } else {
      // Older files only carry add_prefix_space.
      CLAA_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(j, "add_prefix_space", true));
      scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(replacement, scheme, split));
  }
  if (type == "Whitespace") {
    CLAA_ASSIGN_OR_RETURN(auto regex, Regex::Compile(R"(\w+|[^\w\s]+)", false));
    return std::unique_ptr<PreTokenizer>(
        new RegexSplitPreTokenizer(regex, SplitBehavior::kRemoved, /*invert=*/true));
  }
  if (type == "WhitespaceSplit") return MakeWhitespaceSplit();
  if (type == "CharDelimiterSplit") {
    CLAA_ASSIGN_OR_RETURN(std::string delimiter, GetChar(j, "delimiter", ""));
    size_t pos = 0;
    const char32_t d = DecodeCodePoint(delimiter, pos);
    return std::unique_ptr<PreTokenizer>(
        new CharSplitPreTokenizer([d](char32_t c) { return c == d; }, SplitBehavior::kRemoved));
  }
  if (type == "Punctuation" || type == "BertPreTokenizer") {
    SplitBehavior behavior = SplitBehavior::kIsolated;
    if (type == "Punctuation") {
      CLAA_ASSIGN_OR_RETURN(auto name, GetOptionalString(j, "behavior"));
      if (name.has_value()) {
        CLAA_ASSIGN_OR_RETURN(behavior, ParseSplitBehavior(*name));
      }
    }
    CLAA_ASSIGN_OR_RETURN(auto regex, PunctuationRegex());
    auto punct = std::unique_ptr<PreTokenizer>(new RegexSplitPreTokenizer(regex, behavior, false));
    if (type == "Punctuation") return punct;
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    CLAA_ASSIGN_OR_RETURN(auto ws, MakeWhitespaceSplit());
    parts.push_back(std::move(ws));
    parts.push_back(std::move(punct));
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace claa::tokenizer_internal
