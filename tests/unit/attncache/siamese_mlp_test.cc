// The Siamese MLP: it learns a distance from pairs, round-trips through its file, and a damaged
// file is refused; the maps' total-variation distance it is trained on.
#include "engine/attncache/siamese_mlp.h"

#include <fstream>
#include <random>

#include "engine/attncache/fp16.h"
#include "engine/attncache/map_distance.h"
#include "gtest/gtest.h"
#include "tests/unit/attncache/attncache_test_util.h"

namespace claa::attncache {
namespace {

using ::claa::testing::ScratchDir;

TEST(MapDistance, TotalVariationOfPackedMaps) {
  const MapsShape shape{1, 1, 2};  // rows: [1], [p, 1 - p]
  auto maps = [&](float p) {
    std::vector<float> f = {1.0f, p, 1.0f - p};
    std::vector<uint16_t> h(3);
    FloatToHalf(f.data(), 3, h.data());
    return h;
  };
  const std::vector<uint16_t> a = maps(0.25f), b = maps(0.75f);
  // Row 0 identical, row 1: 0.5 * (0.5 + 0.5) = 0.5; mean over 2 rows = 0.25.
  EXPECT_NEAR(MapsTotalVariation({a.data(), shape}, {b.data(), shape}), 0.25, 1e-6);
  EXPECT_NEAR(MapsTotalVariation({a.data(), shape}, {a.data(), shape}), 0.0, 1e-12);
  // A 1-row prefix: only row 0 counts; plus the length penalty.
  const MapsShape one{1, 1, 1};
  EXPECT_NEAR(MapsDistanceTarget({a.data(), one}, {b.data(), shape}, 1.0), 0.0 + 0.5, 1e-6);
}

TEST(SiameseMlp, LearnsADistanceAndRoundTrips) {
  // Toy problem: 2-d inputs padded into a 16-d "pooled" vector; the target distance is the
  // distance of the first coordinate only, which a random projection does not reproduce.
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> pooled(60, std::vector<float>(16, 0.0f));
  std::vector<int> tokens(60, 10);
  for (auto& p : pooled) {
    p[0] = u(rng);
    p[1] = u(rng);
  }
  std::vector<SiamesePair> pairs;
  for (int i = 0; i < 60; ++i) {
    for (int j = i + 1; j < 60; j += 3) {
      pairs.push_back({i, j, std::abs(pooled[i][0] - pooled[j][0])});
    }
  }
  SiameseShape shape;
  shape.input_dim = 16;
  shape.dim = 8;
  shape.reduce_dim = 16;
  shape.hidden = 32;
  SiameseMlp mlp(shape);
  SiameseTrainOptions o;
  o.epochs = 200;
  o.batch = 16;
  const std::vector<double> curve = mlp.Train(pooled, tokens, pairs, o);
  ASSERT_EQ(curve.size(), 200u);
  EXPECT_LT(curve.back(), 0.2 * curve.front());

  ScratchDir dir("mlp");
  std::filesystem::create_directories(dir.path());
  const std::string path = (dir.path() / "mlp.bin").string();
  ASSERT_TRUE(mlp.Save(path).ok());
  auto loaded = SiameseMlp::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->shape(), shape);
  std::vector<float> a(8), b(8);
  mlp.Project(pooled[5], 10, a.data());
  (*loaded)->Project(pooled[5], 10, b.data());
  EXPECT_EQ(a, b);

  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x55');
  }
  auto damaged = SiameseMlp::Load(path);
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(damaged.status().message().find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(SiameseMlp::Load(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace claa::attncache
