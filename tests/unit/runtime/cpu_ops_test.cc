// fp32 ops against naive double-precision references on random (never zero) inputs.
#include "engine/runtime/cpu_ops.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace claa {
namespace {

using ::claa::testing::MaxRelErr;
using ::claa::testing::RandomVector;

std::vector<double> NaiveGemmNT(const std::vector<float>& x, int n, int in,
                                const std::vector<float>& w, int out) {
  std::vector<double> y(size_t(n) * out);
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int k = 0; k < in; ++k) s += double(x[size_t(r) * in + k]) * w[size_t(o) * in + k];
      y[size_t(r) * out + o] = s;
    }
  return y;
}

TEST(GemmTest, MatchesNaive) {
  // Tolerance: fp32 accumulation over `in` terms of O(1) values; 1e-5 relative to the max.
  // Sizes cover the plain-loop path (<= 64K MACs), the sgemv path (one row) and sgemm.
  for (auto [n, in, out] : {std::tuple{1, 64, 128}, {7, 33, 19}, {50, 100, 70}, {3, 1, 5},
                            {1, 300, 400}, {2, 300, 400}}) {
    auto x = RandomVector(size_t(n) * in, 1 + n);
    auto w = RandomVector(size_t(out) * in, 2 + out);
    std::vector<float> y(size_t(n) * out);
    Gemm(x.data(), n, in, w.data(), out, y.data());
    auto ref = NaiveGemmNT(x, n, in, w, out);
    EXPECT_LT(MaxRelErr(y.data(), ref.data(), y.size()), 1e-5) << n << "x" << in << "x" << out;
  }
}

TEST(GemmTest, StridedAlphaAccumulate) {
  // Small (plain loops), one-row (sgemv) and large (sgemm) shapes with padded leading dims.
  for (auto [n, in, out] : {std::tuple{5, 12, 9}, {1, 260, 300}, {40, 130, 90}}) {
    const int ldx = in + 8, ldw = in + 3, ldy = out + 2;
    auto x = RandomVector(size_t(n) * ldx, 3);
    auto w = RandomVector(size_t(out) * ldw, 4);
    auto y = RandomVector(size_t(n) * ldy, 5);
    const auto y0 = y;
    GemmStrided(x.data(), ldx, n, in, w.data(), ldw, out, y.data(), ldy, 0.5f,
                /*accumulate=*/true);
    for (int r = 0; r < n; ++r) {
      for (int o = 0; o < ldy; ++o) {
        double ref = y0[r * ldy + o];
        if (o < out) {
          double s = 0;
          for (int k = 0; k < in; ++k) s += double(x[r * ldx + k]) * w[o * ldw + k];
          ref += 0.5 * s;
        }
        // Columns past `out` must be untouched. fp32 sums of <= 260 O(1) terms.
        ASSERT_NEAR(y[r * ldy + o], ref, 2e-4) << n << "x" << in << "x" << out << " @" << r << "," << o;
      }
    }
  }
}

TEST(DotTest, MatchesNaiveForAllTailLengths) {
  for (int n = 0; n < 40; ++n) {
    auto a = RandomVector(n, 20 + n), b = RandomVector(n, 60 + n);
    double ref = 0;
    for (int i = 0; i < n; ++i) ref += double(a[i]) * b[i];
    EXPECT_NEAR(Dot(a.data(), b.data(), n), ref, 1e-5) << n;
  }
  auto x = RandomVector(13, 1), y = RandomVector(13, 2);
  auto y0 = y;
  Axpy(-0.5f, x.data(), y.data(), 13);
  for (int i = 0; i < 13; ++i) EXPECT_FLOAT_EQ(y[i], y0[i] - 0.5f * x[i]);
}

TEST(GemmTest, NoTransposeMatchesNaive) {
  const int n = 6, in = 23, out = 8, ldy = 10;
  auto x = RandomVector(size_t(n) * in, 6);
  auto w = RandomVector(size_t(in) * out, 7);  // [in, out]
  std::vector<float> y(size_t(n) * ldy, 42.0f);
  GemmNN(x.data(), in, n, in, w.data(), out, out, y.data(), ldy);
  for (int r = 0; r < n; ++r) {
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int k = 0; k < in; ++k) s += double(x[r * in + k]) * w[k * out + o];
      EXPECT_NEAR(y[r * ldy + o], s, 1e-5);
    }
    EXPECT_EQ(y[r * ldy + out], 42.0f);
  }
}

TEST(RmsNormTest, MatchesHfFormula) {
  const int n = 4, hidden = 96;
  const float eps = 1e-5f;
  auto x = RandomVector(size_t(n) * hidden, 8, 3.0f);
  auto w = RandomVector(hidden, 9);
  std::vector<float> y(x.size());
  RmsNorm(x.data(), n, hidden, w.data(), eps, y.data());
  std::vector<double> ref(x.size());
  for (int r = 0; r < n; ++r) {
    double ms = 0;
    for (int i = 0; i < hidden; ++i) ms += double(x[r * hidden + i]) * x[r * hidden + i];
    ms /= hidden;
    for (int i = 0; i < hidden; ++i) ref[r * hidden + i] = x[r * hidden + i] / std::sqrt(ms + eps) * w[i];
  }
  // A few fp32 roundings per element: 1e-6 relative.
  EXPECT_LT(MaxRelErr(y.data(), ref.data(), y.size()), 1e-6);
  // In place gives the same result.
  RmsNorm(x.data(), n, hidden, w.data(), eps, x.data());
  EXPECT_EQ(x, y);
}

TEST(ExpTest, MatchesStdExp) {
  // Relative error 3e-7 (~2.5 ulp) over the whole range softmax and SiLU use.
  std::vector<float> x;
  for (float v = -87.0f; v <= 88.0f; v += 0.01737f) x.push_back(v);
  x.push_back(0.0f);
  auto y = x;
  ExpInPlace(y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(double(x[i]));
    EXPECT_LT(std::abs(y[i] - ref) / ref, 3e-7) << "x=" << x[i];
  }
  std::vector<float> tiny = {-200.0f, -1e30f};
  ExpInPlace(tiny.data(), tiny.size());
  EXPECT_LT(tiny[0], 1e-37f);
  EXPECT_GE(tiny[0], 0.0f);
}

TEST(SwiGluTest, MatchesNaive) {
  auto gate = RandomVector(1000, 10, 8.0f);
  auto up = RandomVector(1000, 11, 2.0f);
  gate[0] = -100.0f;  // exp(100) must not turn into inf/inf.
  std::vector<float> out(gate.size());
  SwiGlu(gate.data(), up.data(), gate.size(), out.data());
  std::vector<double> ref(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    ref[i] = gate[i] / (1.0 + std::exp(-double(gate[i]))) * up[i];
  }
  EXPECT_LT(MaxRelErr(out.data(), ref.data(), out.size()), 1e-6);
  EXPECT_TRUE(std::isfinite(out[0]));
}

TEST(AddBiasTest, AddsPerColumn) {
  std::vector<float> y = {1, 2, 3, 4, 5, 6};
  std::vector<float> b = {10, 20, 30};
  AddBias(y.data(), 2, 3, b.data());
  EXPECT_EQ(y, (std::vector<float>{11, 22, 33, 14, 25, 36}));
}

ModelConfig RopeConfig(int head_dim, double theta) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.rope_theta = theta;
  return c;
}

TEST(RopeTest, DefaultInvFreq) {
  auto inv = ComputeRopeInvFreq(RopeConfig(8, 10000.0));
  ASSERT_EQ(inv.size(), 4u);
  const double expected[] = {1.0, 0.1, 0.01, 0.001};  // 1 / 10000^(2i/8)
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], expected[i], 1e-7 * expected[i]) << i;
}

TEST(RopeTest, RotateHalfConventionByHand) {
  // head_dim 8: pairs are (0,4), (1,5), (2,6), (3,7) -- NOT adjacent (0,1), (2,3).
  ModelConfig c = RopeConfig(8, 10000.0);
  RotaryEmbedding rope(c);
  const int heads = 3, stride = 30;  // Row stride wider than heads * head_dim.
  const int32_t positions[] = {0, 5, 123};
  auto x = RandomVector(size_t(3) * stride, 12);
  auto y = x;
  rope.Apply(y.data(), 3, heads, stride, positions);
  for (int t = 0; t < 3; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* in = &x[t * stride + h * 8];
      const float* out = &y[t * stride + h * 8];
      for (int i = 0; i < 4; ++i) {
        const double theta = positions[t] / std::pow(10000.0, 2.0 * i / 8);
        const double e1 = in[i] * std::cos(theta) - in[i + 4] * std::sin(theta);
        const double e2 = in[i + 4] * std::cos(theta) + in[i] * std::sin(theta);
        // fp32 angle rounding at position 123: |error| <= 123 * 6e-8 per unit input.
        EXPECT_NEAR(out[i], e1, 2e-5) << t << " " << h << " " << i;
        EXPECT_NEAR(out[i + 4], e2, 2e-5) << t << " " << h << " " << i;
      }
    }
    // Columns beyond heads * head_dim are untouched.
    for (int j = heads * 8; j < stride; ++j) EXPECT_EQ(y[t * stride + j], x[t * stride + j]);
  }
  // Position 0 is the identity.
  for (int j = 0; j < heads * 8; ++j) EXPECT_FLOAT_EQ(y[j], x[j]);
}

TEST(RopeTest, LinearScalingDividesByFactor) {
  ModelConfig c = RopeConfig(16, 10000.0);
  auto base = ComputeRopeInvFreq(c);
  c.rope_scaling.type = RopeScalingType::kLinear;
  c.rope_scaling.factor = 4.0;
  auto scaled = ComputeRopeInvFreq(c);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_NEAR(scaled[i], base[i] / 4.0, 1e-7 * base[i]);
}

// transformers' _compute_llama3_parameters, transcribed independently (tensor ops as loops).
std::vector<double> HfLlama3InvFreq(int dim, double base, double factor, double low_ff,
                                    double high_ff, double old_len) {
  std::vector<double> inv;
  for (int i = 0; i < dim; i += 2) inv.push_back(1.0 / std::pow(base, double(i) / dim));
  const double low_freq_wavelen = old_len / low_ff;
  const double high_freq_wavelen = old_len / high_ff;
  std::vector<double> out(inv.size());
  for (size_t i = 0; i < inv.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / inv[i];
    // inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    double llama = wavelen > low_freq_wavelen ? inv[i] / factor : inv[i];
    const double smooth_factor = (old_len / wavelen - low_ff) / (high_ff - low_ff);
    const double smoothed = (1 - smooth_factor) * llama / factor + smooth_factor * llama;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    out[i] = is_medium ? smoothed : llama;
  }
  return out;
}

TEST(RopeTest, Llama3ScalingMatchesHf) {
  // Llama-3.1-8B: theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192.
  ModelConfig c = RopeConfig(128, 500000.0);
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  auto got = ComputeRopeInvFreq(c);
  auto want = HfLlama3InvFreq(128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
  ASSERT_EQ(got.size(), want.size());
  int high = 0, low = 0, medium = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 2e-7 * want[i]) << i;
    const double unscaled = 1.0 / std::pow(500000.0, 2.0 * i / 128);
    if (std::abs(want[i] - unscaled) < 1e-12 * unscaled) ++high;
    else if (std::abs(want[i] - unscaled / 8) < 1e-12 * unscaled) ++low;
    else ++medium;
  }
  // The three regimes all occur for this shape, so every branch is checked.
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(medium, 0);
  EXPECT_FLOAT_EQ(got[0], 1.0f);
}

TEST(RopeTest, LargePositionsUseScaledFrequencies) {
  ModelConfig c = RopeConfig(64, 500000.0);
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8.0;
  RotaryEmbedding rope(c);
  auto inv = ComputeRopeInvFreq(c);
  const int32_t pos[] = {100000};
  auto x = RandomVector(64, 13);
  auto y = x;
  rope.Apply(y.data(), 1, 1, 64, pos);
  for (int i = 0; i < 32; ++i) {
    // Reference rounds the angle to fp32 as HF does, then exact cos/sin.
    const double a = double(float(pos[0]) * inv[i]);
    EXPECT_NEAR(y[i], x[i] * std::cos(a) - x[i + 32] * std::sin(a), 1e-5) << i;
    EXPECT_NEAR(y[i + 32], x[i + 32] * std::cos(a) + x[i] * std::sin(a), 1e-5) << i;
  }
}

}  // namespace
}  // namespace claa
