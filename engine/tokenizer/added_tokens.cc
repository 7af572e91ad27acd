#include "engine/tokenizer/added_tokens.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace claa::tokenizer_internal {
namespace {

// Start of the last code point of text[0, end).
size_t PrevCharStart(std::string_view text, size_t end) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
  return p;
}

// Rust's char::is_alphanumeric() || '_' decides single_word boundaries; PCRE2's Unicode
// letter/number classes are the same sets for practical purposes.
bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  // Leaked on purpose: a function-local static with a trivial destructor.
  static const Regex* word = []() -> const Regex* {
    auto compiled = Regex::Compile(R"([\p{L}\p{N}])", false);
    if (!compiled.ok()) return nullptr;
    return (new std::shared_ptr<const Regex>(*std::move(compiled)))->get();
  }();
  if (word == nullptr) return true;
  std::string s;
  AppendCodePoint(c, s);
  return !word->FindAll(s).empty();
}

char32_t LastChar(std::string_view text) {
  size_t p = PrevCharStart(text, text.size());
  return DecodeCodePoint(text, p);
}

}  // namespace

void AddedTokens::Trie::Insert(std::string_view pattern, int32_t token) {
  int32_t node = 0;
  for (unsigned char b : pattern) {
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children) {
      if (byte == b) child = index;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes[node].children.emplace_back(b, child);
      nodes.emplace_back();
    }
    node = child;
  }
  // On duplicate content the first token wins, like a map keyed by content.
  if (nodes[node].token < 0) nodes[node].token = token;
}

std::pair<size_t, int32_t> AddedTokens::Trie::LongestAt(std::string_view text, size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const unsigned char b = text[i];
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children) {
      if (byte == b) {
        child = index;
        break;
      }
    }
    if (child < 0) break;
    node = child;
    if (nodes[node].token >= 0) best = {i + 1 - pos, nodes[node].token};
  }
  return best;
}

absl::StatusOr<AddedTokens> AddedTokens::FromJson(const Json& list, const Normalizer* normalizer) {
  AddedTokens result;
  if (list.is_null()) return result;
  if (!list.is_array()) return absl::InvalidArgumentError("'added_tokens' is not an array");
  for (const Json& item : list) {
    if (!item.is_object()) return absl::InvalidArgumentError("an added token is not an object");
    AddedToken t;
    CLAA_ASSIGN_OR_RETURN(t.content, GetString(item, "content"));
    CLAA_ASSIGN_OR_RETURN(int64_t id, GetInt(item, "id", -1));
    if (id < 0 || id > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token '", t.content, "' has no valid id"));
    }
    t.id = static_cast<int32_t>(id);
    CLAA_ASSIGN_OR_RETURN(t.special, GetBool(item, "special", false));
    CLAA_ASSIGN_OR_RETURN(t.single_word, GetBool(item, "single_word", false));
    CLAA_ASSIGN_OR_RETURN(t.lstrip, GetBool(item, "lstrip", false));
    CLAA_ASSIGN_OR_RETURN(t.rstrip, GetBool(item, "rstrip", false));
    CLAA_ASSIGN_OR_RETURN(t.normalized, GetBool(item, "normalized", !t.special));
    if (t.content.empty()) continue;  // Cannot be matched; the reference ignores these too.
    const size_t index = result.tokens_.size();
    result.by_id_.try_emplace(t.id, index);
    result.by_content_.try_emplace(t.content, index);
    if (t.normalized) {
      std::string pattern = t.content;
      if (normalizer != nullptr) CLAA_RETURN_IF_ERROR(normalizer->Normalize(pattern));
      if (!pattern.empty()) result.normalized_.Insert(pattern, static_cast<int32_t>(index));
    } else {
      result.raw_.Insert(t.content, static_cast<int32_t>(index));
    }
    result.tokens_.push_back(std::move(t));
  }
  return result;
}

const AddedToken* AddedTokens::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::FindByContent(std::string_view content) const {
  auto it = by_content_.find(AsAbsl(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedTokens::Split(const Trie& trie, std::vector<Piece>& pieces) const {
  if (trie.empty()) return;
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& piece : pieces) {
    if (piece.added_id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    const std::string_view text = piece.text;
    auto emit_text = [&](size_t begin, size_t end) {
      if (begin >= end) return;
      Piece p;
      p.text = std::string(text.substr(begin, end - begin));
      p.at_start = piece.at_start && begin == 0;
      out.push_back(std::move(p));
    };
    size_t start_offset = 0;  // end of the last emitted token
    size_t pos = 0;           // where the next match search starts
    while (pos < text.size()) {
      auto [len, index] = trie.LongestAt(text, pos);
      if (len == 0) {
        pos += CharLength(text, pos);
        continue;
      }
      const AddedToken& token = tokens_[index];
      size_t begin = pos;
      size_t end = pos + len;
      pos = end;  // Non-overlapping iteration continues after the match, kept or not.
      if (token.single_word) {
        const bool space_before = begin == 0 || !IsWordChar(LastChar(text.substr(0, begin)));
        size_t after = end;
        const bool space_after = end == text.size() || !IsWordChar(DecodeCodePoint(text, after));
        if (!space_before || !space_after) continue;
      }
      if (token.lstrip) {
        size_t b = begin;
        while (b > start_offset) {
          const size_t prev = PrevCharStart(text, b);
          size_t p = prev;
          if (!IsUnicodeWhitespace(DecodeCodePoint(text, p))) break;
          b = prev;
        }
        begin = b;
      }
      if (token.rstrip) {
        while (end < text.size()) {
          size_t p = end;
          if (!IsUnicodeWhitespace(DecodeCodePoint(text, p))) break;
          end = p;
        }
        pos = end;
      }
      emit_text(start_offset, begin);
      Piece t;
      t.text = std::string(text.substr(begin, end - begin));
      t.added_id = token.id;
      out.push_back(std::move(t));
      start_offset = end;
    }
    emit_text(start_offset, text.size());
  }
  pieces = std::move(out);
}

}  // namespace claa::tokenizer_internal
