#ifndef CLAA_ENGINE_EVAL_RULER_TEXT_H_
#define CLAA_ENGINE_EVAL_RULER_TEXT_H_

// Fixed text material of the RULER-style generator: the common-word list and the haystack word
// streams. Internal to engine/eval.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "engine/eval/det_random.h"
#include "engine/eval/ruler.h"

namespace claa::eval::ruler_internal {

// Lowercase common English words (letters only): word salad, and the parts of needle keys.
absl::Span<const std::string_view> CommonWords();

// An endless haystack of words; Prefix(n) is the same for every n it is a prefix of, so the
// length search can try several n without the text shifting under the needles.
class HaystackStream {
 public:
  HaystackStream(HaystackKind kind, uint64_t seed) : kind_(kind), random_(seed) {}
  // The first n words (no spaces inside a word); valid until the next call.
  absl::Span<const std::string_view> Prefix(size_t n);
  // Whether a needle may go before word i of a haystack of n words: noise haystacks take
  // needles only between sentences (as RULER does), word salad anywhere.
  bool IsBoundary(absl::Span<const std::string_view> words, size_t i) const;

 private:
  HaystackKind kind_;
  DetRandom random_;
  std::vector<std::string_view> words_;
};

// Index in [0, n] of the allowed boundary nearest to fraction * n (the lower one on a tie).
size_t SnapToBoundary(const HaystackStream& stream, absl::Span<const std::string_view> words,
                      double fraction);

}  // namespace claa::eval::ruler_internal

#endif  // CLAA_ENGINE_EVAL_RULER_TEXT_H_
