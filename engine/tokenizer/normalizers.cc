#include "engine/tokenizer/normalizers.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

#ifdef CLAA_TOKENIZER_HAVE_ICU
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

namespace claa::tokenizer_internal {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string& text) const override {
    for (const auto& p : parts_) CLAA_RETURN_IF_ERROR(p->Normalize(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string& text) const override {
    // The reference library leaves empty strings alone.
    if (!text.empty()) text.insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::shared_ptr<const Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string& text) const override {
    std::string out;
    size_t last = 0;
    for (const auto& [begin, end] : pattern_->FindAll(text)) {
      out.append(text, last, begin - last);
      out += content_;
      last = end;
    }
    out.append(text, last, std::string::npos);
    text = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<const Regex> pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string& text) const override {
    size_t begin = 0;
    size_t end = text.size();
    if (left_) {
      while (begin < end) {
        size_t pos = begin;
        if (!IsUnicodeWhitespace(DecodeCodePoint(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!IsUnicodeWhitespace(DecodeCodePoint(text, pos))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

#ifdef CLAA_TOKENIZER_HAVE_ICU

absl::StatusOr<std::u16string> ToUtf16(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strFromUTF8(nullptr, 0, &len, text.data(), static_cast<int32_t>(text.size()), &err);
  std::u16string out(static_cast<size_t>(len), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(out.data(), len, nullptr, text.data(), static_cast<int32_t>(text.size()), &err);
  if (U_FAILURE(err))
    return absl::InternalError(absl::StrCat("ICU UTF-8 conversion: ", u_errorName(err)));
  return out;
}

absl::StatusOr<std::string> ToUtf8(const std::u16string& text) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strToUTF8(nullptr, 0, &len, text.data(), static_cast<int32_t>(text.size()), &err);
  std::string out(static_cast<size_t>(len), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len, nullptr, text.data(), static_cast<int32_t>(text.size()), &err);
  if (U_FAILURE(err))
    return absl::InternalError(absl::StrCat("ICU UTF-16 conversion: ", u_errorName(err)));
  return out;
}

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(const UNormalizer2* normalizer) : normalizer_(normalizer) {}
  absl::Status Normalize(std::string& text) const override {
    bool ascii = true;
    for (unsigned char c : text) ascii &= c < 0x80;
    if (ascii) return absl::OkStatus();  // ASCII is invariant under every normalization form.
    CLAA_ASSIGN_OR_RETURN(std::u16string in, ToUtf16(text));
    UErrorCode err = U_ZERO_ERROR;
    const int32_t len =
        unorm2_normalize(normalizer_, in.data(), static_cast<int32_t>(in.size()), nullptr, 0, &err);
    std::u16string out(static_cast<size_t>(len), u'\0');
    err = U_ZERO_ERROR;
    unorm2_normalize(normalizer_, in.data(), static_cast<int32_t>(in.size()), out.data(), len,
                     &err);
    if (U_FAILURE(err))
      return absl::InternalError(absl::StrCat("ICU normalize: ", u_errorName(err)));
    CLAA_ASSIGN_OR_RETURN(text, ToUtf8(out));
    return absl::OkStatus();
  }

 private:
  const UNormalizer2* normalizer_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
      const char32_t cp = DecodeCodePoint(text, pos);
      if (cp < 0x80) {
        out.push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
        continue;
      }
      // Per code point, like Rust's char::to_lowercase: full mappings, no context rules.
      UChar src[2];
      int32_t src_len = 0;
      UBool unused = false;
      U16_APPEND(src, src_len, 2, static_cast<UChar32>(cp), unused);
      (void)unused;
      UChar dst[8];
      UErrorCode err = U_ZERO_ERROR;
      const int32_t n = u_strToLower(dst, 8, src, src_len, "", &err);
      if (U_FAILURE(err))
        return absl::InternalError(absl::StrCat("ICU lowercase: ", u_errorName(err)));
      for (int32_t i = 0; i < n;) {
        UChar32 c;
        U16_NEXT(dst, i, n, c);
        AppendCodePoint(static_cast<char32_t>(c), out);
      }
    }
    text = std::move(out);
    return absl::OkStatus();
  }
};

class StripAccentsNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text) const override {
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
      const char32_t cp = DecodeCodePoint(text, pos);
      if (u_charType(static_cast<UChar32>(cp)) != U_NON_SPACING_MARK) AppendCodePoint(cp, out);
    }
    text = std::move(out);
    return absl::OkStatus();
  }
};

absl::StatusOr<std::unique_ptr<Normalizer>> MakeUnicodeNormalizer(std::string_view type) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = nullptr;
  if (type == "NFC")
    n = unorm2_getNFCInstance(&err);
  else if (type == "NFD")
    n = unorm2_getNFDInstance(&err);
  else if (type == "NFKC")
    n = unorm2_getNFKCInstance(&err);
  else
    n = unorm2_getNFKDInstance(&err);
  if (U_FAILURE(err) || n == nullptr) {
    return absl::InternalError(
        absl::StrCat("ICU has no ", AsAbsl(type), " normalizer: ", u_errorName(err)));
  }
  return std::make_unique<UnicodeNormalizer>(n);
}

#else  // !CLAA_TOKENIZER_HAVE_ICU

// Without ICU only ASCII can be lowercased correctly, so refuse non-ASCII rather than
// silently producing ids that differ from the reference.
class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text) const override {
    for (char& c : text) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        return absl::UnimplementedError(
            "Lowercase normalizer on non-ASCII text needs ICU (build with libicu-dev)");
      }
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return absl::OkStatus();
  }
};

#endif  // CLAA_TOKENIZER_HAVE_ICU

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& j) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  CLAA_ASSIGN_OR_RETURN(std::string type, GetType(j, "normalizer"));
  if (type == "Sequence") {
    const Json* list = FindField(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence normalizer needs a 'normalizers' array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Json& item : *list) {
      CLAA_ASSIGN_OR_RETURN(auto part, ParseNormalizer(item));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    CLAA_ASSIGN_OR_RETURN(std::string prefix, GetString(j, "prepend"));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    CLAA_ASSIGN_OR_RETURN(auto pattern, GetPattern(j, "pattern"));
    CLAA_ASSIGN_OR_RETURN(std::string content, GetString(j, "content"));
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(std::move(pattern), std::move(content)));
  }
  if (type == "Strip") {
    CLAA_ASSIGN_OR_RETURN(bool left, GetBool(j, "strip_left", true));
    CLAA_ASSIGN_OR_RETURN(bool right, GetBool(j, "strip_right", true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" ||
      type == "StripAccents") {
#ifdef CLAA_TOKENIZER_HAVE_ICU
    if (type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccentsNormalizer());
    return MakeUnicodeNormalizer(type);
#else
    return absl::UnimplementedError(
        absl::StrCat("normalizer '", type,
                     "' needs Unicode tables; this build has no ICU (install libicu-dev)"));
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported normalizer type '", type, "'"));
}

}  // namespace claa::tokenizer_internal
