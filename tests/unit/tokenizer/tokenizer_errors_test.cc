// Error handling: bad files and bad inputs become InvalidArgument (never exceptions/crashes).
#include <gtest/gtest.h>

#include "engine/tokenizer/tokenizer.h"

namespace claa {
namespace {

// A minimal valid byte-less BPE tokenizer with pluggable components.
std::string MinimalJson(const std::string& model_type = "BPE",
                        const std::string& pre_tokenizer = "null",
                        const std::string& normalizer = "null", const std::string& decoder = "null",
                        const std::string& post_processor = "null") {
  return R"({"version":"1.0","added_tokens":[],"normalizer":)" + normalizer +
         R"(,"pre_tokenizer":)" + pre_tokenizer + R"(,"post_processor":)" + post_processor +
         R"(,"decoder":)" + decoder + R"(,"model":{"type":")" + model_type +
         R"(","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}})";
}

void ExpectInvalid(const absl::Status& status, const std::string& must_mention) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(must_mention), std::string::npos)
      << "message should mention '" << must_mention << "': " << status;
}

TEST(TokenizerErrorsTest, MinimalJsonLoads) {
  auto tok = Tokenizer::FromJson(MinimalJson());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(*(*tok)->Encode("abab", false), (std::vector<int32_t>{2, 2}));
}

TEST(TokenizerErrorsTest, MalformedJson) {
  for (const char* text : {"", "{", "{\"model\": }", "[1,2", "not json", "{\"a\":\"\xff\"}"}) {
    auto tok = Tokenizer::FromJson(text);
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  ExpectInvalid(Tokenizer::FromJson("[1, 2]").status(), "object");
  ExpectInvalid(Tokenizer::FromJson("{}").status(), "model");
}

TEST(TokenizerErrorsTest, UnknownComponentTypesAreNamed) {
  ExpectInvalid(Tokenizer::FromJson(MinimalJson("WordPiece")).status(), "WordPiece");
  ExpectInvalid(Tokenizer::FromJson(MinimalJson("Unigram")).status(), "Unigram");
  ExpectInvalid(Tokenizer::FromJson(MinimalJson("BPE", R"({"type":"FancySplitter"})")).status(),
                "FancySplitter");
  ExpectInvalid(Tokenizer::FromJson(
                    MinimalJson("BPE", R"({"type":"Sequence","pretokenizers":[{"type":"Nope"}]})"))
                    .status(),
                "Nope");
  ExpectInvalid(
      Tokenizer::FromJson(MinimalJson("BPE", "null", R"({"type":"Precompiled"})")).status(),
      "Precompiled");
  ExpectInvalid(
      Tokenizer::FromJson(MinimalJson("BPE", "null", "null", R"({"type":"WordPiece"})")).status(),
      "WordPiece");
  ExpectInvalid(Tokenizer::FromJson(
                    MinimalJson("BPE", "null", "null", "null", R"({"type":"MagicProcessing"})"))
                    .status(),
                "MagicProcessing");
}

TEST(TokenizerErrorsTest, StructurallyWrongFields) {
  // Wrong field types must not throw inside nlohmann::json.
  ExpectInvalid(
      Tokenizer::FromJson(R"({"model":{"type":"BPE","vocab":[1,2],"merges":[]}})").status(),
      "vocab");
  ExpectInvalid(
      Tokenizer::FromJson(R"({"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]}})").status(),
      "a");
  ExpectInvalid(
      Tokenizer::FromJson(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a c"]}})").status(),
      "vocab");
  ExpectInvalid(
      Tokenizer::FromJson(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[42]}})").status(),
      "merge");
  ExpectInvalid(Tokenizer::FromJson(MinimalJson("BPE", R"({"type":"Split","pattern":{"Regex":"("},
                                                        "behavior":"Isolated"})"))
                    .status(),
                "regex");
  ExpectInvalid(
      Tokenizer::FromJson(MinimalJson("BPE", R"({"type":"ByteLevel","add_prefix_space":"yes"})"))
          .status(),
      "add_prefix_space");
  ExpectInvalid(Tokenizer::FromJson(MinimalJson("BPE", R"({"type":"Split","pattern":{"Regex":"a"},
                                                        "behavior":"Sideways"})"))
                    .status(),
                "Sideways");
}

TEST(TokenizerErrorsTest, InvalidUtf8Input) {
  auto tok = Tokenizer::FromJson(MinimalJson());
  ASSERT_TRUE(tok.ok());
  for (const std::string& bad :
       {std::string("a\xff"), std::string("\xc3"), std::string("\xed\xa0\x80"),
        std::string("\xc0\xaf"), std::string("ab\xf4\x90\x80\x80")}) {
    EXPECT_EQ((*tok)->Encode(bad, false).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(TokenizerErrorsTest, OutOfRangeIds) {
  auto tok = Tokenizer::FromJson(MinimalJson());
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->vocab_size(), 3);
  EXPECT_EQ((*tok)->Decode(std::vector<int32_t>{0, 3}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tok)->Decode(std::vector<int32_t>{-1}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tok)->IdToToken(3), std::nullopt);
  EXPECT_EQ((*tok)->IdToToken(-5), std::nullopt);
  EXPECT_FALSE((*tok)->IsSpecial(99));
}

TEST(TokenizerErrorsTest, MissingFile) {
  auto tok = Tokenizer::FromFile("/nonexistent/dir/tokenizer.json");
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace claa
