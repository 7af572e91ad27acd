#include "server/cli_eval.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/eval/pruning_eval.h"
#include "engine/generate/loaded_model.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, prompt_file, "", "oracle: read the prompt text from this file.");
ABSL_FLAG(int, top, 20, "oracle: print this many most important prompt tokens.");
ABSL_FLAG(std::string, answer_stop, "\n",
          "oracle/eval: a stop string that ends the greedy answer (empty: none).");
ABSL_FLAG(std::string, tasks, "", "eval: JSONL task suite ({\"prompt\", \"answers\"} per line).");
ABSL_FLAG(std::string, out, "eval",
          "eval: output prefix; writes PREFIX.json, PREFIX.svg (Spearman per layer) and PREFIX.md.");
ABSL_FLAG(std::string, methods, "claa,fastkv,gemfilter,oracle",
          "eval: comma-separated pruning methods to compare with full KV.");
ABSL_FLAG(std::string, keep_ratios, "0.1,0.2,0.4", "eval: comma-separated keep ratios.");
ABSL_FLAG(std::string, metric, "string_match_all",
          "eval: answer metric: exact_match, string_match_all or string_match_part.");
ABSL_FLAG(int, limit, 0, "eval: evaluate only the first N tasks (0: all).");
ABSL_FLAG(int, window, -1,
          "eval: override every method's query window (default: the paper's 8 tokens).");
ABSL_FLAG(int, pruning_layer, -1, "eval: override every method's pruning / selection layer.");
ABSL_FLAG(int, min_layer, -1, "eval: override the first layer whose cache is compacted.");
ABSL_FLAG(int, aggregation_layers, -1, "eval: override CLAA's number of aggregated layers.");

// Defined in cli_main.cc, shared by the commands.
ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(int, max_tokens);
ABSL_DECLARE_FLAG(int, tp);

namespace claa {
namespace {

int Fail(const std::string& what) {
  std::cerr << "claa-cli: " << what << std::endl;
  return 1;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelFlag() {
  ModelLoadOptions load;
  load.model_dir = absl::GetFlag(FLAGS_model);
  load.tp_size = absl::GetFlag(FLAGS_tp);
  return LoadModel(load);
}

eval::AnalysisOptions AnalysisFromFlags() {
  eval::AnalysisOptions a;
  a.max_answer_tokens = absl::GetFlag(FLAGS_max_tokens);
  if (!absl::GetFlag(FLAGS_answer_stop).empty()) {
    a.stop_strings.push_back(absl::GetFlag(FLAGS_answer_stop));
  }
  return a;
}

}  // namespace

int RunOracleCommand() {
  std::string prompt = absl::GetFlag(FLAGS_prompt);
  const std::string file = absl::GetFlag(FLAGS_prompt_file);
  if (prompt.empty() == file.empty()) {
    return Fail("oracle: give exactly one of --prompt or --prompt_file");
  }
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return Fail("oracle: cannot read " + file);
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  auto model = LoadModelFlag();
  if (!model.ok()) return Fail(model.status().ToString());
  auto ids = (*model)->tokenizer->Encode(prompt, /*add_special_tokens=*/true);
  if (!ids.ok()) return Fail("oracle: " + ids.status().ToString());
  auto analysis = eval::AnalyzePrompt(**model, *ids, AnalysisFromFlags());
  if (!analysis.ok()) return Fail("oracle: " + analysis.status().ToString());

  // The most important tokens, with their text, then the whole importance vector.
  std::vector<int> order(analysis->oracle.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return analysis->oracle[a] > analysis->oracle[b]; });
  order.resize(std::min<size_t>(order.size(), std::max(0, absl::GetFlag(FLAGS_top))));
  nlohmann::json out;
  out["prompt_tokens"] = analysis->prompt_ids.size();
  out["answer_ids"] = analysis->answer_ids;
  out["answer"] = analysis->answer_text;
  out["importance"] = analysis->oracle;
  nlohmann::json top = nlohmann::json::array();
  for (int i : order) {
    auto text = (*model)->tokenizer->Decode({analysis->prompt_ids[i]}, false);
    top.push_back({{"index", i},
                   {"id", analysis->prompt_ids[i]},
                   {"text", text.ok() ? *text : ""},
                   {"importance", analysis->oracle[i]}});
  }
  out["top"] = top;
  std::cout << out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  return 0;
}

int RunEvalCommand() {
  const std::string tasks_path = absl::GetFlag(FLAGS_tasks);
  if (tasks_path.empty()) return Fail("eval: --tasks FILE.jsonl is required");
  eval::EvalOptions options;
  options.methods.clear();
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_methods), ',',
                                            absl::SkipWhitespace())) {
    auto method = ParsePruningMethod(absl::StripAsciiWhitespace(m));
    if (!method.ok()) return Fail("--methods: " + std::string(method.status().message()));
    if (*method != PruningMethod::kFull) options.methods.push_back(*method);
  }
  options.keep_ratios.clear();
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_keep_ratios), ',',
                                            absl::SkipWhitespace())) {
    double v = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(r), &v) || !(v > 0 && v <= 1)) {
      return Fail("--keep_ratios: each must be a number in (0, 1], got '" + std::string(r) + "'");
    }
    options.keep_ratios.push_back(v);
  }
  auto metric = eval::ParseAnswerMetric(absl::GetFlag(FLAGS_metric));
  if (!metric.ok()) return Fail("--metric: " + std::string(metric.status().message()));
  options.metric = *metric;
  options.analysis = AnalysisFromFlags();
  options.limit = absl::GetFlag(FLAGS_limit);
  if (absl::GetFlag(FLAGS_window) >= 0) options.overrides.window = absl::GetFlag(FLAGS_window);
  if (absl::GetFlag(FLAGS_pruning_layer) >= 0) {
    options.overrides.pruning_layer = absl::GetFlag(FLAGS_pruning_layer);
  }
  if (absl::GetFlag(FLAGS_min_layer) >= 0) {
    options.overrides.min_layer = absl::GetFlag(FLAGS_min_layer);
  }
  if (absl::GetFlag(FLAGS_aggregation_layers) >= 0) {
    options.overrides.aggregation_layers = absl::GetFlag(FLAGS_aggregation_layers);
  }
  options.progress.label = "eval";

  auto tasks = eval::LoadTasksJsonl(tasks_path);
  if (!tasks.ok()) return Fail(tasks.status().ToString());
  auto model = LoadModelFlag();
  if (!model.ok()) return Fail(model.status().ToString());
  std::cerr << "claa-cli eval: " << tasks->size() << " tasks, model " << (*model)->name << " ("
            << (*model)->config.num_layers << " layers)" << std::endl;
  auto report = eval::RunPruningEval(**model, *tasks, options);
  if (!report.ok()) return Fail("eval: " + report.status().ToString());

  const std::string prefix = absl::GetFlag(FLAGS_out);
  auto svg = report->SpearmanPlotSvg();
  if (!svg.ok()) return Fail("eval: plot: " + svg.status().ToString());
  const std::vector<std::pair<std::string, std::string>> files = {
      {prefix + ".json", report->ToJson().dump(2) + "\n"},
      {prefix + ".svg", *svg},
      {prefix + ".md", report->MarkdownTable()}};
  for (const auto& [path, content] : files) {
    std::ofstream f(path);
    if (!(f << content)) return Fail("eval: cannot write " + path);
  }
  std::cout << report->MarkdownTable() << "wrote " << prefix << ".json, " << prefix << ".svg, "
            << prefix << ".md" << std::endl;
  return 0;
}

}  // namespace claa
