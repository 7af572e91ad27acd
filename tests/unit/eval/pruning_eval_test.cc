// The evaluator on the built-in model (random weights, so accuracy itself means nothing here;
// the trained retrieval model's numbers are in docs/pruning-eval.md): the oracle's shape and
// normalisation, per-layer rankings, and the invariants every report must satisfy.
#include "engine/eval/pruning_eval.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace claa::eval {
namespace {

std::unique_ptr<LoadedModel> Builtin() {
  auto model = LoadModel(ModelLoadOptions{});
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

std::vector<int32_t> Prompt(int n) {
  std::vector<int32_t> p = {510};
  for (int i = 1; i < n; ++i) p.push_back(32 + (i * 29) % 90);
  return p;
}

TEST(PromptAnalysisTest, OracleAndLayerSignalsHaveTheRightShape) {
  auto model = Builtin();
  AnalysisOptions options;
  options.max_answer_tokens = 6;
  auto a = AnalyzePrompt(*model, Prompt(60), options);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->answer_ids.size(), 6u);
  ASSERT_EQ(a->oracle.size(), 60u);
  // Each answer query's softmax over the prompt sums to 1 per head, so the max over heads and
  // layers is a row of values in (0, 1] summing to at least 1 before pooling; pooling with zero
  // padding keeps the mean at most the unpooled one.
  double sum = 0;
  for (float v : a->oracle) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
    sum += v;
  }
  EXPECT_GT(sum, 0.5);
  const int layers = model->config.num_layers;
  ASSERT_EQ(int(a->window_by_layer.size()), layers);
  ASSERT_EQ(int(a->last_query_by_layer.size()), layers);
  EXPECT_EQ(a->window_by_layer[0].num_kv_heads, model->config.num_kv_heads);
  EXPECT_EQ(a->window_by_layer[0].prefix_len, 52);
  for (PruningMethod m : {PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter, PruningMethod::kOracle}) {
    for (int l = 0; l < layers; ++l) {
      EXPECT_EQ(MethodScoresAtLayer(*a, m, l, 2).size(), 52u) << PruningMethodName(m);
    }
  }
  // CLAA with n = 1 ranks like the z-scored max of one layer; at layer 0 it only sees layer 0.
  EXPECT_EQ(MethodScoresAtLayer(*a, PruningMethod::kClaa, 0, 4),
            MethodScoresAtLayer(*a, PruningMethod::kClaa, 0, 1));
}

TEST(PruningEvalTest, ReportInvariants) {
  auto model = Builtin();
  std::vector<EvalTask> tasks;
  for (int i = 0; i < 3; ++i) {
    EvalTask t;
    t.task = i < 2 ? "a" : "b";
    t.prompt = "The key is " + std::to_string(1000 + i) + ". Some filler text goes here. " +
               "More filler text follows it. What is the key? Answer: ";
    t.answers = {std::to_string(1000 + i)};
    tasks.push_back(t);
  }
  EvalOptions options;
  options.keep_ratios = {0.2, 1.0};
  options.analysis.max_answer_tokens = 4;
  options.progress.out = nullptr;
  auto report = RunPruningEval(*model, tasks, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->num_tasks, 3);
  ASSERT_EQ(report->methods.size(), 4u);
  for (const auto& [m, r] : report->methods) {
    SCOPED_TRACE(PruningMethodName(m));
    // Keeping everything is exactly full KV, for every method.
    EXPECT_DOUBLE_EQ(r.accuracy.at(1.0), report->full_accuracy);
    for (const auto& [keep, recall] : r.recall) {
      EXPECT_GE(recall, 0.0);
      EXPECT_LE(recall, 1.0);
      if (m == PruningMethod::kOracle) {
        EXPECT_DOUBLE_EQ(recall, 1.0);
      }
    }
    if (m == PruningMethod::kOracle) continue;
    ASSERT_EQ(int(r.spearman_by_layer.size()), model->config.num_layers);
    for (double rho : r.spearman_by_layer) {
      EXPECT_TRUE(std::isfinite(rho));
      EXPECT_GE(rho, -1.0);
      EXPECT_LE(rho, 1.0);
    }
  }
  const nlohmann::json j = report->ToJson();
  EXPECT_TRUE(j["methods"].contains("claa"));
  EXPECT_EQ(j["methods"]["fastkv"]["spearman_by_layer"].size(),
            size_t(model->config.num_layers));
  EXPECT_TRUE(j["full_accuracy_by_task"].contains("b"));
  auto svg = report->SpearmanPlotSvg();
  ASSERT_TRUE(svg.ok());
  EXPECT_NE(svg->find("claa"), std::string::npos);
  EXPECT_NE(svg->find("gemfilter"), std::string::npos);
  EXPECT_NE(report->MarkdownTable().find("| claa | 0.2 |"), std::string::npos);
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);
}

TEST(PruningEvalTest, TaskFileErrorsNameTheLine) {
  const std::string path = ::testing::TempDir() + "/tasks.jsonl";
  {
    std::ofstream f(path);
    f << "{\"prompt\": \"a\", \"answer\": \"b\"}\n\n{\"prompt\": \"c\"}\n";
  }
  auto tasks = LoadTasksJsonl(path);
  ASSERT_FALSE(tasks.ok());
  EXPECT_NE(tasks.status().message().find(":3:"), std::string::npos) << tasks.status();
  EXPECT_EQ(LoadTasksJsonl(path + ".missing").status().code(), absl::StatusCode::kNotFound);
  {
    std::ofstream f(path);
    f << "{\"prompt\": \"a\", \"answers\": [\"b\", \"c\"], \"task\": \"t\"}\n";
  }
  tasks = LoadTasksJsonl(path);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ((*tasks)[0].answers.size(), 2u);
  EXPECT_EQ((*tasks)[0].task, "t");
}

}  // namespace
}  // namespace claa::eval
