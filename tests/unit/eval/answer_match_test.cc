#include "engine/eval/answer_match.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace claa::eval {
namespace {

using Answers = std::vector<std::string>;

TEST(NormalizeTest, TrimsWhitespaceAndTrailingPunctuation) {
  EXPECT_EQ(NormalizeForExactMatch("  42.\n"), "42");
  EXPECT_EQ(NormalizeForExactMatch("42 .\n"), "42");
  EXPECT_EQ(NormalizeForExactMatch("\tyes!?\r\n"), "yes");
  EXPECT_EQ(NormalizeForExactMatch("3.14"), "3.14");  // Inner punctuation stays.
  EXPECT_EQ(NormalizeForExactMatch(".5"), ".5");      // Leading punctuation stays.
  EXPECT_EQ(NormalizeForExactMatch(" ... "), "");
}

TEST(PostprocessTest, MatchesRulerPostprocessPred) {
  EXPECT_EQ(PostprocessPrediction("  abc \n"), "abc");
  EXPECT_EQ(PostprocessPrediction(std::string("a\x01" "b\x1f", 4)), "a\nb");
  EXPECT_EQ(PostprocessPrediction(std::string("\x00x", 2)), "x");
}

TEST(ExactMatchTest, Cases) {
  EXPECT_EQ(ExactMatchScore("  1234567.\n", Answers{"1234567"}), 1.0);
  EXPECT_EQ(ExactMatchScore("The answer is 1234567", Answers{"1234567"}), 0.0);
  EXPECT_EQ(ExactMatchScore("VAR_B", Answers{"VAR_A", "VAR_B"}), 1.0);  // Any accepted answer.
  EXPECT_EQ(ExactMatchScore("abc", Answers{"ABC"}), 0.0);  // Case-sensitive.
  EXPECT_EQ(ExactMatchScore("42", Answers{"42."}), 1.0);   // Expected side is normalized too.
  EXPECT_EQ(ExactMatchScore("42", Answers{}), 0.0);
  EXPECT_EQ(ExactMatchScore("", Answers{""}), 1.0);
}

TEST(StringMatchAllTest, FractionOfAnswersFound) {
  EXPECT_DOUBLE_EQ(
      StringMatchAllScore("The numbers are 123 and 456.", Answers{"123", "456", "789"}),
      2.0 / 3.0);
  EXPECT_DOUBLE_EQ(StringMatchAllScore("123 456 789", Answers{"789", "123", "456"}), 1.0);
  EXPECT_DOUBLE_EQ(StringMatchAllScore("nothing here", Answers{"123"}), 0.0);
  EXPECT_DOUBLE_EQ(StringMatchAllScore("anything", Answers{}), 0.0);
}

TEST(StringMatchAllTest, CaseInsensitiveSubstring) {
  EXPECT_DOUBLE_EQ(StringMatchAllScore("Key: AbC-dEf", Answers{"abc-DEF"}), 1.0);
  // Control characters become newlines (RULER), so they split an answer.
  EXPECT_DOUBLE_EQ(StringMatchAllScore(std::string("12\x00" "34", 5), Answers{"1234"}), 0.0);
}

TEST(StringMatchPartTest, AnyAnswerIsEnough) {
  EXPECT_EQ(StringMatchPartScore("It was Paris.", Answers{"London", "paris"}), 1.0);
  EXPECT_EQ(StringMatchPartScore("It was Rome.", Answers{"London", "Paris"}), 0.0);
  EXPECT_EQ(StringMatchPartScore("x", Answers{}), 0.0);
}

TEST(AnswerMetricTest, ParseNameAndDispatch) {
  for (AnswerMetric m :
       {AnswerMetric::kExactMatch, AnswerMetric::kStringMatchAll, AnswerMetric::kStringMatchPart}) {
    absl::StatusOr<AnswerMetric> parsed = ParseAnswerMetric(AnswerMetricName(m));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(ParseAnswerMetric("accuracy").status().code(), absl::StatusCode::kInvalidArgument);

  const Answers expected = {"11", "22"};
  EXPECT_EQ(ScoreAnswer(AnswerMetric::kExactMatch, "11 22", expected), 0.0);
  EXPECT_EQ(ScoreAnswer(AnswerMetric::kStringMatchAll, "11 and 33", expected), 0.5);
  EXPECT_EQ(ScoreAnswer(AnswerMetric::kStringMatchPart, "11 and 33", expected), 1.0);
}

}  // namespace
}  // namespace claa::eval
