// Behaviour of individual tokenizer.json components, on small hand-written tokenizers whose
// expected outputs follow the reference library's rules.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"

namespace claa {
namespace {

using Json = nlohmann::json;

struct Spec {
  std::vector<std::string> vocab;  // id = position
  Json merges = Json::array();
  Json normalizer = nullptr;
  Json pre_tokenizer = nullptr;
  Json post_processor = nullptr;
  Json decoder = nullptr;
  Json added_tokens = Json::array();
  Json model_extra = Json::object();
};

std::unique_ptr<Tokenizer> Build(const Spec& spec) {
  Json vocab = Json::object();
  for (size_t i = 0; i < spec.vocab.size(); ++i) vocab[spec.vocab[i]] = i;
  Json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", spec.merges}};
  for (auto it = spec.model_extra.begin(); it != spec.model_extra.end(); ++it)
    model[it.key()] = it.value();
  Json j = {{"version", "1.0"},
            {"added_tokens", spec.added_tokens},
            {"normalizer", spec.normalizer},
            {"pre_tokenizer", spec.pre_tokenizer},
            {"post_processor", spec.post_processor},
            {"decoder", spec.decoder},
            {"model", model}};
  auto tok = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

// Encodes and maps the ids back to token strings for readable expectations.
std::vector<std::string> Tokens(const Tokenizer& tok, std::string_view text,
                                bool add_special = false) {
  auto ids = tok.Encode(text, add_special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  std::vector<std::string> out;
  if (!ids.ok()) return out;
  for (int32_t id : *ids) out.push_back(tok.IdToToken(id).value_or("?"));
  return out;
}

using Strings = std::vector<std::string>;

Json Added(int id, const std::string& content, bool special, Json extra = Json::object()) {
  Json t = {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", special}};
  for (auto it = extra.begin(); it != extra.end(); ++it) t[it.key()] = it.value();
  return t;
}

TEST(BpeModelTest, MergesAsStringsOrPairsAreEquivalent) {
  Spec spec;
  spec.vocab = {"a", "b", "c", "ab", "abc"};
  spec.merges = {"a b", "ab c"};
  auto t1 = Build(spec);
  spec.merges = Json::array({Json::array({"a", "b"}), Json::array({"ab", "c"})});
  auto t2 = Build(spec);
  ASSERT_TRUE(t1 && t2);
  EXPECT_EQ(Tokens(*t1, "abcab"), (Strings{"abc", "ab"}));
  EXPECT_EQ(Tokens(*t2, "abcab"), (Strings{"abc", "ab"}));
}

TEST(BpeModelTest, LowerRankMergesApplyFirst) {
  Spec spec;
  spec.vocab = {"a", "b", "c", "ab", "bc"};
  spec.merges = {"b c", "a b"};
  auto t1 = Build(spec);
  spec.merges = {"a b", "b c"};
  auto t2 = Build(spec);
  ASSERT_TRUE(t1 && t2);
  EXPECT_EQ(Tokens(*t1, "abc"), (Strings{"a", "bc"}));
  EXPECT_EQ(Tokens(*t2, "abc"), (Strings{"ab", "c"}));
  // Repeated pairs: leftmost first at equal rank.
  EXPECT_EQ(Tokens(*t2, "bbb"), (Strings{"b", "b", "b"}));
  EXPECT_EQ(Tokens(*t2, "ababab"), (Strings{"ab", "ab", "ab"}));
}

TEST(BpeModelTest, IgnoreMergesUsesWholeWordWhenInVocab) {
  Spec spec;
  spec.vocab = {"a", "b", "c", "ab", "abc"};
  spec.merges = {"a b"};  // "abc" is not reachable by merges
  auto merged = Build(spec);
  spec.model_extra = {{"ignore_merges", true}};
  auto ignoring = Build(spec);
  ASSERT_TRUE(merged && ignoring);
  EXPECT_EQ(Tokens(*merged, "abc"), (Strings{"ab", "c"}));
  EXPECT_EQ(Tokens(*ignoring, "abc"), (Strings{"abc"}));
}

TEST(BpeModelTest, UnknownTokenFusingAndByteFallback) {
  Spec spec;
  spec.vocab = {"<unk>", "a"};
  spec.model_extra = {{"unk_token", "<unk>"}, {"fuse_unk", true}};
  auto fused = Build(spec);
  spec.model_extra["fuse_unk"] = false;
  auto unfused = Build(spec);
  ASSERT_TRUE(fused && unfused);
  EXPECT_EQ(Tokens(*fused, "axya"), (Strings{"a", "<unk>", "a"}));
  EXPECT_EQ(Tokens(*unfused, "axya"), (Strings{"a", "<unk>", "<unk>", "a"}));

  // Byte fallback spells unknown characters with <0xNN> tokens when all their bytes exist.
  Spec bytes;
  bytes.vocab = {"<unk>", "a", "<0xC3>", "<0xA9>"};
  bytes.model_extra = {{"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true}};
  bytes.decoder = {{"type", "Sequence"},
                   {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  auto tok = Build(bytes);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "aéa"), (Strings{"a", "<0xC3>", "<0xA9>", "a"}));
  EXPECT_EQ(Tokens(*tok, "a€"), (Strings{"a", "<unk>"}));  // E2 82 AC missing
  // Decoding an invalid byte run gives one U+FFFD per byte, like the reference.
  EXPECT_EQ(*tok->Decode(std::vector<int32_t>{2, 1, 2, 3}, false),
            "\xEF\xBF\xBD"
            "a\xC3\xA9");
  EXPECT_EQ(*tok->Decode(std::vector<int32_t>{3, 2, 1}, false),
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "a");
}

TEST(BpeModelTest, ContinuingSubwordPrefixAndEndOfWordSuffix) {
  Spec spec;
  spec.vocab = {"a", "##b", "ab"};
  spec.merges = {"a ##b"};
  spec.model_extra = {{"continuing_subword_prefix", "##"}};
  auto prefixed = Build(spec);
  ASSERT_TRUE(prefixed);
  EXPECT_EQ(Tokens(*prefixed, "ab"), (Strings{"ab"}));

  Spec suffix;
  suffix.vocab = {"a", "b</w>", "ab</w>", "b"};
  suffix.merges = {"a b</w>"};
  suffix.model_extra = {{"end_of_word_suffix", "</w>"}};
  suffix.pre_tokenizer = {{"type", "WhitespaceSplit"}};
  suffix.decoder = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
  auto tok = Build(suffix);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "ab b"), (Strings{"ab</w>", "b</w>"}));
  EXPECT_EQ(*tok->Decode(*tok->Encode("ab b", false), false), "ab b");
}

// Split behaviours on "a-b--c" with pattern "-", observed through ignore_merges words.
TEST(PreTokenizerTest, SplitBehaviors) {
  Spec spec;
  spec.vocab = {"a", "b", "c", "-", "--", "a-", "b-", "-b", "-c"};
  spec.model_extra = {{"ignore_merges", true}};
  struct Case {
    std::string behavior;
    bool invert;
    Strings want;
  };
  const Case cases[] = {
      {"Isolated", false, {"a", "-", "b", "-", "-", "c"}},
      {"Removed", false, {"a", "b", "c"}},
      {"MergedWithPrevious", false, {"a-", "b-", "-", "c"}},
      {"MergedWithNext", false, {"a", "-b", "-", "-c"}},
      {"Contiguous", false, {"a", "-", "b", "--", "c"}},
      {"Removed", true, {"-", "-", "-"}},
  };
  for (const auto& c : cases) {
    spec.pre_tokenizer = {{"type", "Split"},
                          {"pattern", {{"String", "-"}}},
                          {"behavior", c.behavior},
                          {"invert", c.invert}};
    auto tok = Build(spec);
    ASSERT_TRUE(tok);
    EXPECT_EQ(Tokens(*tok, "a-b--c"), c.want) << c.behavior << " invert=" << c.invert;
  }
}

TEST(PreTokenizerTest, RegexSplitWithLlama3Pattern) {
  Spec spec;
  spec.vocab = {"Hello", " world", "'s", " ", "123", "45", "\n\n", "x", "'S"};
  spec.model_extra = {{"ignore_merges", true}};
  spec.pre_tokenizer = {
      {"type", "Split"},
      {"pattern",
       {{"Regex",
         R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
      {"behavior", "Isolated"},
      {"invert", false}};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "Hello world's 12345\n\nx'S"),
            (Strings{"Hello", " world", "'s", " ", "123", "45", "\n\n", "x", "'S"}));
}

TEST(PreTokenizerTest, Digits) {
  Spec spec;
  spec.vocab = {"a", "1", "2", "3", "123", "٣"};
  spec.model_extra = {{"ignore_merges", true}};
  spec.pre_tokenizer = {{"type", "Digits"}, {"individual_digits", true}};
  auto individual = Build(spec);
  spec.pre_tokenizer["individual_digits"] = false;
  auto grouped = Build(spec);
  ASSERT_TRUE(individual && grouped);
  EXPECT_EQ(Tokens(*individual, "a123"), (Strings{"a", "1", "2", "3"}));
  EXPECT_EQ(Tokens(*grouped, "a123a"), (Strings{"a", "123", "a"}));
  EXPECT_EQ(Tokens(*individual, "1٣"), (Strings{"1", "٣"}));  // Arabic-Indic digit is numeric
}

TEST(PreTokenizerTest, WhitespaceAndWhitespaceSplit) {
  Spec spec;
  spec.vocab = {"hi", ",", "there", "!", "hi,", "there!"};
  spec.model_extra = {{"ignore_merges", true}};
  spec.pre_tokenizer = {{"type", "Whitespace"}};
  auto ws = Build(spec);
  spec.pre_tokenizer = {{"type", "WhitespaceSplit"}};
  auto wss = Build(spec);
  ASSERT_TRUE(ws && wss);
  EXPECT_EQ(Tokens(*ws, "hi, there!"), (Strings{"hi", ",", "there", "!"}));
  EXPECT_EQ(Tokens(*wss, " hi,\tthere!\n"), (Strings{"hi,", "there!"}));
}

TEST(PreTokenizerTest, MetaspacePrependSchemes) {
  const std::string m = "\xE2\x96\x81";  // ▁
  Spec spec;
  spec.vocab = {m + "hi", m + "there", "hi", "<x>", m + "hi" + m + "there", m};
  spec.model_extra = {{"ignore_merges", true}};
  spec.added_tokens = {Added(3, "<x>", true)};
  auto with = [&](const std::string& scheme, bool split) {
    spec.pre_tokenizer = {
        {"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", scheme}, {"split", split}};
    return Build(spec);
  };
  auto first = with("first", true);
  auto always = with("always", true);
  auto never = with("never", true);
  auto first_nosplit = with("first", false);
  ASSERT_TRUE(first && always && never && first_nosplit);
  EXPECT_EQ(Tokens(*first, "hi there"), (Strings{m + "hi", m + "there"}));
  // "first" only prepends at the start of the input, not after an added token.
  EXPECT_EQ(Tokens(*first, "<x>hi"), (Strings{"<x>", "hi"}));
  EXPECT_EQ(Tokens(*always, "<x>hi"), (Strings{"<x>", m + "hi"}));
  EXPECT_EQ(Tokens(*never, "hi there"), (Strings{"hi", m + "there"}));
  EXPECT_EQ(Tokens(*first_nosplit, "hi there"), (Strings{m + "hi" + m + "there"}));
  // No double prefix when the text already starts with a space.
  EXPECT_EQ(Tokens(*first, " hi"), (Strings{m + "hi"}));
}

TEST(PreTokenizerTest, ByteLevelPrefixSpaceAndAlphabet) {
  Spec spec;
  spec.vocab = {
      "\xC4\xA0"
      "hi",
      "hi", "\xC4\x8A", "\xC4\xA0"};  // "Ġhi", "hi", "Ċ", "Ġ"
  spec.model_extra = {{"ignore_merges", true}};
  spec.pre_tokenizer = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  spec.decoder = {{"type", "ByteLevel"}};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "hi"), (Strings{"\xC4\xA0"
                                         "hi"}));
  EXPECT_EQ(Tokens(*tok, "\n"), (Strings{"\xC4\xA0", "\xC4\x8A"}));
  EXPECT_EQ(*tok->Decode(std::vector<int32_t>{0, 2}, false), " hi\n");
}

TEST(NormalizerTest, SequenceOfLowercaseReplacePrependStrip) {
  const std::string m = "\xE2\x96\x81";
  Spec spec;
  spec.vocab = {m + "hello" + m + "world", "x"};
  spec.model_extra = {{"ignore_merges", true}};
  spec.normalizer = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                       {{"type", "Lowercase"}},
                       {{"type", "Prepend"}, {"prepend", m}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", m}}}}};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "  HeLLo World \t"), (Strings{m + "hello" + m + "world"}));
  EXPECT_TRUE(tok->Encode("", false)->empty());  // Prepend leaves empty text alone
  EXPECT_TRUE(tok->Encode("   ", false)->empty());
}

TEST(NormalizerTest, RegexReplaceAndUnicodeLowercase) {
  Spec spec;
  spec.vocab = {"a", "b", "_", "é", "ß"};
  spec.normalizer = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", "_"}},
                       {{"type", "Lowercase"}}}}};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "a \t b"), (Strings{"a", "_", "b"}));
  auto lower = tok->Encode("ÉA", false);
  if (!lower.ok()) {
    GTEST_SKIP() << "built without ICU: " << lower.status();
  }
  EXPECT_EQ(Tokens(*tok, "ÉA"), (Strings{"é", "a"}));
}

TEST(NormalizerTest, NfcComposesOrIsRefusedClearly) {
  Spec spec;
  spec.vocab = {"é", "e", "\xCC\x81"};
  spec.normalizer = {{"type", "NFC"}};
  Json vocab = Json::object();
  for (size_t i = 0; i < spec.vocab.size(); ++i) vocab[spec.vocab[i]] = i;
  Json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}},
            {"normalizer", spec.normalizer}};
  auto tok = Tokenizer::FromJson(j.dump());
  if (!tok.ok()) {
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(tok.status().message().find("NFC"), std::string::npos) << tok.status();
    GTEST_SKIP() << "NFC unsupported in this build: " << tok.status();
  }
  EXPECT_EQ(Tokens(**tok, "e\xCC\x81"), (Strings{"é"}));
}

TEST(AddedTokensTest, LongestMatchAndStripFlags) {
  Spec spec;
  spec.vocab = {"a", "b", " ", "<m>", "<mm>", "<l>", "<r>", "hi", "h", "i", "s"};
  spec.added_tokens = {
      Added(3, "<m>", true), Added(4, "<mm>", true), Added(5, "<l>", false, {{"lstrip", true}}),
      Added(6, "<r>", false, {{"rstrip", true}}), Added(7, "hi", false, {{"single_word", true}})};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  EXPECT_EQ(Tokens(*tok, "a<mm>b<m>"), (Strings{"a", "<mm>", "b", "<m>"}));
  EXPECT_EQ(Tokens(*tok, "a  <l> b"), (Strings{"a", "<l>", " ", "b"}));
  EXPECT_EQ(Tokens(*tok, "a <r>  b"), (Strings{"a", " ", "<r>", "b"}));
  EXPECT_EQ(Tokens(*tok, "a hi b"), (Strings{"a", " ", "hi", " ", "b"}));
  EXPECT_EQ(Tokens(*tok, "his"), (Strings{"h", "i", "s"}));  // not a whole word
  EXPECT_TRUE(tok->IsSpecial(3));
  EXPECT_FALSE(tok->IsSpecial(5));
  EXPECT_EQ(*tok->Decode(*tok->Encode("a<m>b", false), true), "a b");  // no decoder: joined by " "
  EXPECT_EQ(*tok->Decode(*tok->Encode("a<m>b", false), false), "a <m> b");
}

TEST(AddedTokensTest, NormalizedTokensMatchNormalizedText) {
  Spec spec;
  spec.vocab = {"x", "hello", "h"};
  spec.normalizer = {{"type", "Lowercase"}};
  spec.added_tokens = {Added(1, "HELLO", false, {{"normalized", true}})};
  auto tok = Build(spec);
  ASSERT_TRUE(tok);
  if (!tok->Encode("xHeLLox", false).ok()) GTEST_SKIP() << "no ICU";
  EXPECT_EQ(*tok->Encode("xHeLLox", false), (std::vector<int32_t>{0, 1, 0}));
}

TEST(DecoderTest, MetaspaceStripReplaceFuse) {
  const std::string m = "\xE2\x96\x81";
  Spec spec;
  spec.vocab = {m + "hello", m + "world", m, "x"};
  spec.decoder = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}};
  auto metaspace = Build(spec);
  spec.decoder = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", m}}}, {"content", " "}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  auto llama = Build(spec);
  ASSERT_TRUE(metaspace && llama);
  const std::vector<int32_t> ids = {0, 1, 2, 3};
  EXPECT_EQ(*metaspace->Decode(ids, false), "hello world x");
  EXPECT_EQ(*llama->Decode(ids, false), "hello world x");
  EXPECT_EQ(*llama->Decode(std::vector<int32_t>{2, 2, 3}, false), " x");
}

TEST(PostProcessorTest, TemplateRobertaAndSequence) {
  Spec spec;
  spec.vocab = {"<s>", "</s>", "a"};
  spec.added_tokens = {Added(0, "<s>", true), Added(1, "</s>", true)};
  spec.post_processor = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                           {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                         {"special_tokens",
                          {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                           {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  auto tmpl = Build(spec);
  ASSERT_TRUE(tmpl);
  EXPECT_EQ(*tmpl->Encode("aa", true), (std::vector<int32_t>{0, 2, 2, 1}));
  EXPECT_EQ(*tmpl->Encode("aa", false), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(tmpl->bos_id(), 0);

  spec.post_processor = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 1}}, {"cls", {"<s>", 0}}};
  auto roberta = Build(spec);
  ASSERT_TRUE(roberta);
  EXPECT_EQ(*roberta->Encode("a", true), (std::vector<int32_t>{0, 2, 1}));

  // Llama-3 shape: Sequence[ByteLevel, TemplateProcessing] with BOS only.
  spec.post_processor = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"trim_offsets", false}},
        {{"type", "TemplateProcessing"},
         {"single",
          {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}}}}}}}};
  auto seq = Build(spec);
  ASSERT_TRUE(seq);
  EXPECT_EQ(*seq->Encode("a", true), (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(seq->bos_id(), 0);

  spec.post_processor = nullptr;
  auto none = Build(spec);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->bos_id(), std::nullopt);
  EXPECT_EQ(*none->Encode("a", true), (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace claa
