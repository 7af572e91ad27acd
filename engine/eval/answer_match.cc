#include "engine/eval/answer_match.h"

#include <algorithm>

#include "absl/status/status.h"

namespace claa::eval {
namespace {

bool IsTrailingPunct(char c) {
  return c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?';
}

// This Abseil build's absl::string_view is not std::string_view, so the few string helpers we
// need are written here against std::string_view instead of converting at every call.
bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view StripAsciiWhitespace(std::string_view s) {
  while (!s.empty() && IsAsciiSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsAsciiSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool Matches(std::string_view haystack_lower, const std::string& answer) {
  return haystack_lower.find(AsciiLower(answer)) != std::string_view::npos;
}

}  // namespace

absl::StatusOr<AnswerMetric> ParseAnswerMetric(std::string_view name) {
  if (name == "exact_match") return AnswerMetric::kExactMatch;
  if (name == "string_match_all") return AnswerMetric::kStringMatchAll;
  if (name == "string_match_part") return AnswerMetric::kStringMatchPart;
  return absl::InvalidArgumentError("unknown answer metric '" + std::string(name) +
                                    "' (expected exact_match, string_match_all or "
                                    "string_match_part)");
}

std::string_view AnswerMetricName(AnswerMetric metric) {
  switch (metric) {
    case AnswerMetric::kExactMatch:
      return "exact_match";
    case AnswerMetric::kStringMatchAll:
      return "string_match_all";
    case AnswerMetric::kStringMatchPart:
      return "string_match_part";
  }
  return "unknown";
}

std::string_view NormalizeForExactMatch(std::string_view text) {
  // Alternate the two trims until stable: "42 .\n" needs whitespace, punctuation, whitespace.
  while (true) {
    const size_t before = text.size();
    text = StripAsciiWhitespace(text);
    while (!text.empty() && IsTrailingPunct(text.back())) text.remove_suffix(1);
    if (text.size() == before) return text;
  }
}

std::string PostprocessPrediction(std::string_view prediction) {
  std::string out(StripAsciiWhitespace(prediction));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = '\n';
  }
  return std::string(StripAsciiWhitespace(out));
}

double ExactMatchScore(std::string_view output, absl::Span<const std::string> expected) {
  const std::string_view got = NormalizeForExactMatch(output);
  for (const std::string& answer : expected) {
    if (got == NormalizeForExactMatch(answer)) return 1.0;
  }
  return 0.0;
}

double StringMatchAllScore(std::string_view output, absl::Span<const std::string> expected) {
  if (expected.empty()) return 0.0;
  const std::string pred = AsciiLower(PostprocessPrediction(output));
  const auto found = std::count_if(expected.begin(), expected.end(),
                                   [&](const std::string& a) { return Matches(pred, a); });
  return static_cast<double>(found) / static_cast<double>(expected.size());
}

double StringMatchPartScore(std::string_view output, absl::Span<const std::string> expected) {
  const std::string pred = AsciiLower(PostprocessPrediction(output));
  const bool any = std::any_of(expected.begin(), expected.end(),
                               [&](const std::string& a) { return Matches(pred, a); });
  return any ? 1.0 : 0.0;
}

double ScoreAnswer(AnswerMetric metric, std::string_view output,
                   absl::Span<const std::string> expected) {
  switch (metric) {
    case AnswerMetric::kExactMatch:
      return ExactMatchScore(output, expected);
    case AnswerMetric::kStringMatchAll:
      return StringMatchAllScore(output, expected);
    case AnswerMetric::kStringMatchPart:
      return StringMatchPartScore(output, expected);
  }
  return 0.0;
}

}  // namespace claa::eval
