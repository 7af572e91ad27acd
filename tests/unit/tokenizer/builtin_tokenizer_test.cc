// The built-in demo tokenizer: deterministic, 512 ids, lossless on any UTF-8 text.
#include <gtest/gtest.h>

#include <random>

#include "engine/tokenizer/tokenizer.h"
#include "tests/unit/tokenizer/tokenizer_test_util.h"

namespace claa {
namespace {

std::unique_ptr<Tokenizer> LoadBuiltin() {
  auto tok = Tokenizer::FromJson(BuiltinTokenizerJson());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(BuiltinTokenizerTest, ShapeAndSpecialTokens) {
  EXPECT_EQ(BuiltinTokenizerJson(), BuiltinTokenizerJson());  // deterministic
  auto tok = LoadBuiltin();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->TokenToId("<|begin_of_text|>"), 510);
  EXPECT_EQ(tok->TokenToId("<|end_of_text|>"), 511);
  EXPECT_EQ(tok->bos_id(), 510);
  EXPECT_TRUE(tok->IsSpecial(510));
  EXPECT_TRUE(tok->IsSpecial(511));
  EXPECT_FALSE(tok->IsSpecial(300));
  EXPECT_EQ(tok->IdToToken('a'), "a");
  EXPECT_EQ(tok->IdToToken(' '), "\xC4\xA0");  // Ġ
  for (int32_t id = 0; id < 512; ++id) EXPECT_TRUE(tok->IdToToken(id).has_value()) << id;
}

TEST(BuiltinTokenizerTest, RoundTripsTextAndPrependsBos) {
  auto tok = LoadBuiltin();
  ASSERT_NE(tok, nullptr);
  const std::string texts[] = {
      "",
      "Once upon a time, there was a little girl named Lily.",
      "  leading and trailing  \n\n\ttabs\r\n",
      "naïve café — 日本語のテキスト, 中文, 한국어, Привет, مرحبا 😀🎉👍🏽 "
      "👨‍👩‍👧",
      std::string("nul\0byte", 8),
      "<|end_of_text|> in the middle <|begin_of_text|>",
  };
  for (const std::string& text : texts) {
    auto ids = tok->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto decoded = tok->Decode(*ids, false);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text) << testing::Escape(text);
    auto with_bos = tok->Encode(text, true);
    ASSERT_TRUE(with_bos.ok());
    ASSERT_EQ(with_bos->size(), ids->size() + 1);
    EXPECT_EQ(with_bos->front(), 510);
    EXPECT_EQ(*tok->Decode(*with_bos, false), "<|begin_of_text|>" + text);
  }
  // The merges actually compress English.
  auto ids = tok->Encode(" the little girl said that she was happy", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_LT(ids->size(), 12u);
}

TEST(BuiltinTokenizerTest, RoundTripsRandomUnicode) {
  auto tok = LoadBuiltin();
  ASSERT_NE(tok, nullptr);
  std::mt19937 rng(7);
  const char32_t ranges[][2] = {{0x20, 0x7E},     {0x0, 0x1F},       {0xA0, 0x24F},
                                {0x370, 0x4FF},   {0x3040, 0x30FF},  {0x4E00, 0x9FFF},
                                {0xAC00, 0xD7A3}, {0x1F300, 0x1FAFF}};
  for (int trial = 0; trial < 100; ++trial) {
    std::string text;
    const int len = 1 + trial;
    for (int i = 0; i < len; ++i) {
      const auto& r = ranges[rng() % 8];
      const char32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      // UTF-8 encode
      if (cp < 0x80) {
        text += static_cast<char>(cp);
      } else if (cp < 0x800) {
        text += static_cast<char>(0xC0 | (cp >> 6));
        text += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        text += static_cast<char>(0xE0 | (cp >> 12));
        text += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        text += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        text += static_cast<char>(0xF0 | (cp >> 18));
        text += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        text += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        text += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
    auto ids = tok->Encode(text, true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*tok->Decode(*ids, true), text) << testing::Escape(text);
    // Streaming reproduces it too, in valid UTF-8 pieces.
    StreamingDecoder stream(*tok, true);
    std::string streamed;
    for (int32_t id : *ids) {
      auto piece = stream.Push(id);
      ASSERT_TRUE(piece.ok());
      EXPECT_TRUE(testing::IsValidUtf8(*piece));
      streamed += *piece;
    }
    streamed += stream.Flush();
    EXPECT_EQ(streamed, text) << testing::Escape(text);
  }
}

}  // namespace
}  // namespace claa
