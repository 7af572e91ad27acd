// claa-ruler: writes RULER-style synthetic long-context tasks as JSONL, one example a line:
//   {"task","haystack","prompt","answer","answers","prompt_tokens","depth","seed"}
// Lengths are in tokens of the given tokenizer (the built-in one by default), BOS included.
//   claa-ruler --tasks niah_single,variable_tracking --lengths 512,2048 --num 20 --seed 1
//   claa-ruler --write_tokenizer tokenizer.json     (the built-in tokenizer, for Python tools)
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/eval/ruler.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/flags_usage.h"

ABSL_FLAG(std::string, tasks,
          "niah_single,niah_multikey,niah_multivalue,kv_retrieval,variable_tracking",
          "Comma-separated tasks: niah_single, niah_multikey, niah_multivalue, kv_retrieval, "
          "variable_tracking.");
ABSL_FLAG(std::string, haystacks, "noise,salad",
          "Comma-separated haystacks: noise (\"The grass is green. ...\" repeated) and salad "
          "(random common words). kv_retrieval has its own filler (more key-value pairs) and is "
          "written once per length whatever this says.");
ABSL_FLAG(std::string, lengths, "2048",
          "Comma-separated prompt lengths in tokens (BOS included); each example has the longest "
          "haystack that fits.");
ABSL_FLAG(int, num, 10, "Examples per (task, haystack, length).");
ABSL_FLAG(uint64_t, seed, 0,
          "Suite seed. Each example's own seed (written in its line) derives from it, the task, "
          "haystack, length and index; the same flags give the same file on every platform.");
ABSL_FLAG(double, depth, -1.0,
          "Queried needle position as a fraction of the haystack in [0, 1]; negative = drawn "
          "uniformly per example.");
ABSL_FLAG(std::string, tokenizer, "",
          "Path of a Hugging Face tokenizer.json whose tokens measure the lengths; empty = the "
          "built-in byte-level tokenizer (vocab 512).");
ABSL_FLAG(std::string, output, "-", "Output JSONL path; '-' = standard output.");
ABSL_FLAG(int, num_needles, 4, "niah_multikey: needles in all (one queried, others distractors).");
ABSL_FLAG(int, num_values, 4, "niah_multivalue: values of the queried key.");
ABSL_FLAG(int, vt_hops, 4, "variable_tracking: assignments after the first in each chain.");
ABSL_FLAG(int, vt_chains, 1, "variable_tracking: chains in all (one queried).");
ABSL_FLAG(bool, with_ids, false,
          "Also write prompt_ids (BOS included) and answer_ids (the answer tokenized on its own) "
          "so that training and evaluation scripts need no tokenizer.");
ABSL_FLAG(std::string, write_tokenizer, "",
          "Instead of generating, write the built-in tokenizer's tokenizer.json to this path.");

namespace {

constexpr char kUsage[] =
    "Writes RULER-style synthetic long-context tasks (needle in a haystack: single, multi-key, "
    "multi-value; key-value retrieval; variable tracking) as JSONL lines {task, haystack, "
    "prompt, answer, answers, prompt_tokens, depth, seed}. Prompts end with \"Answer: \" so "
    "that the greedy continuation should be `answer`.\n"
    "  claa-ruler [--tasks LIST] [--haystacks noise,salad] [--lengths 512,2048] [--num N] "
    "[--seed S] [--depth D] [--tokenizer FILE] [--output FILE] [--with_ids]\n"
    "  claa-ruler --write_tokenizer FILE";

int Fail(const std::string& what) {
  std::cerr << "claa-ruler: " << what << std::endl;
  return 1;
}

std::vector<std::string> SplitList(const std::string& list) {
  return absl::StrSplit(list, ',', absl::SkipWhitespace());
}

int WriteBuiltinTokenizer(const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  out << claa::BuiltinTokenizerJson();
  out.close();
  if (!out) return Fail("cannot write " + path);
  return 0;
}

int Run() {
  std::vector<claa::eval::RulerTask> tasks;
  for (const std::string& name : SplitList(absl::GetFlag(FLAGS_tasks))) {
    auto task = claa::eval::ParseRulerTask(name);
    if (!task.ok()) return Fail("--tasks: " + std::string(task.status().message()));
    tasks.push_back(*task);
  }
  std::vector<claa::eval::HaystackKind> haystacks;
  for (const std::string& name : SplitList(absl::GetFlag(FLAGS_haystacks))) {
    auto haystack = claa::eval::ParseHaystack(name);
    if (!haystack.ok()) return Fail("--haystacks: " + std::string(haystack.status().message()));
    haystacks.push_back(*haystack);
  }
  std::vector<int> lengths;
  for (const std::string& text : SplitList(absl::GetFlag(FLAGS_lengths))) {
    int length = 0;
    if (!absl::SimpleAtoi(text, &length)) return Fail("--lengths: not an integer: " + text);
    lengths.push_back(length);
  }
  if (tasks.empty() || haystacks.empty() || lengths.empty()) {
    return Fail("--tasks, --haystacks and --lengths must each name at least one item");
  }
  const int num = absl::GetFlag(FLAGS_num);
  if (num < 0) return Fail("--num must be >= 0");

  const std::string tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  auto tokenizer = tokenizer_path.empty()
                       ? claa::Tokenizer::FromJson(claa::BuiltinTokenizerJson())
                       : claa::Tokenizer::FromFile(tokenizer_path);
  if (!tokenizer.ok()) return Fail("--tokenizer: " + tokenizer.status().ToString());
  claa::eval::RulerGenerator generator(**tokenizer);

  const std::string output_path = absl::GetFlag(FLAGS_output);
  std::ofstream file;
  if (output_path != "-") {
    file.open(output_path, std::ios::binary);
    if (!file) return Fail("cannot open --output " + output_path);
  }
  std::ostream& out = output_path == "-" ? std::cout : file;

  claa::eval::RulerOptions options;
  const double depth = absl::GetFlag(FLAGS_depth);
  if (depth >= 0) options.depth = depth;
  options.num_needles = absl::GetFlag(FLAGS_num_needles);
  options.num_values = absl::GetFlag(FLAGS_num_values);
  options.vt_hops = absl::GetFlag(FLAGS_vt_hops);
  options.vt_chains = absl::GetFlag(FLAGS_vt_chains);
  const uint64_t suite_seed = absl::GetFlag(FLAGS_seed);
  const bool with_ids = absl::GetFlag(FLAGS_with_ids);
  for (claa::eval::RulerTask task : tasks) {
    for (size_t h = 0; h < haystacks.size(); ++h) {
      // kv_retrieval's filler is its own pairs: one cell per length, not one per haystack.
      if (task == claa::eval::RulerTask::kKvRetrieval && h > 0) break;
      for (int length : lengths) {
        for (int i = 0; i < num; ++i) {
          options.task = task;
          options.haystack = haystacks[h];
          options.target_tokens = length;
          options.seed = claa::eval::RulerExampleSeed(suite_seed, task, haystacks[h], length, i);
          auto example = generator.Generate(options);
          if (!example.ok()) return Fail(example.status().ToString());
          out << claa::eval::RulerExampleToJson(*example, with_ids) << '\n';
        }
      }
    }
  }
  out.flush();
  if (!out) return Fail("write failed for --output " + output_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  claa::ShowFlagsOfFileInHelp("server/ruler_main.cc");
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) return Fail(absl::StrCat("unexpected argument: ", args[1]));
  const std::string write_tokenizer = absl::GetFlag(FLAGS_write_tokenizer);
  if (!write_tokenizer.empty()) return WriteBuiltinTokenizer(write_tokenizer);
  return Run();
}
