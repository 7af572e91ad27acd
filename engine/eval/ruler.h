#ifndef CLAA_ENGINE_EVAL_RULER_H_
#define CLAA_ENGINE_EVAL_RULER_H_

// RULER-style synthetic long-context tasks (Hsieh et al., "RULER: What's the real context size
// of your long-context language models?"), sized in tokens of a given tokenizer. Each example is
// a prompt whose greedy continuation should be `answer`; the prompt ends with an answer cue
// ("...\nAnswer: ") so that no chat template is needed. The same options and seed give the same
// example on every platform (see det_random.h).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace claa::eval {

enum class RulerTask {
  kNiahSingle,        // one needle "One of the special magic numbers for KEY is: 1234567."
  kNiahMultikey,      // several needles with distinct keys; the question asks for one key
  kNiahMultivalue,    // several needles with one key; the answer lists every value in order
  kKvRetrieval,       // a JSON object of random hex keys and values; the question names a key
  kVariableTracking,  // chains "VAR A = 12345." ... "VAR B = VAR A."; answer: names of the chain
};

enum class HaystackKind {
  kNoise,      // "The grass is green. The sky is blue. ..." repeated
  kWordSalad,  // uniformly random common English words
};

inline constexpr RulerTask kAllRulerTasks[] = {
    RulerTask::kNiahSingle, RulerTask::kNiahMultikey, RulerTask::kNiahMultivalue,
    RulerTask::kKvRetrieval, RulerTask::kVariableTracking};
inline constexpr HaystackKind kAllHaystacks[] = {HaystackKind::kNoise, HaystackKind::kWordSalad};

std::string_view RulerTaskName(RulerTask task);       // "niah_single", ...
std::string_view HaystackName(HaystackKind haystack);  // "noise", "salad"
absl::StatusOr<RulerTask> ParseRulerTask(std::string_view name);
// Accepts "noise" / "repeat" and "salad" / "word_salad".
absl::StatusOr<HaystackKind> ParseHaystack(std::string_view name);

struct RulerOptions {
  RulerTask task = RulerTask::kNiahSingle;
  // Ignored by kKvRetrieval, whose filler is the other key-value pairs.
  HaystackKind haystack = HaystackKind::kNoise;
  // Prompt length in tokens, counted with special tokens (the BOS the tokenizer adds), i.e. what
  // the model is fed. The result has the largest haystack with at most this many tokens.
  int target_tokens = 2048;
  // Position of the queried needle as a fraction of the haystack, 0 = start, 1 = end. Unset:
  // drawn uniformly per example.
  std::optional<double> depth;
  uint64_t seed = 0;
  int num_needles = 4;     // niah_multikey: needles in all (one queried, the rest distractors)
  int num_values = 4;      // niah_multivalue: values of the one key
  int vt_hops = 4;         // variable_tracking: assignments after the first (chain of hops+1)
  int vt_chains = 1;       // variable_tracking: chains in all (one queried)
};

struct RulerExample {
  std::string task;
  std::string haystack;  // "noise", "salad", or "kv_pairs" for kv_retrieval
  std::string prompt;
  std::string answer;                // the exact greedy continuation expected
  std::vector<std::string> answers;  // its parts (one per value / variable)
  int prompt_tokens = 0;             // with special tokens, as the model sees it
  double depth = 0.0;
  uint64_t seed = 0;
  // The prompt's ids (BOS included, prompt_tokens of them) and the answer's ids on their own
  // (no special tokens): a model fed prompt_ids should produce answer_ids, then EOS. The answer
  // is tokenized apart from the prompt because that is what greedy decoding after the cue makes.
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> answer_ids;
};

class RulerGenerator {
 public:
  // `tokenizer` must outlive the generator.
  explicit RulerGenerator(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // InvalidArgument for nonsense options, and when target_tokens cannot hold even the task's
  // fixed text (instructions, needles, question).
  absl::StatusOr<RulerExample> Generate(const RulerOptions& options) const;

 private:
  const Tokenizer& tokenizer_;
};

// The seed of example `index` of a (task, haystack, length) cell of a suite made with
// `suite_seed`. Kept below 2^53 so that JSON readers that parse numbers as doubles keep it exact.
uint64_t RulerExampleSeed(uint64_t suite_seed, RulerTask task, HaystackKind haystack,
                          int target_tokens, int index);

// One JSONL line (no trailing newline) with keys task, haystack, prompt, answer, answers,
// prompt_tokens, depth, seed in that order; with_ids adds prompt_ids and answer_ids (training
// scripts then need no tokenizer of their own).
std::string RulerExampleToJson(const RulerExample& example, bool with_ids = false);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_RULER_H_
