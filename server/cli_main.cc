// claa-cli: offline tools over the engine (no server needed).
//   claa-cli generate --model DIR (--prompt TEXT | --prompt_ids 1,2,3) --max_tokens N
//                     [--greedy] [--json]
//   claa-cli tokenize --tokenizer FILE [--add_special_tokens]   (stdin: one JSON string a line)
//   claa-cli detokenize --tokenizer FILE                        (stdin: one JSON id array a line)
//   claa-cli oracle / eval                                      (see cli_eval.h)
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/flags_usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "server/cli_eval.h"
#include "absl/strings/strip.h"
#include "engine/generate/generate.h"
#include "engine/generate/loaded_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "",
          "generate/oracle/eval: Hugging Face model directory; empty uses the built-in demo "
          "model.");
ABSL_FLAG(std::string, prompt, "",
          "generate/oracle: prompt text (tokenized with special tokens).");
ABSL_FLAG(std::string, prompt_ids, "", "generate: prompt as comma-separated token ids.");
ABSL_FLAG(int, max_tokens, 16, "generate/oracle/eval: tokens to generate at most.");
ABSL_FLAG(bool, greedy, false, "generate: greedy decoding (same as --temperature=0).");
ABSL_FLAG(float, temperature, 1.0f, "generate: sampling temperature (0 = greedy).");
ABSL_FLAG(float, top_p, 1.0f, "generate: nucleus sampling mass in (0, 1].");
ABSL_FLAG(int, top_k, 0, "generate: keep the k most likely tokens (0 = off).");
ABSL_FLAG(int64_t, seed, 0, "generate: random seed.");
ABSL_FLAG(bool, ignore_eos, false, "generate: keep going past the end-of-sequence token.");
ABSL_FLAG(int, tp, 1, "generate/oracle/eval: tensor-parallel ranks (CPU threads).");
ABSL_FLAG(std::string, pruning_method, "full",
          "generate: prompt pruning: full, claa, fastkv or gemfilter (paper settings scaled to "
          "the model's depth).");
ABSL_FLAG(double, keep_ratio, 0.2, "generate: fraction of the prompt a pruned prefill keeps.");
ABSL_FLAG(bool, json, false,
          "generate: print one JSON object {\"ids\": [...], \"text\": ..., \"finish_reason\": ...} "
          "instead of streaming text.");
ABSL_FLAG(std::string, tokenizer, "", "tokenize/detokenize: path of a tokenizer.json.");
ABSL_FLAG(bool, add_special_tokens, false, "tokenize: add special tokens (e.g. BOS).");
ABSL_FLAG(bool, skip_special_tokens, false, "detokenize: leave special tokens out of the text.");

namespace {

constexpr char kUsage[] =
    "CLAA command-line tools.\n"
    "  claa-cli generate --model DIR (--prompt TEXT | --prompt_ids 1,2,3) --max_tokens N "
    "[--greedy] [--json]\n"
    "  claa-cli tokenize --tokenizer FILE [--add_special_tokens]  < one JSON string per line\n"
    "  claa-cli detokenize --tokenizer FILE                     < one JSON id array per line\n"
    "  claa-cli oracle --model DIR (--prompt TEXT | --prompt_file F) [--max_tokens N] [--top N]\n"
    "      Answer-Informed Oracle importance of each prompt token (JSON).\n"
    "  claa-cli eval --model DIR --tasks FILE.jsonl [--out PREFIX] [--methods claa,fastkv,...]\n"
    "      [--keep_ratios 0.1,0.2,0.4] [--limit N]\n"
    "      Per-layer Spearman with the oracle, top-k recall and task accuracy per method;\n"
    "      writes PREFIX.json, PREFIX.svg and PREFIX.md.\n";

int Fail(const std::string& what) {
  std::cerr << "claa-cli: " << what << std::endl;
  return 1;
}

int RunGenerate() {
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  const std::string prompt_ids = absl::GetFlag(FLAGS_prompt_ids);
  if (prompt.empty() == prompt_ids.empty()) {
    return Fail("generate: give exactly one of --prompt or --prompt_ids");
  }
  claa::ModelLoadOptions load;
  load.model_dir = absl::GetFlag(FLAGS_model);
  load.tp_size = absl::GetFlag(FLAGS_tp);
  auto model = claa::LoadModel(load);
  if (!model.ok()) return Fail(model.status().ToString());

  claa::GenerationRequest request;
  request.request_id = "cli";
  if (!prompt_ids.empty()) {
    for (absl::string_view part : absl::StrSplit(prompt_ids, ',', absl::SkipWhitespace())) {
      int32_t id = 0;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &id)) {
        return Fail("--prompt_ids: not an integer: '" + std::string(part) + "'");
      }
      request.prompt_ids.push_back(id);
    }
  } else {
    auto ids = (*model)->tokenizer->Encode(prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) return Fail("--prompt: " + ids.status().ToString());
    request.prompt_ids = *std::move(ids);
  }
  request.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  request.sampling.temperature =
      absl::GetFlag(FLAGS_greedy) ? 0.0f : absl::GetFlag(FLAGS_temperature);
  request.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  request.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  auto method = claa::ParsePruningMethod(absl::GetFlag(FLAGS_pruning_method));
  if (!method.ok() || *method == claa::PruningMethod::kOracle) {
    return Fail("--pruning_method must be full, claa, fastkv or gemfilter");
  }
  request.pruning = claa::DefaultPruningConfig(*method, (*model)->config.num_layers,
                                               absl::GetFlag(FLAGS_keep_ratio));

  const bool json = absl::GetFlag(FLAGS_json);
  auto result = claa::Generate(**model, std::move(request), [json](const claa::TokenOutput& t) {
    if (!json) std::cout << t.text << std::flush;
  });
  if (!result.ok()) return Fail(result.status().ToString());
  if (json) {
    nlohmann::json out = {{"ids", result->token_ids},
                          {"text", result->text},
                          {"finish_reason", claa::FinishReasonName(result->finish)}};
    // The text is valid UTF-8 by construction; replace rather than throw if it ever is not.
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::cout << std::endl;
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<claa::Tokenizer>> LoadTokenizerFlag() {
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) return absl::InvalidArgumentError("--tokenizer FILE is required");
  return claa::Tokenizer::FromFile(path);
}

int RunTokenize() {
  auto tokenizer = LoadTokenizerFlag();
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  const bool add_special = absl::GetFlag(FLAGS_add_special_tokens);
  std::string line;
  for (int line_no = 1; std::getline(std::cin, line); ++line_no) {
    nlohmann::json in = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (in.is_discarded() || !in.is_string()) {
      return Fail("stdin line " + std::to_string(line_no) + ": expected a JSON string");
    }
    auto ids = (*tokenizer)->Encode(in.get<std::string>(), add_special);
    if (!ids.ok()) return Fail("stdin line " + std::to_string(line_no) + ": " +
                               ids.status().ToString());
    std::cout << nlohmann::json(*ids).dump() << "\n";
  }
  std::cout.flush();
  return 0;
}

int RunDetokenize() {
  auto tokenizer = LoadTokenizerFlag();
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  const bool skip_special = absl::GetFlag(FLAGS_skip_special_tokens);
  std::string line;
  for (int line_no = 1; std::getline(std::cin, line); ++line_no) {
    nlohmann::json in = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    std::vector<int32_t> ids;
    bool ok = !in.is_discarded() && in.is_array();
    for (const auto& v : ok ? in : nlohmann::json::array()) {
      if (!v.is_number_integer()) ok = false;
      else ids.push_back(v.get<int32_t>());
    }
    if (!ok) return Fail("stdin line " + std::to_string(line_no) + ": expected a JSON id array");
    auto text = (*tokenizer)->Decode(ids, skip_special);
    if (!text.ok()) return Fail("stdin line " + std::to_string(line_no) + ": " +
                                text.status().ToString());
    std::cout << nlohmann::json(*text).dump(-1, ' ', false,
                                             nlohmann::json::error_handler_t::replace)
              << "\n";
  }
  std::cout.flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  claa::ShowFlagsOfFileInHelp("server/cli_main.cc", "server/cli_eval.cc");
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) return Fail(std::string("expected one command\n") + kUsage);
  const std::string command = args[1];
  if (command == "generate") return RunGenerate();
  if (command == "tokenize") return RunTokenize();
  if (command == "detokenize") return RunDetokenize();
  if (command == "oracle") return claa::RunOracleCommand();
  if (command == "eval") return claa::RunEvalCommand();
  return Fail("unknown command '" + command + "'\n" + kUsage);
}
