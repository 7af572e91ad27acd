// Pruned generation on the trained retrieval model (tests/models/claa-retrieval, committed test
// data): with CLAA at keep 0.2 a 2k-token needle-in-a-haystack prompt is still answered, the
// generation stops at EOS on its own, and the cache holds what the policy says per layer.
#include <fstream>
#include <string>

#include "engine/eval/pruning_eval.h"
#include "engine/generate/generate.h"
#include "gtest/gtest.h"

namespace claa::eval {
namespace {

const std::string kModelDir = std::string(CLAA_SOURCE_DIR) + "/tests/models/claa-retrieval";

TEST(RetrievalModelTest, ClaaAtKeepPointTwoAnswersAndStopsAtEos) {
  ModelLoadOptions load;
  load.model_dir = kModelDir;
  load.kv_cache_bytes = int64_t{64} << 20;
  auto model = LoadModel(load);
  ASSERT_TRUE(model.ok()) << model.status();
  auto tasks = LoadTasksJsonl(kModelDir + "/dev_suite.jsonl");
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  const EvalTask& task = (*tasks)[5];  // niah_single, noise haystack, 2048 tokens
  ASSERT_EQ(task.task, "niah_single");

  auto ids = (*model)->tokenizer->Encode(task.prompt, true);
  ASSERT_TRUE(ids.ok());
  const int p = int(ids->size());
  ASSERT_GT(p, 2000);
  for (PruningMethod method : {PruningMethod::kFull, PruningMethod::kClaa}) {
    SCOPED_TRACE(PruningMethodName(method));
    GenerationRequest request;
    request.request_id = "t";
    request.prompt_ids = *ids;
    request.sampling.temperature = 0.0f;
    request.max_tokens = 32;
    request.pruning = method == PruningMethod::kFull
                          ? PruningConfig()
                          : DefaultPruningConfig(method, (*model)->config.num_layers, 0.2);
    auto result = Generate(**model, request);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->text, task.answers[0]);
    EXPECT_EQ(result->finish, FinishReason::kEos);
    EXPECT_LT(result->token_ids.size(), 32u);
  }

  // The compact cache: 8 layers, CLAA prunes after layer 3 with min_layer 1, keep 0.2.
  const PruningConfig claa = DefaultPruningConfig(PruningMethod::kClaa, 8, 0.2);
  ASSERT_EQ(claa.pruning_layer, 3);
  ASSERT_EQ(claa.min_layer, 1);
  PrefillOptions options;
  options.pruning = claa;
  PrefillReport report;
  options.report = &report;
  SequenceKv kv(8);
  ASSERT_TRUE(ReserveTokens((*model)->runner->block_manager(), &kv, p).ok());
  ForwardItem item{&kv, *ids, 0, &options};
  std::vector<float> logits;
  ASSERT_TRUE((*model)->runner->Forward({&item, 1}, &logits).ok());
  const int k = claa.KeepCount(p);
  EXPECT_EQ(kv.layer_lengths, (std::vector<int>{p, k, k, k, k, k, k, k}));
  EXPECT_EQ(report.layer_lengths, kv.layer_lengths);
  EXPECT_EQ(int(report.kept_tokens.size()), k);
  EXPECT_EQ(kv.num_positions, p);
  ReleaseSequence((*model)->runner->block_manager(), &kv);
}

}  // namespace
}  // namespace claa::eval
