#ifndef CLAA_ENGINE_EVAL_ANSWER_MATCH_H_
#define CLAA_ENGINE_EVAL_ANSWER_MATCH_H_

// Scores one generated answer against a task's expected answers, for the end-to-end accuracy of
// `claa-cli eval` on RULER-style tasks. Each function returns a score in [0, 1]; a dataset's
// accuracy is the mean (RULER reports it x100).
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace claa::eval {

enum class AnswerMetric {
  kExactMatch,       // "exact_match"
  kStringMatchAll,   // "string_match_all": RULER's metric for NIAH, variable tracking, CWE, FWE.
  kStringMatchPart,  // "string_match_part": RULER's metric for QA.
};

// Parses the names above (as written in a task file); INVALID_ARGUMENT otherwise.
absl::StatusOr<AnswerMetric> ParseAnswerMetric(std::string_view name);
std::string_view AnswerMetricName(AnswerMetric metric);

// Trims leading/trailing whitespace (space, \t, \n, \r, \v, \f) and then trailing punctuation
// (. , ; : ! ?), repeatedly, so "  42.\n" and "42" compare equal. Inner text is untouched.
std::string_view NormalizeForExactMatch(std::string_view text);

// RULER's postprocess_pred: strip, replace every control character (0x00-0x1f) by '\n', strip.
std::string PostprocessPrediction(std::string_view prediction);

// 1.0 when the normalized output equals any normalized expected answer (case-sensitive: the
// synthetic answers are numbers, UUIDs and variable names, where case is part of the answer),
// 0.0 otherwise, including when `expected` is empty.
double ExactMatchScore(std::string_view output, absl::Span<const std::string> expected);

// RULER string_match_all: the fraction of expected answers that occur as substrings of the
// postprocessed output, ASCII case-insensitively (RULER uses Python's str.lower()). Extra text
// around the answers is not penalized. An empty `expected` scores 0.0 (RULER would divide by zero).
double StringMatchAllScore(std::string_view output, absl::Span<const std::string> expected);

// RULER string_match_part: 1.0 when any expected answer occurs (same matching as above), else 0.0.
double StringMatchPartScore(std::string_view output, absl::Span<const std::string> expected);

// Dispatches on `metric`.
double ScoreAnswer(AnswerMetric metric, std::string_view output,
                   absl::Span<const std::string> expected);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_ANSWER_MATCH_H_
