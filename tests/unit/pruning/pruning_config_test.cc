#include "engine/pruning/pruning_config.h"

#include "gtest/gtest.h"

namespace claa {
namespace {

TEST(PruningConfigTest, PaperDefaultsAt32LayersAndScaledToOtherDepths) {
  PruningConfig c = DefaultPruningConfig(PruningMethod::kClaa, 32, 0.2);
  EXPECT_EQ(c.pruning_layer, 15);
  EXPECT_EQ(c.aggregation_layers, 4);
  EXPECT_EQ(c.min_layer, 4);
  EXPECT_EQ(c.window, 8);
  EXPECT_EQ(c.pooling_kernel, 7);
  EXPECT_DOUBLE_EQ(c.keep_ratio, 0.2);

  PruningConfig g = DefaultPruningConfig(PruningMethod::kGemFilter, 32);
  EXPECT_EQ(g.pruning_layer, 13);
  EXPECT_EQ(g.pooling_kernel, 5);

  PruningConfig f = DefaultPruningConfig(PruningMethod::kFastKv, 32);
  EXPECT_EQ(f.pruning_layer, 15);
  EXPECT_EQ(f.aggregation_layers, 1);

  PruningConfig s = DefaultPruningConfig(PruningMethod::kClaa, 8);
  EXPECT_EQ(s.pruning_layer, 3);
  EXPECT_EQ(s.aggregation_layers, 4);
  EXPECT_EQ(s.min_layer, 1);
  PruningConfig tiny = DefaultPruningConfig(PruningMethod::kClaa, 4);
  EXPECT_EQ(tiny.pruning_layer, 1);
  EXPECT_EQ(tiny.aggregation_layers, 2);  // cannot reach below layer 0
  EXPECT_EQ(tiny.min_layer, 0);
  for (int layers : {1, 2, 5, 16, 32, 80}) {
    for (PruningMethod m : {PruningMethod::kClaa, PruningMethod::kFastKv,
                            PruningMethod::kGemFilter}) {
      EXPECT_TRUE(ValidatePruningConfig(DefaultPruningConfig(m, layers, 0.1), layers).ok())
          << layers << " " << PruningMethodName(m);
    }
  }
}

TEST(PruningConfigTest, KeepCount) {
  PruningConfig c = DefaultPruningConfig(PruningMethod::kClaa, 32, 0.2);
  EXPECT_EQ(c.KeepCount(50), 10);  // 0.2 * 50 is not exact in binary; still 10
  EXPECT_EQ(c.KeepCount(51), 11);  // ceil
  EXPECT_EQ(c.KeepCount(20), 8);   // never below the window
  EXPECT_EQ(c.KeepCount(5), 5);    // nor above the prompt
  EXPECT_EQ(c.KeepCount(0), 0);
  c.keep_ratio = 1.0;
  EXPECT_EQ(c.KeepCount(1000), 1000);
}

TEST(PruningConfigTest, MethodNamesRoundTrip) {
  for (PruningMethod m : {PruningMethod::kFull, PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter, PruningMethod::kOracle}) {
    auto parsed = ParsePruningMethod(PruningMethodName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(*ParsePruningMethod("CLAA"), PruningMethod::kClaa);
  EXPECT_EQ(ParsePruningMethod("snapkv").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PruningConfigTest, OverridesAndMethodDefaults) {
  const PruningConfig base = DefaultPruningConfig(PruningMethod::kClaa, 32, 0.4);
  PruningOverrides o;
  o.method = PruningMethod::kGemFilter;
  auto g = ResolvePruningConfig(base, o, 32);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->pruning_layer, 13);
  EXPECT_EQ(g->pooling_kernel, 5);
  EXPECT_DOUBLE_EQ(g->keep_ratio, 0.4);  // the server's keep ratio carries over

  PruningOverrides lower;
  lower.pruning_layer = 2;  // derived n and min_layer follow the pruning layer down
  auto l = ResolvePruningConfig(base, lower, 32);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->aggregation_layers, 3);
  EXPECT_EQ(l->min_layer, 2);

  PruningOverrides all;
  all.keep_ratio = 0.1;
  all.window = 16;
  all.aggregation_layers = 2;
  all.min_layer = 0;
  all.pooling_kernel = 1;
  auto a = ResolvePruningConfig(base, all, 32);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->window, 16);
  EXPECT_EQ(a->pooling_kernel, 1);
  EXPECT_EQ(a->min_layer, 0);
}

TEST(PruningConfigTest, RejectsNonsenseNamingTheField) {
  const PruningConfig base = DefaultPruningConfig(PruningMethod::kClaa, 32, 0.2);
  auto bad = [&](auto set, const char* field) {
    PruningOverrides o;
    set(o);
    auto r = ResolvePruningConfig(base, o, 32);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status();
  };
  bad([](PruningOverrides& o) { o.keep_ratio = 0.0; }, "keep_ratio");
  bad([](PruningOverrides& o) { o.keep_ratio = 1.5; }, "keep_ratio");
  bad([](PruningOverrides& o) { o.pruning_layer = 32; }, "pruning_layer");
  bad([](PruningOverrides& o) { o.pruning_layer = -1; }, "pruning_layer");
  bad([](PruningOverrides& o) { o.window = 0; }, "window");
  bad([](PruningOverrides& o) { o.aggregation_layers = 17; }, "aggregation_layers");
  bad([](PruningOverrides& o) { o.min_layer = 17; }, "min_layer");
  bad([](PruningOverrides& o) { o.pooling_kernel = 4; }, "pooling_kernel");
}

}  // namespace
}  // namespace claa
