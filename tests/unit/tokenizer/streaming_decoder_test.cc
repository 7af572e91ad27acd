// StreamingDecoder: pushing ids one by one must reproduce Decode exactly, never emitting broken
// UTF-8 on the way.
#include <gtest/gtest.h>

#include <random>

#include "engine/tokenizer/tokenizer.h"
#include "tests/test_data.h"
#include "tests/unit/tokenizer/tokenizer_test_util.h"

namespace claa {
namespace {

using testing::Escape;
using testing::IdsToString;
using testing::IsValidUtf8;
using testing::LoadGolden;

struct StreamResult {
  std::string text;
  std::vector<std::string> pieces;
  bool all_valid = true;
};

StreamResult Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  StreamingDecoder stream(tok, skip);
  StreamResult r;
  for (int32_t id : ids) {
    auto piece = stream.Push(id);
    EXPECT_TRUE(piece.ok()) << piece.status();
    if (!piece.ok()) continue;
    r.all_valid &= IsValidUtf8(*piece);
    r.pieces.push_back(*piece);
    r.text += *piece;
  }
  r.text += stream.Flush();
  return r;
}

void ExpectStreamMatchesDecode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip,
                               const std::string& what) {
  auto full = tok.Decode(ids, skip);
  ASSERT_TRUE(full.ok()) << what << ": " << full.status();
  const StreamResult r = Stream(tok, ids, skip);
  EXPECT_TRUE(r.all_valid) << what << ": a Push returned invalid UTF-8";
  EXPECT_EQ(r.text, *full) << what << " ids " << IdsToString(ids) << " skip=" << skip
                           << "\n stream " << Escape(r.text) << "\n decode " << Escape(*full);
}

std::unique_ptr<Tokenizer> Load(const std::filesystem::path& p) {
  auto tok = Tokenizer::FromFile(p);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(StreamingDecoderTest, Stories260KGoldenStrings) {
  CLAA_REQUIRE_SHARED(json, "models/stories260K/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "models/stories260K/tokenizer_golden.json");
  auto tok = Load(json);
  ASSERT_NE(tok, nullptr);
  for (const auto& c : LoadGolden(golden)) {
    for (bool skip : {false, true}) {
      ExpectStreamMatchesDecode(*tok, c.ids, skip, "text " + Escape(c.text));
      ExpectStreamMatchesDecode(*tok, c.ids_with_bos, skip, "text+BOS " + Escape(c.text));
    }
  }
}

TEST(StreamingDecoderTest, SmolLM2GoldenStrings) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "tokenizers/smollm2-135m/tokenizer_golden.json");
  auto tok = Load(json);
  ASSERT_NE(tok, nullptr);
  for (const auto& c : LoadGolden(golden)) {
    for (bool skip : {false, true}) {
      ExpectStreamMatchesDecode(*tok, c.ids, skip, "text " + Escape(c.text));
    }
  }
}

// Emoji and CJK in stories260K are spelled with <0xNN> byte-fallback tokens: the streamer must
// hold the bytes until the character is complete.
TEST(StreamingDecoderTest, ByteFallbackMultiByteCharactersAreHeldUntilComplete) {
  CLAA_REQUIRE_SHARED(json, "models/stories260K/tokenizer.json");
  auto tok = Load(json);
  ASSERT_NE(tok, nullptr);
  const std::string text = "a 😀 日本 b";
  auto ids = tok->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  const auto e0 = tok->TokenToId("<0xF0>");
  ASSERT_TRUE(e0.has_value());
  ASSERT_NE(std::find(ids->begin(), ids->end(), *e0), ids->end()) << "emoji should use bytes";
  const StreamResult r = Stream(*tok, *ids, false);
  EXPECT_TRUE(r.all_valid);
  EXPECT_EQ(r.text, text);
  // No piece may contain a replacement character: every character arrived complete.
  for (const auto& p : r.pieces) EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << Escape(p);
  ExpectStreamMatchesDecode(*tok, *ids, true, "emoji/CJK");
}

// In byte-level BPE an emoji's four bytes are often split over two tokens.
TEST(StreamingDecoderTest, ByteLevelMultiByteCharactersAreHeldUntilComplete) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  auto tok = Load(json);
  ASSERT_NE(tok, nullptr);
  const std::string text = "emoji 😀🎉👍🏽 family 👨‍👩‍👧 中文测试 𠀀";
  auto ids = tok->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  const StreamResult r = Stream(*tok, *ids, false);
  EXPECT_TRUE(r.all_valid);
  EXPECT_EQ(r.text, text);
  for (const auto& p : r.pieces) EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << Escape(p);
  // Some token must have ended mid-character (held: empty output) for this test to mean much.
  bool held = false;
  for (const auto& p : r.pieces) held |= p.empty();
  EXPECT_TRUE(held);
}

// A stream cut in the middle of a character: Flush renders what is left like Decode does.
TEST(StreamingDecoderTest, FlushRendersIncompleteCharacterLikeDecode) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(stories, "models/stories260K/tokenizer.json");
  for (const auto& path : {json, stories}) {
    auto tok = Load(path);
    ASSERT_NE(tok, nullptr);
    auto ids = tok->Encode("ok 😀", false);
    ASSERT_TRUE(ids.ok());
    for (size_t cut = 1; cut <= ids->size(); ++cut) {
      std::vector<int32_t> prefix(ids->begin(), ids->begin() + cut);
      ExpectStreamMatchesDecode(*tok, prefix, false, "cut " + std::to_string(cut));
    }
  }
}

// Random id sequences (including invalid byte sequences and special tokens) still stream to
// exactly what Decode returns.
TEST(StreamingDecoderTest, RandomIdSequencesMatchDecode) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(stories, "models/stories260K/tokenizer.json");
  std::mt19937 rng(1234);
  for (const auto& path : {json, stories}) {
    auto tok = Load(path);
    ASSERT_NE(tok, nullptr);
    std::uniform_int_distribution<int32_t> any_id(0, tok->vocab_size() - 1);
    // Byte tokens are frequent in stories260K's low ids; bias towards them too.
    std::uniform_int_distribution<int32_t> low_id(0, 300);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<int32_t> ids;
      const int len = 1 + trial % 40;
      for (int i = 0; i < len; ++i) ids.push_back(trial % 2 ? any_id(rng) : low_id(rng));
      for (bool skip : {false, true}) {
        ExpectStreamMatchesDecode(*tok, ids, skip,
                                  path.string() + " trial " + std::to_string(trial));
      }
    }
  }
}

TEST(StreamingDecoderTest, RejectsOutOfRangeIdAndIsReusableAfterFlush) {
  auto tok = Tokenizer::FromJson(BuiltinTokenizerJson());
  ASSERT_TRUE(tok.ok());
  StreamingDecoder stream(**tok, false);
  EXPECT_EQ(stream.Push(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Push((*tok)->vocab_size()).status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& text : {std::string("first stream"), std::string(" second stream")}) {
    auto ids = (*tok)->Encode(text, false);
    ASSERT_TRUE(ids.ok());
    std::string out;
    for (int32_t id : *ids) out += *stream.Push(id);
    out += stream.Flush();
    EXPECT_EQ(out, text);
  }
}

}  // namespace
}  // namespace claa
