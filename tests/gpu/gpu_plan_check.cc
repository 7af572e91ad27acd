// CPU-only checks of the GPU backend's host side: the forward plan (engine/gpu/batch_plan.h)
// and the dlopen loader's errors. They run everywhere, also in CI without a GPU.
#include <string>
#include <vector>

#include "engine/gpu/backend_loader.h"
#include "engine/gpu/batch_plan.h"
#include "gtest/gtest.h"

namespace claa::gpu {
namespace {

ModelDims Dims(int layers, int block_size) {
  ModelDims d;
  d.num_layers = layers;
  d.num_heads = 4;
  d.num_kv_heads = 2;
  d.head_dim = 64;
  d.block_size = block_size;
  return d;
}

TEST(GpuPlan, PrefillThenDecode) {
  const ModelDims dims = Dims(3, 4);
  const std::vector<int> tokens(10, 7), past(3, 0), blocks{3, 1, 2};
  PassItemInput in;
  in.rows = 10;
  in.host_tokens = tokens;
  in.past = past;
  in.blocks = blocks;
  in.pruning = ResolveItemPruning(PruningConfig{}, 10);
  Blob blob;
  ScratchLayout scratch;
  const PassPlan plan = BuildPassPlan(absl::MakeConstSpan(&in, 1), dims, false, &blob, &scratch);
  ASSERT_EQ(plan.layouts.size(), 1u);  // every layer shares one layout
  const AttnLayout& lay = plan.layouts[0];
  EXPECT_EQ(lay.mode, AttnMode::kFresh);
  EXPECT_TRUE(lay.writes_cache);
  // Slot s lives in block blocks[s / 4] at offset s % 4.
  const int32_t* slots = blob.at(lay.slots);
  EXPECT_EQ(slots[0], 12);
  EXPECT_EQ(slots[5], 5);
  EXPECT_EQ(slots[9], 9);
  EXPECT_EQ(plan.new_lengths[0], std::vector<int>(3, 10));
  EXPECT_EQ(blob.at(plan.last_rows)[0], 9);
  EXPECT_TRUE(plan.work.empty());
  EXPECT_TRUE(plan.compactions.empty());

  // One decode token after it.
  const std::vector<int> one{5}, past10(3, 10);
  in.rows = 1;
  in.start_pos = 10;
  in.host_tokens = one;
  in.past = past10;
  in.pruning = ResolveItemPruning(PruningConfig{}, 1);
  const PassPlan dec = BuildPassPlan(absl::MakeConstSpan(&in, 1), dims, false, &blob, &scratch);
  ASSERT_EQ(dec.layouts.size(), 1u);
  EXPECT_EQ(dec.layouts[0].mode, AttnMode::kDecode);
  EXPECT_EQ(blob.at(dec.layouts[0].k_lens)[0], 11);
  EXPECT_EQ(blob.at(dec.layouts[0].slots)[0], 2 * 4 + 2);
  EXPECT_EQ(blob.at(dec.positions)[0], 10);
  EXPECT_EQ(dec.new_lengths[0], std::vector<int>(3, 11));

  // Without the paged decode kernel (head_dim outside 64/128) decode takes the mixed path.
  ModelDims no_paged = dims;
  no_paged.paged_decode = false;
  const PassPlan mixed =
      BuildPassPlan(absl::MakeConstSpan(&in, 1), no_paged, false, &blob, &scratch);
  EXPECT_EQ(mixed.layouts[0].mode, AttnMode::kMixed);
  EXPECT_EQ(blob.at(mixed.layouts[0].cu_k)[1], 11);
}

TEST(GpuPlan, ClaaLayersCompactionAndLengths) {
  const ModelDims dims = Dims(8, 16);
  PruningConfig claa = DefaultPruningConfig(PruningMethod::kClaa, 8, 0.2);
  ASSERT_EQ(claa.pruning_layer, 3);
  ASSERT_EQ(claa.min_layer, 1);
  ASSERT_EQ(claa.aggregation_layers, 4);
  const std::vector<int> tokens(100, 3), short_tokens(5, 4), past(8, 0);
  std::vector<int> blocks_a, blocks_b{20};
  for (int i = 0; i < 7; ++i) blocks_a.push_back(i);
  PassItemInput a, b;
  a.rows = 100;
  a.host_tokens = tokens;
  a.past = past;
  a.blocks = blocks_a;
  a.pruning = ResolveItemPruning(claa, 100);
  b.rows = 5;
  b.host_tokens = short_tokens;
  b.past = past;
  b.blocks = blocks_b;
  b.pruning = ResolveItemPruning(PruningConfig{}, 5);
  const std::vector<PassItemInput> items{a, b};
  Blob blob;
  ScratchLayout scratch;
  const PassPlan plan = BuildPassPlan(items, dims, false, &blob, &scratch);
  ASSERT_EQ(a.pruning.keep, 20);
  // Layer 0 writes the full prompt; 1..3 are compacted (no plain write); 4..7 run 20 rows.
  ASSERT_EQ(plan.layouts.size(), 3u);
  EXPECT_EQ(plan.layer_layout, (std::vector<int>{0, 1, 1, 1, 2, 2, 2, 2}));
  EXPECT_EQ(plan.layouts[0].total_rows, 105);
  EXPECT_EQ(blob.at(plan.layouts[1].slots)[0], -1);
  EXPECT_EQ(blob.at(plan.layouts[1].slots)[100], 20 * 16);  // item b still writes
  EXPECT_EQ(plan.layouts[2].total_rows, 25);
  EXPECT_EQ(plan.new_lengths[0], (std::vector<int>{100, 20, 20, 20, 20, 20, 20, 20}));
  EXPECT_EQ(plan.new_lengths[1], std::vector<int>(8, 5));
  ASSERT_EQ(plan.work.size(), 1u);
  const PruneWork& w = plan.work[0];
  // The window (positions 92..99) is always kept, at the end of the selection.
  EXPECT_EQ(blob.at(w.kept)[12], 92);
  EXPECT_EQ(blob.at(w.kept)[19], 99);
  EXPECT_EQ(blob.at(w.head_kept)[20 + 19], 99);
  ASSERT_EQ(plan.compactions.size(), 1u);
  const Compaction& c = plan.compactions[0];
  EXPECT_EQ(c.layer, 3);
  EXPECT_EQ(c.new_total, 25);
  ASSERT_EQ(c.pruned.size(), 1u);
  EXPECT_EQ(c.pruned[0].old_offset, 0);
  EXPECT_EQ(blob.at(c.gather)[20], 100);  // item b's first row moves up from row 100
  EXPECT_EQ(blob.at(c.gather)[24], 104);
  EXPECT_EQ(blob.at(plan.last_rows)[0], 19);
  EXPECT_EQ(blob.at(plan.last_rows)[1], 24);
  EXPECT_TRUE(a.pruning.ScorerNeeds(0));
  EXPECT_FALSE(a.pruning.CompactsCache(0));
}

TEST(GpuPlan, GemFilterScoringPassWritesNothing) {
  const ModelDims dims = Dims(8, 16);
  const PruningConfig gem = DefaultPruningConfig(PruningMethod::kGemFilter, 8, 0.4);
  const std::vector<int> tokens(50, 1), past(8, 0), blocks{0, 1, 2, 3};
  PassItemInput in;
  in.rows = 50;
  in.host_tokens = tokens;
  in.past = past;
  in.blocks = blocks;
  in.pruning = ResolveItemPruning(gem, 50);
  Blob blob;
  ScratchLayout scratch;
  const PassPlan plan = BuildPassPlan(absl::MakeConstSpan(&in, 1), dims, true, &blob, &scratch);
  EXPECT_EQ(plan.num_layers, gem.pruning_layer + 1);
  ASSERT_EQ(plan.layouts.size(), 1u);
  EXPECT_FALSE(plan.layouts[0].writes_cache);
  ASSERT_EQ(plan.work.size(), 1u);
  EXPECT_EQ(plan.work[0].p.keep, 20);
  EXPECT_TRUE(plan.compactions.empty());
}

TEST(GpuLoader, MissingLibraryIsNotFoundAndSaysWhatToDo) {
  auto lib = GpuBackendLibrary::Load("/nonexistent/libclaa_cuda_backend.so", false);
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(lib.status().message().find("CLAA_CUDA_BACKEND"), std::string::npos)
      << lib.status();
}

}  // namespace
}  // namespace claa::gpu
