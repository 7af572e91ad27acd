#ifndef CLAA_ENGINE_TOKENIZER_SPLIT_H_
#define CLAA_ENGINE_TOKENIZER_SPLIT_H_

// The unit of work between the added-token splitter, the pre-tokenizers and the model, plus the
// splitting rules of the reference library (NormalizedString::split), which every splitting
// pre-tokenizer shares.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/regex.h"

namespace claa::tokenizer_internal {

struct Piece {
  std::string text;
  // Whether the piece starts at offset 0 of the original input. Metaspace's prepend_scheme
  // "first" only prepends to such a piece.
  bool at_start = false;
  // Id of the added token this piece was matched as, or -1 for ordinary text.
  int32_t added_id = -1;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

// A [begin, end) range of a piece's text and whether it matched the pattern.
struct MatchRange {
  size_t begin;
  size_t end;
  bool is_match;
};

// Covers `text` with alternating ranges from a regex's matches.
std::vector<MatchRange> RegexMatchRanges(const Regex& regex, std::string_view text);
// Covers `text` with ranges where every code point satisfying `pred` is its own match.
std::vector<MatchRange> CharMatchRanges(const std::function<bool(char32_t)>& pred,
                                        std::string_view text);

// Applies `behavior` to the ranges (after optional inversion) and appends the resulting
// non-empty sub-pieces of `piece` to `out`.
void SplitByRanges(const Piece& piece, std::vector<MatchRange> ranges, SplitBehavior behavior,
                   bool invert, std::vector<Piece>& out);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_SPLIT_H_
