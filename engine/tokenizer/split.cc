#include "engine/tokenizer/split.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/utf8.h"

namespace claa::tokenizer_internal {

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior '", AsAbsl(name), "'"));
}

std::vector<MatchRange> RegexMatchRanges(const Regex& regex, std::string_view text) {
  std::vector<MatchRange> ranges;
  if (text.empty()) {
    ranges.push_back({0, 0, false});
    return ranges;
  }
  size_t prev = 0;
  for (const auto& [begin, end] : regex.FindAll(text)) {
    if (prev != begin) ranges.push_back({prev, begin, false});
    ranges.push_back({begin, end, true});
    prev = end;
  }
  if (prev != text.size()) ranges.push_back({prev, text.size(), false});
  return ranges;
}

std::vector<MatchRange> CharMatchRanges(const std::function<bool(char32_t)>& pred,
                                        std::string_view text) {
  std::vector<MatchRange> ranges;
  if (text.empty()) {
    ranges.push_back({0, 0, false});
    return ranges;
  }
  size_t last = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t begin = pos;
    const char32_t cp = DecodeCodePoint(text, pos);
    if (pred(cp)) {
      if (last < begin) ranges.push_back({last, begin, false});
      ranges.push_back({begin, pos, true});
      last = pos;
    }
  }
  if (last < text.size()) ranges.push_back({last, text.size(), false});
  return ranges;
}

void SplitByRanges(const Piece& piece, std::vector<MatchRange> ranges, SplitBehavior behavior,
                   bool invert, std::vector<Piece>& out) {
  if (invert) {
    for (auto& r : ranges) r.is_match = !r.is_match;
  }
  // Each entry: range and whether it is dropped. Mirrors the folds of the reference library.
  struct Part {
    size_t begin, end;
    bool remove;
  };
  std::vector<Part> parts;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& r : ranges) parts.push_back({r.begin, r.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const auto& r : ranges) parts.push_back({r.begin, r.end, r.is_match});
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& r : ranges) {
        if (r.is_match && !previous_match && !parts.empty()) {
          parts.back().end = r.end;
        } else {
          parts.push_back({r.begin, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        if (it->is_match && !previous_match && !parts.empty()) {
          parts.back().begin = it->begin;
        } else {
          parts.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const auto& r : ranges) {
        if (r.is_match == previous_match && !parts.empty()) {
          parts.back().end = r.end;
        } else {
          parts.push_back({r.begin, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
    }
  }
  for (const auto& p : parts) {
    if (p.remove || p.begin == p.end) continue;
    Piece sub;
    sub.text = piece.text.substr(p.begin, p.end - p.begin);
    // Only the part starting at the very beginning keeps the "original offset 0" property.
    sub.at_start = piece.at_start && p.begin == 0;
    out.push_back(std::move(sub));
  }
}

}  // namespace claa::tokenizer_internal
