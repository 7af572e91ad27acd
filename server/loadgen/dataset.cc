#include "server/loadgen/dataset.h"

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace claa::loadgen {
namespace {

// Bounds of the uniform length range around `len`, as vLLM computes them.
absl::StatusOr<std::uniform_int_distribution<int>> LengthRange(const char* name, int len,
                                                               double ratio) {
  if (len < 1) return absl::InvalidArgumentError(absl::StrCat(name, " must be >= 1, got ", len));
  const int lo = std::max(1, static_cast<int>(std::floor(len * (1.0 - ratio))));
  const int hi = std::max(lo, static_cast<int>(std::ceil(len * (1.0 + ratio))));
  return std::uniform_int_distribution<int>(lo, hi);
}

}  // namespace

absl::StatusOr<std::vector<Prompt>> MakeRandomDataset(const RandomDatasetOptions& options) {
  if (options.num_prompts < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_prompts must be >= 0, got ", options.num_prompts));
  }
  if (!(options.range_ratio >= 0 && options.range_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("random_range_ratio must be in [0, 1), got ", options.range_ratio));
  }
  if (options.vocab_size <= options.min_token_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", options.vocab_size, " leaves no token ids >= ", options.min_token_id));
  }
  auto input_len = LengthRange("random_input_len", options.input_len, options.range_ratio);
  if (!input_len.ok()) return input_len.status();
  auto output_len = LengthRange("random_output_len", options.output_len, options.range_ratio);
  if (!output_len.ok()) return output_len.status();

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(options.min_token_id, options.vocab_size - 1);
  std::vector<Prompt> prompts(static_cast<size_t>(options.num_prompts));
  for (Prompt& p : prompts) {
    p.token_ids.resize(static_cast<size_t>((*input_len)(rng)));
    p.max_tokens = (*output_len)(rng);
    for (int32_t& id : p.token_ids) id = token(rng);
  }
  return prompts;
}

absl::StatusOr<std::vector<Prompt>> ParseJsonlDataset(std::string_view content, int num_prompts,
                                                      int default_max_tokens) {
  if (num_prompts < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_prompts must be >= 0, got ", num_prompts));
  }
  std::vector<Prompt> lines;
  std::istringstream in{std::string(content)};
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto where = [line_no] { return absl::StrCat("line ", line_no, ": "); };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(where() + "not valid JSON");
    if (!j.is_object()) return absl::InvalidArgumentError(where() + "expected a JSON object");
    auto prompt = j.find("prompt");
    if (prompt == j.end()) return absl::InvalidArgumentError(where() + "missing \"prompt\"");
    if (!prompt->is_string()) {
      return absl::InvalidArgumentError(where() + "\"prompt\" must be a string");
    }
    Prompt p;
    p.text = prompt->get<std::string>();
    if (p.text.empty()) return absl::InvalidArgumentError(where() + "\"prompt\" is empty");
    p.max_tokens = default_max_tokens;
    if (auto max_tokens = j.find("max_tokens"); max_tokens != j.end()) {
      // is_number_integer is also true for unsigned values; reject floats like 3.5 and
      // values that would not fit an int.
      if (!max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1 ||
          max_tokens->get<int64_t>() > (int64_t{1} << 30)) {
        return absl::InvalidArgumentError(where() + "\"max_tokens\" must be a positive integer");
      }
      p.max_tokens = max_tokens->get<int>();
    }
    lines.push_back(std::move(p));
  }
  if (lines.empty()) return absl::InvalidArgumentError("the dataset has no prompts");
  std::vector<Prompt> prompts;
  prompts.reserve(static_cast<size_t>(num_prompts));
  for (int i = 0; i < num_prompts; ++i) prompts.push_back(lines[i % lines.size()]);
  return prompts;
}

absl::StatusOr<std::vector<Prompt>> LoadJsonlDataset(const std::string& path, int num_prompts,
                                                     int default_max_tokens) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open dataset file '", path, "'"));
  std::stringstream content;
  content << file.rdbuf();
  auto prompts = ParseJsonlDataset(content.str(), num_prompts, default_max_tokens);
  if (!prompts.ok()) {
    return absl::Status(prompts.status().code(),
                        absl::StrCat(path, ": ", prompts.status().message()));
  }
  return prompts;
}

}  // namespace claa::loadgen
