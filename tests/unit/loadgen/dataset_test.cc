#include "server/loadgen/dataset.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace claa::loadgen {
namespace {

RandomDatasetOptions Random(int n, int in, int out, double ratio) {
  RandomDatasetOptions o;
  o.num_prompts = n;
  o.input_len = in;
  o.output_len = out;
  o.range_ratio = ratio;
  o.seed = 5;
  o.vocab_size = 512;
  return o;
}

TEST(RandomDatasetTest, FixedLengthsWithoutRange) {
  auto prompts = MakeRandomDataset(Random(20, 32, 16, 0));
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 20u);
  for (const Prompt& p : *prompts) {
    EXPECT_EQ(p.token_ids.size(), 32u);
    EXPECT_EQ(p.max_tokens, 16);
    EXPECT_TRUE(p.text.empty());
    for (int32_t id : p.token_ids) {
      EXPECT_GE(id, 3);  // no special tokens
      EXPECT_LT(id, 512);
    }
  }
}

TEST(RandomDatasetTest, LengthsStayInRangeAndVary) {
  auto prompts = MakeRandomDataset(Random(500, 100, 10, 0.5));
  ASSERT_TRUE(prompts.ok());
  int min_in = 1 << 30, max_in = 0, min_out = 1 << 30, max_out = 0;
  for (const Prompt& p : *prompts) {
    min_in = std::min<int>(min_in, p.token_ids.size());
    max_in = std::max<int>(max_in, p.token_ids.size());
    min_out = std::min(min_out, p.max_tokens);
    max_out = std::max(max_out, p.max_tokens);
  }
  EXPECT_GE(min_in, 50);
  EXPECT_LE(max_in, 150);
  EXPECT_LT(min_in, 60);  // the range is actually used
  EXPECT_GT(max_in, 140);
  EXPECT_GE(min_out, 5);
  EXPECT_LE(max_out, 15);
}

TEST(RandomDatasetTest, DeterministicForASeed) {
  auto a = MakeRandomDataset(Random(10, 16, 4, 0.3));
  auto b = MakeRandomDataset(Random(10, 16, 4, 0.3));
  RandomDatasetOptions other = Random(10, 16, 4, 0.3);
  other.seed = 6;
  auto c = MakeRandomDataset(other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].token_ids, (*b)[i].token_ids);
  EXPECT_NE((*a)[0].token_ids, (*c)[0].token_ids);
}

TEST(RandomDatasetTest, RejectsBadOptions) {
  EXPECT_FALSE(MakeRandomDataset(Random(1, 0, 4, 0)).ok());
  EXPECT_FALSE(MakeRandomDataset(Random(1, 4, 0, 0)).ok());
  EXPECT_FALSE(MakeRandomDataset(Random(1, 4, 4, 1.0)).ok());
  EXPECT_FALSE(MakeRandomDataset(Random(1, 4, 4, -0.1)).ok());
  EXPECT_FALSE(MakeRandomDataset(Random(-1, 4, 4, 0)).ok());
  RandomDatasetOptions tiny_vocab = Random(1, 4, 4, 0);
  tiny_vocab.vocab_size = 3;
  EXPECT_FALSE(MakeRandomDataset(tiny_vocab).ok());
}

TEST(JsonlDatasetTest, ParsesPromptsAndDefaultMaxTokens) {
  auto prompts = ParseJsonlDataset(
      "{\"prompt\": \"Once upon a time\", \"max_tokens\": 7}\n"
      "\n"
      "  \r\n"
      "{\"prompt\": \"caf\\u00e9\", \"extra\": [1, 2]}\n",
      2, /*default_max_tokens=*/12);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 2u);
  EXPECT_EQ((*prompts)[0].text, "Once upon a time");
  EXPECT_EQ((*prompts)[0].max_tokens, 7);
  EXPECT_TRUE((*prompts)[0].token_ids.empty());
  EXPECT_EQ((*prompts)[1].text, "caf\xc3\xa9");
  EXPECT_EQ((*prompts)[1].max_tokens, 12);
}

TEST(JsonlDatasetTest, WrapsAroundWhenAskedForMore) {
  auto prompts = ParseJsonlDataset("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}", 5, 4);
  ASSERT_TRUE(prompts.ok());
  std::string order;
  for (const Prompt& p : *prompts) order += p.text;
  EXPECT_EQ(order, "ababa");
}

struct Malformed {
  const char* content;
  const char* expected_message;
};

// Readable test names in failures instead of gtest's byte dump.
void PrintTo(const Malformed& m, std::ostream* os) { *os << m.content; }

class MalformedJsonlTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedJsonlTest, NamesTheProblem) {
  auto prompts = ParseJsonlDataset(GetParam().content, 3, 8);
  ASSERT_FALSE(prompts.ok()) << GetParam().content;
  EXPECT_EQ(prompts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(prompts.status().message().find(GetParam().expected_message), std::string::npos)
      << prompts.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedJsonlTest,
    ::testing::Values(
        Malformed{"{\"prompt\": \"ok\"}\n{\"prompt\": \"cut", "line 2: not valid JSON"},
        Malformed{"[\"prompt\"]", "line 1: expected a JSON object"},
        Malformed{"\"just a string\"", "line 1: expected a JSON object"},
        Malformed{"{\"text\": \"x\"}", "line 1: missing \"prompt\""},
        Malformed{"{\"prompt\": 5}", "line 1: \"prompt\" must be a string"},
        Malformed{"{\"prompt\": \"\"}", "line 1: \"prompt\" is empty"},
        Malformed{"{\"prompt\": \"x\", \"max_tokens\": 0}", "\"max_tokens\" must be a positive"},
        Malformed{"{\"prompt\": \"x\", \"max_tokens\": -3}", "\"max_tokens\" must be a positive"},
        Malformed{"{\"prompt\": \"x\", \"max_tokens\": 2.5}", "\"max_tokens\" must be a positive"},
        Malformed{"{\"prompt\": \"x\", \"max_tokens\": \"4\"}",
                  "\"max_tokens\" must be a positive"},
        Malformed{"{\"prompt\": \"x\", \"max_tokens\": 99999999999}",
                  "\"max_tokens\" must be a positive"},
        Malformed{"", "no prompts"}, Malformed{"\n\n  \n", "no prompts"}));

TEST(JsonlDatasetTest, LoadsFilesAndReportsMissingOnes) {
  const std::string path = ::testing::TempDir() + "/loadgen_dataset_test.jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"hello\", \"max_tokens\": 3}\n";
  }
  auto prompts = LoadJsonlDataset(path, 1, 8);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  EXPECT_EQ((*prompts)[0].text, "hello");
  std::remove(path.c_str());

  auto missing = LoadJsonlDataset(path + ".missing", 1, 8);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(JsonlDatasetTest, FileErrorsNameTheFile) {
  const std::string path = ::testing::TempDir() + "/loadgen_bad.jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"ok\"}\nnot json\n";
  }
  auto prompts = LoadJsonlDataset(path, 1, 8);
  ASSERT_FALSE(prompts.ok());
  EXPECT_NE(prompts.status().message().find(path + ": line 2"), std::string::npos)
      << prompts.status();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace claa::loadgen
