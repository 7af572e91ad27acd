// The bearer-token decision (server/security/bearer_auth.h) without a server: token files,
// constant-time comparison, and every way a call's metadata can be wrong.
#include "server/security/bearer_auth.h"

#include "gtest/gtest.h"
#include "tests/unit/security/temp_dir.h"

namespace claa::security {
namespace {

using ::claa::testing::TempDir;

TEST(ReadTokenFile, TrimsSurroundingWhitespace) {
  TempDir dir;
  auto token = ReadTokenFile(dir.Write("token", "  s3cr3t-T0ken\n\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cr3t-T0ken");
}

TEST(ReadTokenFile, RefusesMissingEmptyAndMultiWordFiles) {
  TempDir dir;
  auto missing = ReadTokenFile((dir.path() / "nope").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("nope: cannot be read"), std::string::npos);
  auto empty = ReadTokenFile(dir.Write("empty", " \n"));
  EXPECT_NE(empty.status().message().find("is empty"), std::string::npos) << empty.status();
  auto spaced = ReadTokenFile(dir.Write("spaced", "two words\n"));
  EXPECT_NE(spaced.status().message().find("one word"), std::string::npos) << spaced.status();
}

TEST(ConstantTimeEquals, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));     // a prefix of the token
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));   // the token plus more
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("abc\0", 4), "abc"));
}

constexpr absl::string_view kGenerate = "/claa.v1.Generation/Generate";

TEST(CheckBearerToken, AcceptsTheRightTokenWithAnyCaseOfTheScheme) {
  EXPECT_TRUE(CheckBearerToken(kGenerate, {"Bearer tok"}, "tok").ok());
  EXPECT_TRUE(CheckBearerToken(kGenerate, {"bearer tok"}, "tok").ok());
  EXPECT_TRUE(CheckBearerToken(kGenerate, {"BEARER   tok"}, "tok").ok());
}

TEST(CheckBearerToken, RefusesMissingWrongOrMalformedCredentials) {
  auto missing = CheckBearerToken(kGenerate, {}, "tok");
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(missing.message().find("authorization: Bearer <token>"), std::string::npos);
  auto wrong = CheckBearerToken(kGenerate, {"Bearer tok2"}, "tok");
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong.message(), "invalid bearer token");  // never echoes the expected token
  for (absl::string_view bad : {"tok", "Basic dG9rOg==", "Bearer", "Bearer ", "Bearertok"}) {
    EXPECT_EQ(CheckBearerToken(kGenerate, {bad}, "tok").code(),
              absl::StatusCode::kUnauthenticated)
        << bad;
  }
  EXPECT_EQ(CheckBearerToken(kGenerate, {"Bearer tok", "Bearer tok"}, "tok").code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(CheckBearerToken, HealthChecksNeedNoTokenButEverythingElseDoes) {
  EXPECT_TRUE(CheckBearerToken("/grpc.health.v1.Health/Check", {}, "tok").ok());
  EXPECT_TRUE(CheckBearerToken("/grpc.health.v1.Health/Watch", {}, "tok").ok());
  for (absl::string_view path :
       {"/claa.v1.Prefill/Score", "/claa.v1.Generation/GetModelInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.health.v1.HealthX/Check", "/grpc.health.v1.Health"}) {
    EXPECT_FALSE(CheckBearerToken(path, {}, "tok").ok()) << path;
  }
  // No :path at all: fail closed.
  EXPECT_FALSE(CheckBearerToken(std::nullopt, {}, "tok").ok());
}

TEST(BearerTokenProcessor, ConsumesTheAuthorizationEntry) {
  BearerTokenProcessor processor("tok");
  grpc::AuthMetadataProcessor::InputMetadata md;
  md.emplace(":path", "/claa.v1.Generation/Generate");
  md.emplace("authorization", "Bearer tok");
  grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
  grpc::Status ok = processor.Process(md, nullptr, &consumed, &response);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  ASSERT_EQ(consumed.size(), 1u);
  EXPECT_EQ(consumed.begin()->first, "authorization");

  md.erase("authorization");
  md.emplace("authorization", "Bearer nope");
  consumed.clear();
  grpc::Status denied = processor.Process(md, nullptr, &consumed, &response);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(consumed.empty());
}

}  // namespace
}  // namespace claa::security
