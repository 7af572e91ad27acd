#ifndef CLAA_SERVER_LOADGEN_DATASET_H_
#define CLAA_SERVER_LOADGEN_DATASET_H_

// Benchmark prompts: random token ids (vLLM's "random" dataset) or a JSONL file of text prompts.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace claa::loadgen {

// One request's prompt: either token ids (random dataset) or text (JSONL), never both.
struct Prompt {
  std::vector<int32_t> token_ids;
  std::string text;
  int max_tokens = 0;
};

struct RandomDatasetOptions {
  int num_prompts = 0;
  int input_len = 0;
  int output_len = 0;
  // Lengths are drawn uniformly from [len * (1 - r), len * (1 + r)] (at least 1), r in [0, 1).
  double range_ratio = 0;
  uint64_t seed = 0;
  int vocab_size = 0;  // the served model's, from GetModelInfo
  // Ids below this are left out: they are special tokens (pad/bos/eos) in common vocabularies,
  // and a BOS or EOS in the middle of a prompt would not be a realistic workload.
  int min_token_id = 3;
};

// Prompts of uniformly random ids in [min_token_id, vocab_size), deterministic for a seed
// (with the same standard library; see arrival_schedule.h).
absl::StatusOr<std::vector<Prompt>> MakeRandomDataset(const RandomDatasetOptions& options);

// Parses JSONL content: one object a line, {"prompt": "...", "max_tokens": N}; max_tokens is
// optional (then `default_max_tokens`), blank lines are skipped. Errors name the line number.
// Returns `num_prompts` prompts, taking the lines in order and wrapping around when the file
// has fewer (deterministic, unlike vLLM's sampling, so runs over one file are comparable).
absl::StatusOr<std::vector<Prompt>> ParseJsonlDataset(std::string_view content, int num_prompts,
                                                      int default_max_tokens);

// Reads `path` and parses it as above.
absl::StatusOr<std::vector<Prompt>> LoadJsonlDataset(const std::string& path, int num_prompts,
                                                     int default_max_tokens);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_DATASET_H_
