#include "engine/eval/pruning_eval.h"

#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/eval/rank_metrics.h"
#include "engine/eval/svg_plot.h"
#include "engine/generate/generate.h"
#include "engine/util/status_macros.h"

namespace claa::eval {
namespace {

std::string KeepKey(double r) { return absl::StrFormat("%g", r); }

// Generates the answer of one task with one pruning configuration and scores it.
absl::StatusOr<double> RunTask(LoadedModel& model, const PromptAnalysis& analysis,
                               const EvalTask& task, const PruningConfig& pruning,
                               const EvalOptions& options) {
  GenerationRequest request;
  request.request_id = "eval";
  request.prompt_ids = analysis.prompt_ids;
  request.sampling.temperature = 0.0f;
  request.max_tokens = std::min(options.analysis.max_answer_tokens,
                                model.max_context_length - int(analysis.prompt_ids.size()));
  request.stop_strings = options.analysis.stop_strings;
  request.pruning = pruning;
  if (pruning.method == PruningMethod::kOracle) request.oracle_scores = analysis.oracle;
  CLAA_ASSIGN_OR_RETURN(GenerationResult result, Generate(model, request));
  return ScoreAnswer(options.metric, result.text, task.answers);
}

// A method's configuration at keep ratio r: its defaults with the overrides applied.
absl::StatusOr<PruningConfig> MethodConfig(PruningMethod m, int layers, double r,
                                           const PruningOverrides& overrides) {
  PruningOverrides o = overrides;
  o.method.reset();
  o.keep_ratio = r;
  return ResolvePruningConfig(DefaultPruningConfig(m, layers, r), o, layers);
}

}  // namespace

absl::StatusOr<std::vector<EvalTask>> LoadTasksJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tasks file ", path));
  std::vector<EvalTask> tasks;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", what));
    };
    if (!j.is_object()) return bad("not a JSON object");
    if (!j.contains("prompt") || !j["prompt"].is_string()) return bad("needs a string \"prompt\"");
    EvalTask t;
    t.prompt = j["prompt"].get<std::string>();
    t.task = j.contains("task") && j["task"].is_string() ? j["task"].get<std::string>() : "task";
    if (j.contains("answers") && j["answers"].is_array()) {
      for (const auto& a : j["answers"]) {
        if (!a.is_string()) return bad("\"answers\" must hold strings");
        t.answers.push_back(a.get<std::string>());
      }
    } else if (j.contains("answer") && j["answer"].is_string()) {
      t.answers.push_back(j["answer"].get<std::string>());
    }
    if (t.answers.empty()) return bad("needs \"answers\" (list) or \"answer\" (string)");
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " has no tasks"));
  return tasks;
}

absl::StatusOr<EvalReport> RunPruningEval(LoadedModel& model, const std::vector<EvalTask>& all,
                                          const EvalOptions& given) {
  EvalOptions options = given;
  if (options.overrides.window) options.analysis.window = *options.overrides.window;
  const int layers = model.config.num_layers;
  const size_t count =
      options.limit > 0 ? std::min(all.size(), size_t(options.limit)) : all.size();
  EvalReport report;
  report.model = model.name;
  report.num_tasks = int(count);
  report.num_layers = layers;
  // Spearman sums and counts per method and layer (a constant ranking is skipped, not zero).
  std::map<PruningMethod, std::vector<double>> rho_sum, rho_n;
  std::map<PruningMethod, std::map<double, double>> recall_sum, acc_sum;
  std::map<std::string, int> per_task_count;
  std::map<std::string, double> full_by_task;
  std::map<PruningMethod, std::map<double, std::map<std::string, double>>> by_task;
  for (PruningMethod m : options.methods) {
    rho_sum[m].assign(layers, 0.0);
    rho_n[m].assign(layers, 0.0);
    CLAA_ASSIGN_OR_RETURN(PruningConfig config, MethodConfig(m, layers, 1.0, options.overrides));
    report.configs[m] = config.DebugString();
  }

  const int64_t steps = int64_t(count) * (1 + int64_t(options.methods.size()) *
                                                  int64_t(options.keep_ratios.size()));
  ProgressPrinter progress(steps, options.progress);
  double full_sum = 0.0;
  for (size_t i = 0; i < count; ++i) {
    const EvalTask& task = all[i];
    CLAA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, model.tokenizer->Encode(task.prompt, true));
    absl::StatusOr<PromptAnalysis> analysis = AnalyzePrompt(model, ids, options.analysis);
    if (!analysis.ok()) {
      return absl::Status(analysis.status().code(),
                          absl::StrCat("task ", i, ": ", analysis.status().message()));
    }
    const double full = ScoreAnswer(options.metric, analysis->answer_text, task.answers);
    full_sum += full;
    full_by_task[task.task] += full;
    ++per_task_count[task.task];
    progress.Increment();

    const int prefix = analysis->prefix_len();
    const auto oracle = absl::MakeConstSpan(analysis->oracle).first(prefix);
    for (PruningMethod m : options.methods) {
      CLAA_ASSIGN_OR_RETURN(const PruningConfig base,
                            MethodConfig(m, layers, 1.0, options.overrides));
      if (m != PruningMethod::kOracle) {
        for (int l = 0; l < layers; ++l) {
          const std::vector<float> s = MethodScoresAtLayer(*analysis, m, l,
                                                           base.aggregation_layers);
          absl::StatusOr<double> rho = SpearmanCorrelation(s, oracle);
          if (rho.ok() && std::isfinite(*rho)) {
            rho_sum[m][l] += *rho;
            rho_n[m][l] += 1;
          }
        }
      }
      const std::vector<float> at_selection =
          MethodScoresAtLayer(*analysis, m, base.pruning_layer, base.aggregation_layers);
      for (double r : options.keep_ratios) {
        CLAA_ASSIGN_OR_RETURN(const PruningConfig config,
                              MethodConfig(m, layers, r, options.overrides));
        const int k = config.KeepCount(int(ids.size())) - config.window;
        if (k > 0) {
          recall_sum[m][r] +=
              SetRecall(TopKIndices(at_selection, k, TopKOrder::kByIndex),
                        TopKIndices(oracle, k, TopKOrder::kByIndex));
        } else {
          recall_sum[m][r] += 1.0;
        }
        absl::StatusOr<double> score = RunTask(model, *analysis, task, config, options);
        if (!score.ok()) {
          return absl::Status(score.status().code(),
                              absl::StrCat("task ", i, " (", PruningMethodName(m), " keep ", r,
                                           "): ", score.status().message()));
        }
        acc_sum[m][r] += *score;
        by_task[m][r][task.task] += *score;
        progress.Increment();
      }
    }
  }
  progress.Finish();

  const double n = double(std::max<size_t>(count, 1));
  report.full_accuracy = full_sum / n;
  for (const auto& [name, sum] : full_by_task) {
    report.full_accuracy_by_task[name] = sum / per_task_count[name];
  }
  for (PruningMethod m : options.methods) {
    MethodResult& res = report.methods[m];
    double layer_sum = 0.0;
    int layer_n = 0;
    res.spearman_by_layer.assign(layers, std::nan(""));
    for (int l = 0; l < layers; ++l) {
      if (rho_n[m][l] > 0) {
        res.spearman_by_layer[l] = rho_sum[m][l] / rho_n[m][l];
        layer_sum += res.spearman_by_layer[l];
        ++layer_n;
      }
    }
    res.mean_spearman = layer_n > 0 ? layer_sum / layer_n : std::nan("");
    for (double r : options.keep_ratios) {
      res.recall[r] = recall_sum[m][r] / n;
      res.accuracy[r] = acc_sum[m][r] / n;
      for (const auto& [name, sum] : by_task[m][r]) {
        report.accuracy_by_task[m][r][name] = sum / per_task_count[name];
      }
    }
  }
  return report;
}

nlohmann::json EvalReport::ToJson() const {
  nlohmann::json j;
  j["model"] = model;
  j["num_tasks"] = num_tasks;
  j["num_layers"] = num_layers;
  j["full_accuracy"] = full_accuracy;
  j["full_accuracy_by_task"] = full_accuracy_by_task;
  for (const auto& [m, r] : methods) {
    nlohmann::json mj;
    nlohmann::json rho = nlohmann::json::array();
    for (double v : r.spearman_by_layer) rho.push_back(std::isfinite(v) ? nlohmann::json(v) : nullptr);
    mj["spearman_by_layer"] = rho;
    mj["mean_spearman"] =
        std::isfinite(r.mean_spearman) ? nlohmann::json(r.mean_spearman) : nlohmann::json(nullptr);
    for (const auto& [keep, v] : r.recall) mj["topk_recall"][KeepKey(keep)] = v;
    for (const auto& [keep, v] : r.accuracy) mj["accuracy"][KeepKey(keep)] = v;
    auto it = accuracy_by_task.find(m);
    if (it != accuracy_by_task.end()) {
      for (const auto& [keep, tasks] : it->second) mj["accuracy_by_task"][KeepKey(keep)] = tasks;
    }
    auto c = configs.find(m);
    if (c != configs.end()) mj["config"] = c->second;
    j["methods"][PruningMethodName(m)] = mj;
  }
  return j;
}

absl::StatusOr<std::string> EvalReport::SpearmanPlotSvg() const {
  LineChart chart;
  chart.title = absl::StrCat("Spearman correlation with the Answer-Informed Oracle (", model, ", ",
                             num_tasks, " tasks)");
  chart.x_label = "layer (the method selects at this layer)";
  chart.y_label = "mean Spearman rho";
  chart.y_min = -0.2;
  chart.y_max = 1.0;
  for (const auto& [m, r] : methods) {
    if (m == PruningMethod::kOracle) continue;
    chart.series.push_back(PlotSeries{PruningMethodName(m), {}, r.spearman_by_layer});
  }
  return RenderLineChartSvg(chart);
}

std::string EvalReport::MarkdownTable() const {
  std::string out = "| method | keep | accuracy | top-k recall of oracle tokens | mean Spearman |\n"
                    "|---|---|---|---|---|\n";
  absl::StrAppend(&out, absl::StrFormat("| full | 1 | %.3f | - | - |\n", full_accuracy));
  for (const auto& [m, r] : methods) {
    for (const auto& [keep, acc] : r.accuracy) {
      absl::StrAppend(&out, absl::StrFormat("| %s | %g | %.3f | %.3f | %s |\n",
                                            PruningMethodName(m), keep, acc, r.recall.at(keep),
                                            m == PruningMethod::kOracle || !std::isfinite(r.mean_spearman)
                                                ? std::string("-")
                                                : absl::StrFormat("%.3f", r.mean_spearman)));
    }
  }
  return out;
}

}  // namespace claa::eval
