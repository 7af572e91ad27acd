#include "engine/sampling/stop_conditions.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace claa {
namespace {

using ::testing::HasSubstr;

TEST(CheckTokenStopTest, Precedence) {
  StopConditions c{.max_tokens = 5, .stop_token_ids = {7, 2}, .eos_token_ids = {2, 3}};
  EXPECT_EQ(CheckTokenStop(c, 1, 1), FinishReason::kNone);
  EXPECT_EQ(CheckTokenStop(c, 1, 5), FinishReason::kLength);
  EXPECT_EQ(CheckTokenStop(c, 1, 6), FinishReason::kLength);
  EXPECT_EQ(CheckTokenStop(c, 7, 1), FinishReason::kStop);
  EXPECT_EQ(CheckTokenStop(c, 7, 5), FinishReason::kStop);  // Stop beats length.
  EXPECT_EQ(CheckTokenStop(c, 3, 5), FinishReason::kEos);   // EOS beats length.
  EXPECT_EQ(CheckTokenStop(c, 2, 1), FinishReason::kEos);   // EOS beats stop id.
}

TEST(CheckTokenStopTest, IgnoreEos) {
  StopConditions c{
      .max_tokens = 5, .stop_token_ids = {2}, .eos_token_ids = {2, 3}, .ignore_eos = true};
  EXPECT_EQ(CheckTokenStop(c, 3, 1), FinishReason::kNone);
  EXPECT_EQ(CheckTokenStop(c, 3, 5), FinishReason::kLength);
  // An explicit stop id still stops even when it is also an (ignored) EOS id.
  EXPECT_EQ(CheckTokenStop(c, 2, 1), FinishReason::kStop);
}

TEST(ValidateStopConditionsTest, AcceptsSaneRequest) {
  StopConditions c{.max_tokens = 1, .stop_token_ids = {0, 99}};
  std::vector<std::string> stops = {"\n\n", std::string(kMaxStopStringBytes, 'x')};
  EXPECT_TRUE(ValidateStopConditions(c, stops, 100).ok());
  EXPECT_TRUE(ValidateStopConditions(c, {}, 100).ok());
}

void ExpectInvalid(const StopConditions& c, const std::vector<std::string>& stops,
                   const std::string& substr) {
  const absl::Status s = ValidateStopConditions(c, stops, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(substr));
}

TEST(ValidateStopConditionsTest, MessagesNameField) {
  ExpectInvalid({.max_tokens = 0}, {}, "sampling.max_tokens");
  ExpectInvalid({.max_tokens = -3}, {}, "sampling.max_tokens");
  ExpectInvalid({}, {"ok", ""}, "sampling.stop[1]");
  ExpectInvalid({}, {std::string(kMaxStopStringBytes + 1, 'x')}, "sampling.stop[0]");
  ExpectInvalid({}, std::vector<std::string>(kMaxStopStrings + 1, "x"), "sampling.stop");
  ExpectInvalid({.stop_token_ids = {100}}, {}, "sampling.stop_token_ids");
  ExpectInvalid({.stop_token_ids = {-1}}, {}, "sampling.stop_token_ids");
  ExpectInvalid({.stop_token_ids = std::vector<int32_t>(kMaxStopTokenIds + 1, 1)}, {},
                "sampling.stop_token_ids");
}

}  // namespace
}  // namespace claa
