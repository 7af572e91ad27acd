#include "engine/sampling/sampling_params.h"

#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace claa {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 100;

void ExpectInvalid(const SamplingParams& p, const std::string& substr) {
  const absl::Status s = ValidateSamplingParams(p, kVocab);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(substr));
}

TEST(SamplingParamsTest, DefaultsAndBoundariesAreValid) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0.0f}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 100.0f}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.top_k = -1}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.top_k = kVocab}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.top_p = 1e-6f}, kVocab).ok());
  EXPECT_TRUE(ValidateSamplingParams({.seed = 0}, kVocab).ok());
}

TEST(SamplingParamsTest, TemperatureMessagesNameField) {
  const absl::Status s = ValidateSamplingParams({.temperature = -1.0f}, kVocab);
  EXPECT_EQ(s.message(), "sampling.temperature must be >= 0 and finite, got -1");
  ExpectInvalid({.temperature = std::numeric_limits<float>::quiet_NaN()}, "sampling.temperature");
  ExpectInvalid({.temperature = std::numeric_limits<float>::infinity()}, "sampling.temperature");
  ExpectInvalid({.temperature = 100.5f}, "sampling.temperature must be <= 100");
}

TEST(SamplingParamsTest, TopPMessagesNameField) {
  ExpectInvalid({.top_p = 0.0f}, "sampling.top_p");
  ExpectInvalid({.top_p = -0.5f}, "sampling.top_p");
  ExpectInvalid({.top_p = 1.01f}, "sampling.top_p");
  ExpectInvalid({.top_p = std::numeric_limits<float>::quiet_NaN()}, "sampling.top_p");
}

TEST(SamplingParamsTest, TopKMessagesNameField) {
  ExpectInvalid({.top_k = -2}, "sampling.top_k");
  ExpectInvalid({.top_k = kVocab + 1}, "sampling.top_k");
}

TEST(SamplingParamsTest, RejectsNonPositiveVocab) {
  EXPECT_EQ(ValidateSamplingParams({}, 0).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace claa
