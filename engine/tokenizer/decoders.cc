#include "engine/tokenizer/decoders.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace claa::tokenizer_internal {
namespace {

// Maps alphabet characters back to bytes over the whole list, then repairs UTF-8 lossily. A
// token containing any character outside the alphabet (e.g. an added token with a space)
// contributes its raw bytes instead.
class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      const size_t mark = bytes.size();
      bool ok = true;
      size_t pos = 0;
      while (pos < t.size()) {
        auto b = UnicodeToByte(DecodeCodePoint(t, pos));
        if (!b) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(*b));
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, Utf8Lossy(bytes));
  }
};

// Turns the replacement character back into spaces; the first token's are dropped since the
// pre-tokenizer prepended them.
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      size_t pos = 0;
      while (pos < t.size()) {
        const size_t len = CharLength(t, pos);
        if (t.compare(pos, len, replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out.push_back(' ');
        } else {
          out.append(t, pos, len);
        }
        pos += len;
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::shared_ptr<const Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::string out;
      size_t last = 0;
      for (const auto& [begin, end] : pattern_->FindAll(t)) {
        out.append(t, last, begin - last);
        out += content_;
        last = end;
      }
      out.append(t, last, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::shared_ptr<const Regex> pattern_;
  std::string content_;
};

// Byte value of a "<0xNN>" token, or -1.
int ByteFallbackValue(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    int digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if (c >= 'a' && c <= 'f')
      digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      digit = c - 'A' + 10;
    else
      return -1;
    value = value * 16 + digit;
  }
  return value;
}

// Consecutive byte tokens become one string if they form valid UTF-8; otherwise every byte
// becomes U+FFFD (the reference's rule, which differs from lossy decoding).
class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (IsValidUtf8(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
    };
    for (std::string& t : tokens) {
      const int b = ByteFallbackValue(t);
      if (b >= 0) {
        run.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  bool HasByteFallback() const override { return true; }
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    tokens.assign(1, absl::StrJoin(tokens, ""));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      size_t begin = 0;
      for (size_t i = 0;
           i < start_ && begin < t.size() && t.compare(begin, content_.size(), content_) == 0;
           ++i) {
        begin += content_.size();
      }
      size_t end = t.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

// Classic BPE with an end-of-word suffix: the suffix becomes a space (none after the last).
class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{suffix_, i + 1 == tokens.size() ? "" : " "}});
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->DecodeChain(tokens);
  }
  bool HasByteFallback() const override {
    return std::any_of(parts_.begin(), parts_.end(),
                       [](const auto& p) { return p->HasByteFallback(); });
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& j) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  CLAA_ASSIGN_OR_RETURN(std::string type, GetType(j, "decoder"));
  if (type == "Sequence") {
    const Json* list = FindField(j, "decoders");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence decoder needs a 'decoders' array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const Json& item : *list) {
      CLAA_ASSIGN_OR_RETURN(auto part, ParseDecoder(item));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(parts)));
  }
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Metaspace") {
    CLAA_ASSIGN_OR_RETURN(std::string replacement, GetChar(j, "replacement", "\xE2\x96\x81"));
    CLAA_ASSIGN_OR_RETURN(auto scheme, GetOptionalString(j, "prepend_scheme"));
    bool strip_first = true;
    if (scheme.has_value()) {
      strip_first = *scheme != "never";
    } else {
      CLAA_ASSIGN_OR_RETURN(strip_first, GetBool(j, "add_prefix_space", true));
    }
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(replacement, strip_first));
  }
  if (type == "Replace") {
    CLAA_ASSIGN_OR_RETURN(auto pattern, GetPattern(j, "pattern"));
    CLAA_ASSIGN_OR_RETURN(std::string content, GetString(j, "content"));
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(pattern), std::move(content)));
  }
  if (type == "Strip") {
    CLAA_ASSIGN_OR_RETURN(std::string content, GetChar(j, "content", " "));
    CLAA_ASSIGN_OR_RETURN(int64_t start, GetInt(j, "start", 0));
    CLAA_ASSIGN_OR_RETURN(int64_t stop, GetInt(j, "stop", 0));
    if (start < 0 || stop < 0)
      return absl::InvalidArgumentError("Strip decoder counts must be >= 0");
    return std::unique_ptr<Decoder>(new StripDecoder(content, start, stop));
  }
  if (type == "BPEDecoder") {
    CLAA_ASSIGN_OR_RETURN(auto suffix, GetOptionalString(j, "suffix"));
    return std::unique_ptr<Decoder>(new BpeSuffixDecoder(suffix.value_or("</w>")));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported decoder type '", type, "'"));
}

}  // namespace claa::tokenizer_internal
