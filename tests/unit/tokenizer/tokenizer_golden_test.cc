// Golden encodings from the reference `tokenizers` library: every string must encode to exactly
// the same ids and decode to exactly the same text.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "engine/tokenizer/tokenizer.h"
#include "tests/test_data.h"
#include "tests/unit/tokenizer/tokenizer_test_util.h"

namespace claa {
namespace {

using testing::Escape;
using testing::IdsToString;
using testing::LoadGolden;

TEST(TokenizerGoldenTest, Stories260KSentencePieceByteFallback) {
  CLAA_REQUIRE_SHARED(json, "models/stories260K/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "models/stories260K/tokenizer_golden.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto cases = LoadGolden(golden);
  ASSERT_FALSE(cases.empty());
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->vocab_size(), 512);
  for (const auto& c : cases) {
    const std::string what = "text " + Escape(c.text);
    auto ids = (*tok)->Encode(c.text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << what << ": " << ids.status();
    EXPECT_EQ(*ids, c.ids) << what << "\n got  " << IdsToString(*ids) << "\n want "
                           << IdsToString(c.ids);
    ASSERT_TRUE(c.has_ids_with_bos);
    auto with_bos = (*tok)->Encode(c.text, /*add_special_tokens=*/true);
    ASSERT_TRUE(with_bos.ok()) << what << ": " << with_bos.status();
    EXPECT_EQ(*with_bos, c.ids_with_bos) << what;
    auto decoded = (*tok)->Decode(c.ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << what << ": " << decoded.status();
    EXPECT_EQ(*decoded, c.decoded) << what << " decoded to " << Escape(*decoded);
    auto decoded_skip = (*tok)->Decode(c.ids_with_bos, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded_skip.ok()) << what;
    EXPECT_EQ(*decoded_skip, c.decoded) << what << " (with BOS, skipping specials)";
  }
}

TEST(TokenizerGoldenTest, SmolLM2ByteLevel) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "tokenizers/smollm2-135m/tokenizer_golden.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto cases = LoadGolden(golden);
  ASSERT_FALSE(cases.empty());
  EXPECT_EQ((*tok)->vocab_size(), 49152);
  EXPECT_EQ((*tok)->bos_id(), std::nullopt);  // post_processor is null
  for (const auto& c : cases) {
    const std::string what = "text " + Escape(c.text);
    // No post-processor: special tokens add nothing, so both modes must give the golden ids.
    for (bool add_special : {false, true}) {
      auto ids = (*tok)->Encode(c.text, add_special);
      ASSERT_TRUE(ids.ok()) << what << ": " << ids.status();
      EXPECT_EQ(*ids, c.ids) << what << " add_special_tokens=" << add_special << "\n got  "
                             << IdsToString(*ids) << "\n want " << IdsToString(c.ids);
    }
    ASSERT_EQ(c.tokens.size(), c.ids.size()) << what;
    for (size_t i = 0; i < c.ids.size(); ++i) {
      EXPECT_EQ((*tok)->IdToToken(c.ids[i]), c.tokens[i]) << what << " token " << i;
      EXPECT_EQ((*tok)->TokenToId(c.tokens[i]), c.ids[i]) << what << " token " << i;
    }
    auto decoded = (*tok)->Decode(c.ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << what << ": " << decoded.status();
    EXPECT_EQ(*decoded, c.decoded) << what << " decoded to " << Escape(*decoded);
  }
}

TEST(TokenizerGoldenTest, SmolLM2SkipSpecialTokensDropsChatMarkers) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("<|im_start|>user\nHi<|im_end|>", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 1);
  EXPECT_EQ(ids->back(), 2);
  EXPECT_TRUE((*tok)->IsSpecial(1));
  EXPECT_FALSE((*tok)->IsSpecial(ids->at(1)));
  auto text = (*tok)->Decode(*ids, /*skip_special_tokens=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "user\nHi");
}

// The 49k-vocab tokenizer must be fast: ~1 MB of mixed text well under a few seconds even on a
// loaded machine (typically a few hundred ms in Release).
TEST(TokenizerGoldenTest, SmolLM2EncodesLargeTextQuickly) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "tokenizers/smollm2-135m/tokenizer_golden.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::string big;
  size_t round = 0;
  const auto cases = LoadGolden(golden);
  while (big.size() < (1 << 20)) {
    for (const auto& c : cases) big += c.text + " " + std::to_string(round++) + "\n";
  }
  const auto start = std::chrono::steady_clock::now();
  auto ids = (*tok)->Encode(big, false);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(ids.ok());
  RecordProperty("encode_seconds_per_mb", std::to_string(seconds));
  std::cout << "encoded " << big.size() << " bytes into " << ids->size() << " ids in " << seconds
            << " s\n";
  EXPECT_LT(seconds, 10.0);
  auto text = (*tok)->Decode(*ids, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, big);
}

// Encode is const and shares a word cache: concurrent use must give the golden ids.
TEST(TokenizerGoldenTest, SmolLM2ConcurrentEncode) {
  CLAA_REQUIRE_SHARED(json, "tokenizers/smollm2-135m/tokenizer.json");
  CLAA_REQUIRE_SHARED(golden, "tokenizers/smollm2-135m/tokenizer_golden.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto cases = LoadGolden(golden);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const auto& c : cases) {
          auto ids = (*tok)->Encode(c.text, false);
          if (!ids.ok() || *ids != c.ids) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace claa
