// Runs the real claa-cli binary: exact greedy output on stories260K, tokenize/detokenize against
// the golden encodings of both shared tokenizers, and clear failures on bad input.
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/child_process.h"
#include "tests/test_data.h"

namespace claa {
namespace {

using ::claa::testing::ChildProcess;

struct CliRun {
  int exit_code;
  std::string out;
};

CliRun RunCli(std::vector<std::string> args, const std::string& stdin_text = "") {
  args.insert(args.begin(), CLAA_CLI_BINARY);
  ChildProcess p;
  EXPECT_TRUE(p.Start(args, stdin_text));
  CliRun r;
  r.out = p.ReadAll();
  r.exit_code = p.Wait();
  return r;
}

nlohmann::json ReadJson(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

TEST(CliTest, GreedyGenerateMatchesExpected) {
  CLAA_REQUIRE_SHARED(model_dir, "models/stories260K");
  nlohmann::json expected = ReadJson(model_dir / "expected_greedy.json");
  std::string ids;
  for (int id : expected["prompt_ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  CliRun r = RunCli({"generate", "--model=" + model_dir.string(), "--prompt_ids=" + ids,
                     "--max_tokens=" + std::to_string(expected["generated_ids"].size()),
                     "--greedy", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["ids"], expected["generated_ids"]);
  EXPECT_TRUE(out["text"].is_string());
  EXPECT_EQ(out["finish_reason"], "length");
}

TEST(CliTest, GenerateWithTheBuiltinModel) {
  CliRun r = RunCli({"generate", "--prompt=Once upon a time", "--max_tokens=5", "--greedy",
                     "--ignore_eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"].size(), 5u);
}

void CheckGolden(const std::filesystem::path& tokenizer, const std::filesystem::path& golden_file) {
  nlohmann::json golden = ReadJson(golden_file);
  std::string input;
  std::string ids_input;
  for (const auto& g : golden) {
    input += nlohmann::json(g["text"]).dump() + "\n";
    ids_input += g["ids"].dump() + "\n";
  }
  CliRun tok = RunCli({"tokenize", "--tokenizer=" + tokenizer.string()}, input);
  ASSERT_EQ(tok.exit_code, 0) << tok.out;
  std::istringstream lines(tok.out);
  std::string line;
  size_t i = 0;
  for (; std::getline(lines, line) && i < golden.size(); ++i) {
    EXPECT_EQ(nlohmann::json::parse(line), golden[i]["ids"]) << golden[i]["text"];
  }
  EXPECT_EQ(i, golden.size());

  CliRun detok = RunCli({"detokenize", "--tokenizer=" + tokenizer.string()}, ids_input);
  ASSERT_EQ(detok.exit_code, 0) << detok.out;
  std::istringstream dlines(detok.out);
  i = 0;
  for (; std::getline(dlines, line) && i < golden.size(); ++i) {
    EXPECT_EQ(nlohmann::json::parse(line), golden[i]["decoded"]) << golden[i]["text"];
  }
  EXPECT_EQ(i, golden.size());
}

TEST(CliTest, TokenizeAndDetokenizeMatchGoldenStories) {
  CLAA_REQUIRE_SHARED(dir, "models/stories260K");
  CheckGolden(dir / "tokenizer.json", dir / "tokenizer_golden.json");
}

TEST(CliTest, TokenizeAndDetokenizeMatchGoldenSmolLM2) {
  CLAA_REQUIRE_SHARED(dir, "tokenizers/smollm2-135m");
  CheckGolden(dir / "tokenizer.json", dir / "tokenizer_golden.json");
}

TEST(CliTest, BadInputFailsClearly) {
  EXPECT_NE(RunCli({"generate", "--max_tokens=3"}).exit_code, 0);
  EXPECT_NE(RunCli({"generate", "--model=/nonexistent/model", "--prompt_ids=1"}).exit_code, 0);
  EXPECT_NE(RunCli({"frobnicate"}).exit_code, 0);
  EXPECT_NE(RunCli({"tokenize"}).exit_code, 0);
}

}  // namespace
}  // namespace claa
