#ifndef CLAA_ENGINE_EVAL_PRUNING_EVAL_H_
#define CLAA_ENGINE_EVAL_PRUNING_EVAL_H_

// `claa-cli eval`: how well each pruning method's ranking agrees with the Answer-Informed Oracle
// (per-layer Spearman, top-k recall of the oracle's tokens) and what pruning costs end to end
// (task accuracy at each keep ratio), on a JSONL task suite.
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/eval/answer_match.h"
#include "engine/eval/progress.h"
#include "engine/eval/prompt_analysis.h"
#include "engine/generate/loaded_model.h"
#include "nlohmann/json.hpp"

namespace claa::eval {

struct EvalTask {
  std::string task;  // the "task" field, or "task" when absent
  std::string prompt;
  std::vector<std::string> answers;
};

// One JSON object per line with "prompt" and "answers" (list) or "answer" (string); blank lines
// are skipped. InvalidArgument naming the line on anything else.
absl::StatusOr<std::vector<EvalTask>> LoadTasksJsonl(const std::string& path);

struct EvalOptions {
  std::vector<PruningMethod> methods = {PruningMethod::kClaa, PruningMethod::kFastKv,
                                        PruningMethod::kGemFilter, PruningMethod::kOracle};
  std::vector<double> keep_ratios = {0.1, 0.2, 0.4};
  AnswerMetric metric = AnswerMetric::kStringMatchAll;
  AnalysisOptions analysis;
  // Applied over every method's defaults (DefaultPruningConfig); the method is never overridden.
  // A window override also sets analysis.window (the signals the rankings are read from).
  PruningOverrides overrides;
  int limit = 0;                  // first N tasks only (0: all)
  ProgressPrinter::Options progress;
};

struct MethodResult {
  std::vector<double> spearman_by_layer;  // mean over tasks
  double mean_spearman = 0.0;             // mean over layers
  std::map<double, double> recall;        // keep ratio -> mean top-k recall of oracle tokens
  std::map<double, double> accuracy;      // keep ratio -> mean task score
};

struct EvalReport {
  std::string model;
  // One line per method: the configuration used at keep 1 (keep ratios vary per run).
  std::map<PruningMethod, std::string> configs;
  int num_tasks = 0;
  int num_layers = 0;
  double full_accuracy = 0.0;
  std::map<std::string, double> full_accuracy_by_task;
  std::map<PruningMethod, MethodResult> methods;
  std::map<PruningMethod, std::map<double, std::map<std::string, double>>> accuracy_by_task;

  nlohmann::json ToJson() const;
  // Spearman per layer per method as an SVG line chart.
  absl::StatusOr<std::string> SpearmanPlotSvg() const;
  // A Markdown table of accuracy and recall per method and keep ratio.
  std::string MarkdownTable() const;
};

absl::StatusOr<EvalReport> RunPruningEval(LoadedModel& model, const std::vector<EvalTask>& tasks,
                                          const EvalOptions& options);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_PRUNING_EVAL_H_
