// Every CUDA kernel of kernels/ against the CPU path, on random inputs (fixed seeds, never
// zeros), with per-kernel tolerances stated next to each check. Outputs are poisoned (all bits
// set: NaN for floats / bf16, -1 for ints) before each launch, so an element a kernel fails to
// write shows up as NaN or a wrong index.
//
// Where the CPU engine has the operation, the reference IS the engine's function (RmsNorm,
// RotaryEmbedding, SwiGlu, PagedCausalAttention, Gemm); the CLAA window scores, z-score/max and
// top-k references are written out here in double precision, following DESIGN.md §2 and
// engine/pruning's semantics (population std, constant row -> 0, ties to the lower index).
//
// Inputs are bf16-rounded once; the CPU reference runs in fp32/fp64 on exactly those values, so
// the differences measured are the GPU's own (bf16 outputs, bf16 P in P.V, summation order).
//
// Without a CUDA device every test skips, saying so. A summary table of the errors is printed
// at the end (and written to $CLAA_GPU_CHECK_REPORT when set). CLAA_GPU_CHECK_TIMING=1 also runs
// the timing cases (GpuKernelTiming.*).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "engine/attncache/attention_reuse.h"
#include "engine/attncache/fp16.h"
#include "engine/model/config.h"
#include "engine/runtime/attention.h"
#include "engine/runtime/cpu_ops.h"
#include "engine/runtime/kv_cache.h"
#include "gtest/gtest.h"
#include "kernels/attention_maps.h"
#include "kernels/kernels.h"

namespace claa::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Report.

struct Tol {
  double atol;    // elementwise: |got - ref| <= atol + rtol * |ref|
  double rtol;
  double rel_l2;  // and ||got - ref|| / ||ref|| <= rel_l2
};

struct ReportRow {
  std::string name;
  size_t n;
  double max_abs, max_ref, rel_l2;
  Tol tol;
  bool ok;
};

std::vector<ReportRow>& Report() {
  static auto* rows = new std::vector<ReportRow>();
  return *rows;
}

class ReportEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    if (Report().empty()) return;
    std::ostringstream os;
    char line[512];
    std::snprintf(line, sizeof(line), "\n%-44s %10s %11s %11s %11s %9s %9s %9s %s\n", "check",
                  "elements", "max|err|", "max|ref|", "relL2", "atol", "rtol", "L2 tol",
                  "result");
    os << line;
    for (const ReportRow& r : Report()) {
      std::snprintf(line, sizeof(line), "%-44s %10zu %11.3e %11.3e %11.3e %9.1e %9.1e %9.1e %s\n",
                    r.name.c_str(), r.n, r.max_abs, r.max_ref, r.rel_l2, r.tol.atol, r.tol.rtol,
                    r.tol.rel_l2, r.ok ? "PASS" : "FAIL");
      os << line;
    }
    std::fputs(os.str().c_str(), stdout);
    if (const char* path = std::getenv("CLAA_GPU_CHECK_REPORT"); path != nullptr && *path) {
      std::ofstream(path) << os.str();
    }
  }
};

const auto* const kReportEnv = ::testing::AddGlobalTestEnvironment(new ReportEnvironment);

::testing::AssertionResult Compare(const std::string& name, const std::vector<float>& got,
                                   const std::vector<float>& ref, Tol tol) {
  ReportRow row{name, ref.size(), 0.0, 0.0, 0.0, tol, false};
  if (got.size() != ref.size()) {
    Report().push_back(row);
    return ::testing::AssertionFailure()
           << name << ": size " << got.size() << " != " << ref.size();
  }
  double num = 0.0, den = 0.0;
  size_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i];
    const double err = std::fabs(g - r);
    const bool ok = std::isfinite(g) && err <= tol.atol + tol.rtol * std::fabs(r);
    if (!ok) {
      if (bad < 5) first << " [" << i << "] got " << g << " ref " << r << ";";
      ++bad;
    }
    if (std::isfinite(err)) row.max_abs = std::max(row.max_abs, err);
    else row.max_abs = std::numeric_limits<double>::infinity();
    row.max_ref = std::max(row.max_ref, std::fabs(r));
    num += (g - r) * (g - r);
    den += r * r;
  }
  row.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!std::isfinite(row.rel_l2)) row.rel_l2 = std::numeric_limits<double>::infinity();
  row.ok = bad == 0 && row.rel_l2 <= tol.rel_l2;
  Report().push_back(row);
  if (row.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": " << bad << " of " << ref.size()
                                       << " elements out of tolerance, relL2 " << row.rel_l2
                                       << " (max " << tol.rel_l2 << ");" << first.str();
}

// Exact comparison of integer results (recorded in the report with error = mismatches).
template <typename T>
::testing::AssertionResult CompareExact(const std::string& name, const std::vector<T>& got,
                                        const std::vector<T>& ref) {
  size_t bad = got.size() == ref.size() ? 0 : std::max(got.size(), ref.size());
  std::ostringstream first;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    if (!(got[i] == ref[i])) {
      if (bad < 5) first << " [" << i << "] got " << got[i] << " ref " << ref[i] << ";";
      ++bad;
    }
  }
  Report().push_back(ReportRow{name + " (exact)", ref.size(), double(bad), 0.0, 0.0,
                               Tol{0, 0, 0}, bad == 0});
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": " << bad << " mismatches;" << first.str();
}

// ---------------------------------------------------------------------------------------------
// Device memory and data helpers.

#define CUDA_ASSERT(expr)                                                         \
  do {                                                                            \
    const cudaError_t e_ = (expr);                                                \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_);        \
  } while (0)

#define STATUS_ASSERT(expr)                          \
  do {                                               \
    const absl::Status s_ = (expr);                  \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_;     \
  } while (0)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)) !=
        cudaSuccess) {
      p_ = nullptr;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (p_ != nullptr && !host.empty()) {
      if (cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) !=
          cudaSuccess) {
        cudaFree(p_);
        p_ = nullptr;
      }
    }
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  bool ok() const { return p_ != nullptr; }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  // All bits set: NaN as float / bf16, -1 as int32.
  cudaError_t Poison() { return cudaMemset(p_, 0xff, n_ * sizeof(T)); }
  cudaError_t Download(std::vector<T>* out) const {
    out->resize(n_);
    return cudaMemcpy(out->data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// bf16 values uniform in +-[lo, hi] (never zero), and the same values as floats. splitmix64
// rather than <random> distributions: the timing cases draw a few hundred million values.
struct Bf16Data {
  std::vector<Bf16> bf;
  std::vector<float> f;
};
Bf16Data RandomBf16(size_t n, uint64_t seed, float lo = 0.05f, float hi = 1.0f) {
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  Bf16Data d;
  d.bf.resize(n);
  d.f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = float(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    const float x = (z & 1) ? lo + (hi - lo) * u : -(lo + (hi - lo) * u);
    d.bf[i] = FloatToBf16(x);
    d.f[i] = Bf16ToFloat(d.bf[i]);
  }
  return d;
}

std::vector<float> ToFloat(const std::vector<Bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = Bf16ToFloat(v[i]);
  return f;
}

// Columns [0, cols) of rows rows of a strided matrix.
std::vector<float> Columns(const std::vector<float>& m, int rows, int64_t stride, int cols) {
  std::vector<float> out(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    std::copy_n(&m[size_t(r) * stride], cols, &out[size_t(r) * cols]);
  }
  return out;
}

class GpuKernelCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) {
      GTEST_SKIP() << "no CUDA device: GPU kernel checks skipped (they compiled; run "
                      "tests/gpu/run_gpu_checks.sh on a GPU machine)";
    }
    CUDA_ASSERT(cudaSetDevice(0));
  }
  void Sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }
};

// ---------------------------------------------------------------------------------------------
// Element-wise and row kernels.

TEST_F(GpuKernelCheck, EmbeddingGatherAndGatherRows) {
  for (const int hidden : {4096, 100}) {  // 16-byte path and scalar path
    SCOPED_TRACE(hidden);
    const int vocab = 1000, n = 37;
    Bf16Data table = RandomBf16(size_t(vocab) * hidden, 11 + hidden);
    std::vector<int32_t> ids(n);
    std::mt19937 rng(12);
    for (int& id : ids) id = int(rng() % vocab);
    ids[5] = vocab + 3;  // out of range -> zero row
    ids[6] = -1;
    DeviceBuffer<Bf16> d_table(table.bf);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<Bf16> d_out(size_t(n) * hidden);
    ASSERT_TRUE(d_table.ok() && d_ids.ok() && d_out.ok());
    CUDA_ASSERT(d_out.Poison());
    STATUS_ASSERT(EmbeddingGather(d_table.get(), vocab, hidden, d_ids.get(), n, d_out.get(),
                                  nullptr));
    std::vector<Bf16> out;
    CUDA_ASSERT(d_out.Download(&out));
    std::vector<float> ref(size_t(n) * hidden, 0.0f);
    for (int t = 0; t < n; ++t) {
      if (ids[t] >= 0 && ids[t] < vocab) {
        std::copy_n(&table.f[size_t(ids[t]) * hidden], hidden, &ref[size_t(t) * hidden]);
      }
    }
    EXPECT_TRUE(CompareExact("EmbeddingGather h=" + std::to_string(hidden), ToFloat(out), ref));

    // GatherRows from a strided source into a strided destination.
    const int64_t dst_stride = hidden + 8;
    DeviceBuffer<Bf16> d_rows(size_t(n) * dst_stride);
    CUDA_ASSERT(d_rows.Poison());
    STATUS_ASSERT(GatherRows(d_table.get(), hidden, vocab, d_ids.get(), n, hidden, d_rows.get(),
                             dst_stride, nullptr));
    std::vector<Bf16> rows;
    CUDA_ASSERT(d_rows.Download(&rows));
    EXPECT_TRUE(CompareExact("GatherRows h=" + std::to_string(hidden),
                             Columns(ToFloat(rows), n, dst_stride, hidden), ref));
  }
  // Position ids.
  std::vector<int32_t> pos(500), idx = {0, 3, 17, 499, 250, 600, -2};
  std::iota(pos.begin(), pos.end(), 1000);
  DeviceBuffer<int32_t> d_pos(pos), d_idx(idx), d_dst(idx.size());
  CUDA_ASSERT(d_dst.Poison());
  STATUS_ASSERT(GatherInt32(d_pos.get(), int(pos.size()), d_idx.get(), int(idx.size()),
                            d_dst.get(), nullptr));
  std::vector<int32_t> got;
  CUDA_ASSERT(d_dst.Download(&got));
  EXPECT_TRUE(CompareExact<int32_t>("GatherInt32", got,
                                    {1000, 1003, 1017, 1499, 1250, 0, 0}));
}

TEST_F(GpuKernelCheck, AddRmsNormMatchesCpuRmsNorm) {
  // bf16 output of O(1) values: rounding is 2^-9 relative; fp32 sum order adds ~1e-6.
  const Tol tol{1e-2, 1e-2, 5e-3};
  for (const int hidden : {4096, 1000, 1001}) {  // vector, vector, scalar
    for (const bool with_x : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "hidden=" << hidden << " x=" << with_x);
      const int rows = 9;
      const float eps = 1e-5f;
      Bf16Data res = RandomBf16(size_t(rows) * hidden, 21 + hidden, 0.05f, 3.0f);
      Bf16Data x = RandomBf16(size_t(rows) * hidden, 22 + hidden, 0.05f, 3.0f);
      Bf16Data w = RandomBf16(hidden, 23 + hidden, 0.5f, 1.5f);
      DeviceBuffer<Bf16> d_res(res.bf), d_x(x.bf), d_w(w.bf), d_out(size_t(rows) * hidden);
      CUDA_ASSERT(d_out.Poison());
      STATUS_ASSERT(AddRmsNorm(d_res.get(), with_x ? d_x.get() : nullptr, d_w.get(), rows, hidden,
                               eps, d_out.get(), nullptr));
      std::vector<Bf16> new_res, out;
      CUDA_ASSERT(d_res.Download(&new_res));
      CUDA_ASSERT(d_out.Download(&out));
      // residual + x rounded to bf16, exactly as the kernel stores it.
      std::vector<float> ref_res(res.f);
      if (with_x) {
        for (size_t i = 0; i < ref_res.size(); ++i) {
          ref_res[i] = Bf16ToFloat(FloatToBf16(res.f[i] + x.f[i]));
        }
      }
      const std::string tag = "h=" + std::to_string(hidden) + (with_x ? " +x" : "");
      EXPECT_TRUE(CompareExact("AddRmsNorm residual " + tag, ToFloat(new_res), ref_res));
      std::vector<float> ref(ref_res.size());
      RmsNorm(ref_res.data(), rows, hidden, w.f.data(), eps, ref.data());
      EXPECT_TRUE(Compare("AddRmsNorm out " + tag, ToFloat(out), ref, tol));
    }
  }
}

TEST_F(GpuKernelCheck, RopeMatchesCpuRotaryEmbedding) {
  // bf16 in/out of |x| <= ~1.4; the angle is the same fp32 product on both sides, cos/sin differ
  // by an ulp or two (sincosf vs double cos/sin).
  const Tol tol{1e-2, 1e-2, 5e-3};
  struct Case {
    int head_dim;
    RopeScalingType type;
    int num_heads;
  };
  for (const Case& c : {Case{128, RopeScalingType::kLlama3, 6}, Case{64, RopeScalingType::kLinear, 5},
                        Case{128, RopeScalingType::kNone, 3}}) {
    SCOPED_TRACE(c.head_dim);
    ModelConfig cfg;
    cfg.head_dim = c.head_dim;
    cfg.rope_theta = c.type == RopeScalingType::kLlama3 ? 500000.0 : 10000.0;
    cfg.rope_scaling.type = c.type;
    cfg.rope_scaling.factor = c.type == RopeScalingType::kLlama3 ? 8.0 : 4.0;
    cfg.rope_scaling.low_freq_factor = 1.0;
    cfg.rope_scaling.high_freq_factor = 4.0;
    cfg.rope_scaling.original_max_position_embeddings = 8192;
    const int tokens = 50;
    const int64_t stride = int64_t(c.num_heads) * c.head_dim + 8 * 3;  // a slice of a wider row
    Bf16Data x = RandomBf16(size_t(tokens) * stride, 31 + c.head_dim);
    std::vector<int32_t> pos(tokens);
    std::mt19937 rng(32);
    for (int t = 0; t < tokens; ++t) pos[t] = t < 10 ? t : int(rng() % 131072);
    RotaryEmbedding rope(cfg);
    DeviceBuffer<Bf16> d_x(x.bf);
    DeviceBuffer<int32_t> d_pos(pos);
    DeviceBuffer<float> d_freq(rope.inv_freq());
    STATUS_ASSERT(ApplyRope(d_x.get(), tokens, c.num_heads, c.head_dim, stride, d_pos.get(),
                            d_freq.get(), nullptr));
    std::vector<Bf16> out;
    CUDA_ASSERT(d_x.Download(&out));
    std::vector<float> ref(x.f);
    rope.Apply(ref.data(), tokens, c.num_heads, int(stride), pos.data());
    // Columns beyond the heads must be untouched: compare whole rows.
    EXPECT_TRUE(Compare("ApplyRope d=" + std::to_string(c.head_dim) + " scaling=" +
                            std::to_string(int(c.type)),
                        ToFloat(out), ref, tol));
  }
}

TEST_F(GpuKernelCheck, SwiGluMatchesCpu) {
  // bf16 output; silu via __expf (~2 ulp) — bf16 rounding dominates.
  const Tol tol{1e-2, 1e-2, 5e-3};
  for (const int cols : {14336, 77}) {
    SCOPED_TRACE(cols);
    const int rows = 5;
    const int64_t gs = cols + (cols % 8 == 0 ? 8 : 3), us = cols + (cols % 8 == 0 ? 16 : 5);
    Bf16Data g = RandomBf16(size_t(rows) * gs, 41 + cols, 0.05f, 6.0f);
    Bf16Data u = RandomBf16(size_t(rows) * us, 42 + cols, 0.05f, 2.0f);
    DeviceBuffer<Bf16> d_g(g.bf), d_u(u.bf), d_out(size_t(rows) * cols);
    CUDA_ASSERT(d_out.Poison());
    STATUS_ASSERT(SwiGlu(d_g.get(), gs, d_u.get(), us, rows, cols, d_out.get(), cols, nullptr));
    std::vector<Bf16> out;
    CUDA_ASSERT(d_out.Download(&out));
    const std::vector<float> gf = Columns(g.f, rows, gs, cols), uf = Columns(u.f, rows, us, cols);
    std::vector<float> ref(gf.size());
    claa::SwiGlu(gf.data(), uf.data(), gf.size(), ref.data());
    EXPECT_TRUE(Compare("SwiGlu cols=" + std::to_string(cols), ToFloat(out), ref, tol));
  }
}

// CPU greedy argmax with claa::Sampler's semantics: ties -> lowest id, NaN never wins.
int32_t CpuArgmax(const float* x, int n) {
  int32_t best = 0;
  float bv = std::isnan(x[0]) ? -std::numeric_limits<float>::infinity() : x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] > bv) {
      bv = x[i];
      best = i;
    }
  }
  return best;
}

TEST_F(GpuKernelCheck, ArgmaxRowsMatchesCpu) {
  const int rows = 6, vocab = 128256;
  const int64_t stride = vocab + 8;
  Bf16Data logits = RandomBf16(size_t(rows) * stride, 51, 0.01f, 20.0f);
  // Row 1: a planted tie (lower id must win); row 2: NaNs around; row 3: all -inf but one NaN.
  auto set = [&](int r, int c, float v) {
    logits.bf[size_t(r) * stride + c] = FloatToBf16(v);
    logits.f[size_t(r) * stride + c] = Bf16ToFloat(FloatToBf16(v));
  };
  set(1, 900, 64.0f);
  set(1, 70000, 64.0f);
  set(2, 0, std::nanf(""));
  set(2, 5, std::nanf(""));
  set(2, 123, 99.0f);
  for (int c = 0; c < vocab; ++c) set(3, c, -std::numeric_limits<float>::infinity());
  set(3, 7, std::nanf(""));
  std::vector<int32_t> ref(rows);
  for (int r = 0; r < rows; ++r) ref[r] = CpuArgmax(&logits.f[size_t(r) * stride], vocab);
  ASSERT_EQ(ref[1], 900);

  DeviceBuffer<Bf16> d_bf(logits.bf);
  DeviceBuffer<float> d_f(logits.f);
  DeviceBuffer<int32_t> d_out(rows);
  std::vector<int32_t> got;
  CUDA_ASSERT(d_out.Poison());
  STATUS_ASSERT(ArgmaxRows(d_bf.get(), stride, rows, vocab, d_out.get(), nullptr));
  CUDA_ASSERT(d_out.Download(&got));
  EXPECT_TRUE(CompareExact("ArgmaxRows bf16", got, ref));
  CUDA_ASSERT(d_out.Poison());
  STATUS_ASSERT(ArgmaxRows(d_f.get(), stride, rows, vocab, d_out.get(), nullptr));
  CUDA_ASSERT(d_out.Download(&got));
  EXPECT_TRUE(CompareExact("ArgmaxRows fp32", got, ref));
}

// ---------------------------------------------------------------------------------------------
// Paged KV cache writes and decode attention.

struct DecodeCase {
  int num_heads, kv_heads, head_dim, block_size, batch;
  std::vector<std::vector<int>> layer_lens;  // [batch][layer]
  bool per_head;
  bool use_workspace;
};

void RunDecodeCase(const DecodeCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads=" << c.num_heads << " kv=" << c.kv_heads
                                    << " d=" << c.head_dim << " bs=" << c.block_size
                                    << " per_head=" << c.per_head << " ws=" << c.use_workspace);
  const int layers = int(c.layer_lens[0].size());
  const int d = c.head_dim, kvh = c.kv_heads;
  const int row = kvh * d;
  // Blocks: each sequence gets a shuffled, disjoint set covering its longest layer.
  std::vector<int> need(c.batch);
  int total_blocks = 0, max_blocks = 0, max_len = 0;
  for (int b = 0; b < c.batch; ++b) {
    const int longest = *std::max_element(c.layer_lens[b].begin(), c.layer_lens[b].end());
    max_len = std::max(max_len, longest);
    need[b] = (longest + c.block_size - 1) / c.block_size;
    total_blocks += need[b];
    max_blocks = std::max(max_blocks, need[b]);
  }
  const int num_blocks = total_blocks + 3;
  std::vector<int> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  std::vector<std::vector<int>> tables(c.batch);
  std::vector<int32_t> flat_tables(size_t(c.batch) * max_blocks, -1);
  for (int b = 0, next = 0; b < c.batch; ++b) {
    tables[b].assign(perm.begin() + next, perm.begin() + next + need[b]);
    next += need[b];
    std::copy(tables[b].begin(), tables[b].end(), flat_tables.begin() + size_t(b) * max_blocks);
  }

  PagedKvCache cpu(layers, num_blocks, c.block_size, kvh, d);
  const size_t layer_elems = size_t(num_blocks) * c.block_size * row;
  DeviceBuffer<Bf16> d_k(layer_elems * layers), d_v(layer_elems * layers);
  ASSERT_TRUE(d_k.ok() && d_v.ok());
  CUDA_ASSERT(d_k.Poison());
  CUDA_ASSERT(d_v.Poison());
  DeviceBuffer<int32_t> d_tables(flat_tables);

  // Fill every layer of every sequence through WritePagedKv (rows with a padded stride), and the
  // CPU cache with the same values.
  const int64_t kv_stride = row + 8;
  for (int l = 0; l < layers; ++l) {
    PagedKvLayer layer{d_k.get() + l * layer_elems, d_v.get() + l * layer_elems, num_blocks,
                       c.block_size, kvh, d};
    for (int b = 0; b < c.batch; ++b) {
      // Per-head mode: fill the whole table; heads read only their own prefix.
      const int fill = c.per_head ? need[b] * c.block_size : c.layer_lens[b][l];
      Bf16Data k = RandomBf16(size_t(fill) * kv_stride, seed + 100 * l + b);
      Bf16Data v = RandomBf16(size_t(fill) * kv_stride, seed + 100 * l + b + 50);
      std::vector<int32_t> slots(fill);
      for (int s = 0; s < fill; ++s) {
        slots[s] = tables[b][s / c.block_size] * c.block_size + s % c.block_size;
        std::copy_n(&k.f[size_t(s) * kv_stride], row, cpu.k_slot(l, tables[b], s));
        std::copy_n(&v.f[size_t(s) * kv_stride], row, cpu.v_slot(l, tables[b], s));
      }
      DeviceBuffer<Bf16> d_kr(k.bf), d_vr(v.bf);
      DeviceBuffer<int32_t> d_slots(slots);
      STATUS_ASSERT(WritePagedKv(layer, d_kr.get(), kv_stride, d_vr.get(), kv_stride,
                                 d_slots.get(), fill, nullptr));
    }
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The pools must now equal the CPU cache on every written slot.
  {
    std::vector<Bf16> pk, pv;
    CUDA_ASSERT(d_k.Download(&pk));
    CUDA_ASSERT(d_v.Download(&pv));
    std::vector<float> got, ref;
    for (int l = 0; l < layers; ++l) {
      for (int b = 0; b < c.batch; ++b) {
        const int fill = c.per_head ? need[b] * c.block_size : c.layer_lens[b][l];
        for (int s = 0; s < fill; ++s) {
          const size_t off = l * layer_elems +
                             (size_t(tables[b][s / c.block_size]) * c.block_size +
                              s % c.block_size) * row;
          for (int i = 0; i < row; ++i) {
            got.push_back(Bf16ToFloat(pk[off + i]));
            ref.push_back(cpu.k_slot(l, tables[b], s)[i]);
            got.push_back(Bf16ToFloat(pv[off + i]));
            ref.push_back(cpu.v_slot(l, tables[b], s)[i]);
          }
        }
      }
    }
    EXPECT_TRUE(CompareExact("WritePagedKv d=" + std::to_string(d), got, ref));
  }

  const int q_dim = c.num_heads * d;
  const int64_t q_stride = q_dim + 8, out_stride = q_dim + 16;
  const int group = c.num_heads / kvh;
  const float scale = 1.0f / std::sqrt(float(d));
  // Outputs are convex combinations of V (|v| <= 1), bf16-rounded; softmax weights in fp32 with
  // exp2f. Compared elementwise and by relative L2.
  const Tol tol{4e-3, 2e-2, 1e-2};
  const size_t ws_bytes = DecodeAttentionWorkspaceBytes(c.batch, c.num_heads, d, max_len);
  DeviceBuffer<uint8_t> d_ws(std::max<size_t>(ws_bytes, 16));
  for (int l = 0; l < layers; ++l) {
    Bf16Data q = RandomBf16(size_t(c.batch) * q_stride, seed + 7 * l + 3, 0.1f, 2.0f);
    // Lengths of this layer: per sequence, or per (sequence, KV head).
    std::vector<int32_t> lens;
    std::vector<std::vector<int>> head_lens(c.batch, std::vector<int>(kvh));
    for (int b = 0; b < c.batch; ++b) {
      if (c.per_head) {
        for (int h = 0; h < kvh; ++h) {
          // Different per head, at least 1, at most the filled length.
          head_lens[b][h] = 1 + int((uint32_t(c.layer_lens[b][l]) * 2654435761u + h * 977u) %
                                    uint32_t(c.layer_lens[b][l]));
          lens.push_back(head_lens[b][h]);
        }
      } else {
        lens.push_back(c.layer_lens[b][l]);
        std::fill(head_lens[b].begin(), head_lens[b].end(), c.layer_lens[b][l]);
      }
    }
    DeviceBuffer<Bf16> d_q(q.bf), d_out(size_t(c.batch) * out_stride);
    DeviceBuffer<int32_t> d_lens(lens);
    CUDA_ASSERT(d_out.Poison());
    DecodeAttentionArgs args;
    args.q = d_q.get();
    args.q_stride = q_stride;
    args.cache = PagedKvLayer{d_k.get() + l * layer_elems, d_v.get() + l * layer_elems,
                              num_blocks, c.block_size, kvh, d};
    args.block_tables = d_tables.get();
    args.max_blocks_per_seq = max_blocks;
    args.kv_lens = d_lens.get();
    args.per_head_lengths = c.per_head;
    args.max_kv_len = max_len;
    args.batch = c.batch;
    args.num_heads = c.num_heads;
    args.scale = scale;
    args.out = d_out.get();
    args.out_stride = out_stride;
    args.workspace = c.use_workspace ? d_ws.get() : nullptr;
    args.workspace_bytes = c.use_workspace ? ws_bytes : 0;
    STATUS_ASSERT(PagedDecodeAttention(args, nullptr));
    std::vector<Bf16> out;
    CUDA_ASSERT(d_out.Download(&out));

    std::vector<float> got, ref;
    AttentionScratch scratch;
    std::vector<float> cpu_out(out_stride);
    for (int b = 0; b < c.batch; ++b) {
      const float* qb = &q.f[size_t(b) * q_stride];
      for (int g = 0; g < kvh; ++g) {
        // The CPU attention has one length per call: run it with this KV head's length and keep
        // this head's group of query heads.
        if (g > 0 && !c.per_head) break;
        PagedCausalAttention(cpu, l, tables[b], head_lens[b][g] - 1, qb, int(q_stride), 1,
                             c.num_heads, cpu_out.data(), int(out_stride), &scratch);
        const int h0 = c.per_head ? g * group : 0;
        const int h1 = c.per_head ? (g + 1) * group : c.num_heads;
        for (int i = h0 * d; i < h1 * d; ++i) {
          got.push_back(Bf16ToFloat(out[size_t(b) * out_stride + i]));
          ref.push_back(cpu_out[i]);
        }
      }
    }
    EXPECT_TRUE(Compare("PagedDecode d=" + std::to_string(d) + " g=" + std::to_string(group) +
                            " layer=" + std::to_string(l) + (c.per_head ? " perhead" : "") +
                            (c.use_workspace ? " split" : " nosplit"),
                        got, ref, tol));
  }
}

TEST_F(GpuKernelCheck, PagedDecodeAttentionLlamaShape) {
  // Llama-3.1-8B attention shape (32 heads, 8 KV heads, d 128); layers of different lengths as
  // CLAA leaves them; a long one to exercise the split over keys.
  RunDecodeCase({32, 8, 128, 16, 3, {{1000, 517, 33}, {1, 70, 9}, {4100, 2050, 410}}, false, true},
                61);
  RunDecodeCase({32, 8, 128, 16, 2, {{1000, 517}, {4100, 300}}, false, false}, 62);
}

TEST_F(GpuKernelCheck, PagedDecodeAttentionPerHeadLengths) {
  RunDecodeCase({32, 8, 128, 16, 2, {{900, 300}, {2500, 64}}, true, true}, 63);
}

TEST_F(GpuKernelCheck, PagedDecodeAttentionOtherShapes) {
  // d 64 with GQA 2 (stories260K-like), MHA, GQA 3 (falls back to one head per block), odd
  // block size.
  RunDecodeCase({8, 4, 64, 16, 2, {{300, 45}, {7, 129}}, false, true}, 64);
  RunDecodeCase({4, 4, 64, 8, 2, {{33, 1}, {260, 100}}, false, true}, 65);
  RunDecodeCase({6, 2, 128, 32, 2, {{600}, {77}}, true, true}, 66);
}

// ---------------------------------------------------------------------------------------------
// Flash-attention prefill.

struct PrefillCase {
  int num_heads, kv_heads, head_dim;
  std::vector<int> q_lens, k_lens;  // k_len >= q_len (chunked prefill when greater)
};

void RunPrefillCase(const PrefillCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads=" << c.num_heads << " kv=" << c.kv_heads
                                    << " d=" << c.head_dim);
  const int d = c.head_dim, batch = int(c.q_lens.size());
  std::vector<int32_t> cu_q(batch + 1, 0), cu_k(batch + 1, 0);
  for (int b = 0; b < batch; ++b) {
    cu_q[b + 1] = cu_q[b] + c.q_lens[b];
    cu_k[b + 1] = cu_k[b] + c.k_lens[b];
  }
  const int total_q = cu_q[batch], total_k = cu_k[batch];
  const int max_q = *std::max_element(c.q_lens.begin(), c.q_lens.end());
  const int64_t q_stride = int64_t(c.num_heads) * d + 8;  // slices of wider rows
  const int64_t kv_stride = int64_t(c.kv_heads) * d + 16;
  const int64_t out_stride = int64_t(c.num_heads) * d;
  // |q| up to 2 makes the softmax peaky, so the running-max rescaling is exercised.
  Bf16Data q = RandomBf16(size_t(total_q) * q_stride, seed, 0.1f, 2.0f);
  Bf16Data k = RandomBf16(size_t(total_k) * kv_stride, seed + 1);
  Bf16Data v = RandomBf16(size_t(total_k) * kv_stride, seed + 2);
  DeviceBuffer<Bf16> d_q(q.bf), d_k(k.bf), d_v(v.bf), d_out(size_t(total_q) * out_stride);
  DeviceBuffer<int32_t> d_cuq(cu_q), d_cuk(cu_k);
  ASSERT_TRUE(d_q.ok() && d_k.ok() && d_v.ok() && d_out.ok());
  CUDA_ASSERT(d_out.Poison());
  VarlenAttentionArgs args;
  args.q = d_q.get();
  args.q_stride = q_stride;
  args.k = d_k.get();
  args.k_stride = kv_stride;
  args.v = d_v.get();
  args.v_stride = kv_stride;
  args.out = d_out.get();
  args.out_stride = out_stride;
  args.cu_seqlens_q = d_cuq.get();
  args.cu_seqlens_k = c.q_lens == c.k_lens ? nullptr : d_cuk.get();
  args.batch = batch;
  args.max_seqlen_q = max_q;
  args.num_heads = c.num_heads;
  args.num_kv_heads = c.kv_heads;
  args.head_dim = d;
  args.scale = 1.0f / std::sqrt(float(d));
  STATUS_ASSERT(FlashAttentionPrefill(args, nullptr));
  std::vector<Bf16> out;
  CUDA_ASSERT(d_out.Download(&out));

  // CPU: each sequence's K/V in a paged cache, its queries as the last q_len of k_len tokens.
  std::vector<float> ref(size_t(total_q) * out_stride);
  const int bs = 16;
  for (int b = 0; b < batch; ++b) {
    const int nblocks = (c.k_lens[b] + bs - 1) / bs;
    PagedKvCache cache(1, nblocks, bs, c.kv_heads, d);
    std::vector<int> table(nblocks);
    std::iota(table.begin(), table.end(), 0);
    for (int s = 0; s < c.k_lens[b]; ++s) {
      std::copy_n(&k.f[size_t(cu_k[b] + s) * kv_stride], c.kv_heads * d,
                  cache.k_slot(0, table, s));
      std::copy_n(&v.f[size_t(cu_k[b] + s) * kv_stride], c.kv_heads * d,
                  cache.v_slot(0, table, s));
    }
    AttentionScratch scratch;
    PagedCausalAttention(cache, 0, table, c.k_lens[b] - c.q_lens[b], &q.f[size_t(cu_q[b]) * q_stride],
                         int(q_stride), c.q_lens[b], c.num_heads, &ref[size_t(cu_q[b]) * out_stride],
                         int(out_stride), &scratch);
  }
  // Outputs are convex combinations of V (|v| <= 1) in bf16; P is rounded to bf16 before P.V
  // (as in FlashAttention), which costs ~2^-9 relative per term.
  const Tol tol{4e-3, 2e-2, 1e-2};
  std::string lens;
  for (int b = 0; b < batch; ++b) {
    if (b > 0) lens += ",";
    lens += std::to_string(c.q_lens[b]);
    if (c.k_lens[b] != c.q_lens[b]) lens += "/" + std::to_string(c.k_lens[b]);
  }
  EXPECT_TRUE(Compare("FlashPrefill d=" + std::to_string(d) + " h=" + std::to_string(c.num_heads) +
                          "/" + std::to_string(c.kv_heads) + " L=" + lens,
                      ToFloat(out), ref, tol));
}

TEST_F(GpuKernelCheck, FlashAttentionPrefillVarlen) {
  RunPrefillCase({8, 2, 128, {1, 200, 1000, 129}, {1, 200, 1000, 129}}, 71);
  RunPrefillCase({4, 4, 64, {64, 333, 1}, {64, 333, 1}}, 72);
  RunPrefillCase({6, 2, 64, {2048}, {2048}}, 73);
}

TEST_F(GpuKernelCheck, FlashAttentionPrefillChunked) {
  // New tokens after cached ones: bottom-right causal alignment.
  RunPrefillCase({8, 2, 128, {100, 1, 300}, {612, 50, 301}}, 74);
  RunPrefillCase({4, 2, 64, {17, 256}, {1000, 256}}, 75);
}

// ---------------------------------------------------------------------------------------------
// CLAA scores.

// Straightforward CPU reference of the window score (DESIGN.md §2), in double:
// out[g][j] = sum_{h in group g} pool(sum_i softmax_i(j)), j < prefix.
std::vector<float> CpuWindowScores(const std::vector<float>& qw, int64_t q_stride,
                                   const std::vector<float>& k, int64_t k_stride, int len,
                                   int window, int heads, int kv_heads, int d, float scale,
                                   int pool) {
  const int prefix = len - window, group = heads / kv_heads;
  std::vector<float> out(size_t(kv_heads) * prefix, 0.0f);
  std::vector<double> logits(len), sum(prefix);
  for (int h = 0; h < heads; ++h) {
    const int g = h / group;
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int i = 0; i < window; ++i) {
      const int visible = prefix + i + 1;
      double mx = -1e300;
      for (int j = 0; j < visible; ++j) {
        double dot = 0.0;
        for (int e = 0; e < d; ++e) {
          dot += double(qw[size_t(i) * q_stride + size_t(h) * d + e]) *
                 k[size_t(j) * k_stride + size_t(g) * d + e];
        }
        logits[j] = dot * scale;
        mx = std::max(mx, logits[j]);
      }
      double z = 0.0;
      for (int j = 0; j < visible; ++j) z += std::exp(logits[j] - mx);
      for (int j = 0; j < prefix; ++j) sum[j] += std::exp(logits[j] - mx) / z;
    }
    // avg_pool1d(kernel, stride 1, padding kernel / 2, count_include_pad=True).
    const int r = pool / 2;
    for (int j = 0; j < prefix; ++j) {
      double s = 0.0;
      for (int t = std::max(0, j - r); t <= std::min(prefix - 1, j + r); ++t) s += sum[t];
      out[size_t(g) * prefix + j] += float(s / pool);
    }
  }
  return out;
}

// z-score rows (population std, constant row -> 0), max over rows (claa::ClaaScorer).
std::vector<float> CpuZScoreMax(const std::vector<float>& x, int rows, int len, int64_t stride) {
  std::vector<float> best(len, -std::numeric_limits<float>::infinity());
  for (int r = 0; r < rows; ++r) {
    const float* row = &x[size_t(r) * stride];
    double mean = 0.0, sq = 0.0;
    for (int j = 0; j < len; ++j) mean += row[j];
    mean /= len;
    for (int j = 0; j < len; ++j) sq += (row[j] - mean) * (row[j] - mean);
    const double sd = std::sqrt(sq / len);
    const double inv = sd > 0.0 ? 1.0 / sd : 0.0;
    for (int j = 0; j < len; ++j) best[j] = std::max(best[j], float((row[j] - mean) * inv));
  }
  return best;
}

// Top k indices, ascending; ties -> lower index; NaN lowest (claa::TopIndicesAscending).
std::vector<int32_t> CpuTopK(const float* s, int n, int k) {
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int a, int b) {
    const float x = s[a], y = s[b];
    const bool xn = std::isnan(x), yn = std::isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a < b;
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

struct WindowCase {
  int len, window, heads, kv_heads, d, pool;
};

// Runs the GPU window score; returns it ([kv_heads][prefix]) through *out and the CPU reference
// through *ref.
void RunWindowScores(const WindowCase& c, uint32_t seed, std::vector<float>* out,
                     std::vector<float>* ref) {
  const int prefix = c.len - c.window;
  const int64_t q_stride = int64_t(c.heads) * c.d + 8, k_stride = int64_t(c.kv_heads) * c.d;
  Bf16Data qw = RandomBf16(size_t(c.window) * q_stride, seed, 0.1f, 2.0f);
  Bf16Data k = RandomBf16(size_t(c.len) * k_stride, seed + 1);
  const float scale = 1.0f / std::sqrt(float(c.d));
  const int64_t out_stride = prefix + 3;
  DeviceBuffer<Bf16> d_q(qw.bf), d_k(k.bf);
  DeviceBuffer<float> d_out(size_t(c.kv_heads) * out_stride);
  const size_t ws = WindowScoresWorkspaceBytes(c.len, c.window, c.heads, c.kv_heads);
  DeviceBuffer<uint8_t> d_ws(ws);
  ASSERT_TRUE(d_q.ok() && d_k.ok() && d_out.ok() && d_ws.ok());
  CUDA_ASSERT(d_out.Poison());
  WindowScoresArgs args;
  args.q_window = d_q.get();
  args.q_stride = q_stride;
  args.k = d_k.get();
  args.k_stride = k_stride;
  args.prompt_len = c.len;
  args.window = c.window;
  args.num_heads = c.heads;
  args.num_kv_heads = c.kv_heads;
  args.head_dim = c.d;
  args.scale = scale;
  args.pool_kernel = c.pool;
  args.out = d_out.get();
  args.out_stride = out_stride;
  args.workspace = d_ws.get();
  args.workspace_bytes = ws;
  STATUS_ASSERT(WindowScores(args, nullptr));
  std::vector<float> raw;
  CUDA_ASSERT(d_out.Download(&raw));
  *out = Columns(raw, c.kv_heads, out_stride, prefix);
  *ref = CpuWindowScores(qw.f, q_stride, k.f, k_stride, c.len, c.window, c.heads, c.kv_heads,
                         c.d, scale, c.pool);
}

TEST_F(GpuKernelCheck, WindowScoresMatchCpuReference) {
  // No bf16 rounding on the output: fp32 dot products and softmax against a double reference.
  const Tol tol{1e-6, 2e-4, 1e-4};
  for (const WindowCase& c : {WindowCase{1000, 8, 8, 2, 128, 7}, WindowCase{300, 16, 4, 4, 64, 5},
                              WindowCase{77, 32, 6, 3, 128, 1}, WindowCase{9, 8, 2, 1, 64, 7}}) {
    SCOPED_TRACE(c.len);
    std::vector<float> got, ref;
    RunWindowScores(c, 81 + c.len, &got, &ref);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(Compare("WindowScores L=" + std::to_string(c.len) + " w=" +
                            std::to_string(c.window) + " d=" + std::to_string(c.d) + " pool=" +
                            std::to_string(c.pool),
                        got, ref, tol));
  }
}

TEST_F(GpuKernelCheck, ZScoreMaxMatchesCpuReference) {
  const int rows = 32, len = 5000;
  const int64_t stride = len + 5;
  std::mt19937 rng(91);
  std::uniform_real_distribution<float> u(0.001f, 0.05f);
  std::vector<float> x(size_t(rows) * stride);
  for (float& v : x) v = u(rng);
  std::fill_n(&x[size_t(7) * stride], len, 0.25f);  // constant row: contributes zeros
  DeviceBuffer<float> d_x(x), d_out(len);
  DeviceBuffer<double> d_ws(2 * rows);
  CUDA_ASSERT(d_out.Poison());
  STATUS_ASSERT(ZScoreMax(d_x.get(), rows, len, stride, d_out.get(), d_ws.get(),
                          d_ws.size() * sizeof(double), nullptr));
  std::vector<float> got;
  CUDA_ASSERT(d_out.Download(&got));
  // Both sides compute in double and round once; only the summation order differs.
  EXPECT_TRUE(Compare("ZScoreMax 32x5000", got, CpuZScoreMax(x, rows, len, stride),
                      Tol{1e-5, 1e-5, 1e-6}));
}

TEST_F(GpuKernelCheck, TopKAscendingMatchesCpuReference) {
  const int rows = 3, n = 5000;
  const int64_t stride = n + 3;
  std::mt19937 rng(101);
  std::vector<float> s(size_t(rows) * stride);
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      float v = float(int(rng() % 200) - 100) / 16.0f;  // many exact ties
      if (r == 1 && j % 97 == 0) v = std::nanf("");
      if (r == 2 && j % 50 == 0) v = (j % 100 == 0) ? -0.0f : 0.0f;  // -0 == +0
      s[size_t(r) * stride + j] = v;
    }
  }
  DeviceBuffer<float> d_s(s);
  for (const int k : {1, 100, 2500, 4999, 5000}) {
    const int64_t out_stride = k + 1;
    DeviceBuffer<int32_t> d_out(size_t(rows) * out_stride);
    CUDA_ASSERT(d_out.Poison());
    STATUS_ASSERT(TopKAscending(d_s.get(), rows, n, stride, k, d_out.get(), out_stride, nullptr));
    std::vector<int32_t> got_all, got, ref;
    CUDA_ASSERT(d_out.Download(&got_all));
    for (int r = 0; r < rows; ++r) {
      got.insert(got.end(), got_all.begin() + r * out_stride, got_all.begin() + r * out_stride + k);
      const std::vector<int32_t> rr = CpuTopK(&s[size_t(r) * stride], n, k);
      ref.insert(ref.end(), rr.begin(), rr.end());
    }
    EXPECT_TRUE(CompareExact("TopKAscending 3x5000 k=" + std::to_string(k), got, ref));
  }
}

TEST_F(GpuKernelCheck, ClaaSelectionEndToEnd) {
  // Window scores of the last n = 4 layers -> z-score / max -> top (keep - window) prefix tokens,
  // GPU vs CPU. The CPU reference is double precision, so near-ties at the selection boundary
  // could in principle flip; random data has none at this size, and the check demands equality.
  const WindowCase c{2000, 8, 8, 2, 128, 7};
  const int layers = 4, prefix = c.len - c.window, keep = 2000 / 5 - c.window;
  std::vector<float> gpu_rows, cpu_rows;
  for (int l = 0; l < layers; ++l) {
    std::vector<float> got, ref;
    RunWindowScores(c, 111 + 13 * l, &got, &ref);
    if (HasFatalFailure()) return;
    gpu_rows.insert(gpu_rows.end(), got.begin(), got.end());
    cpu_rows.insert(cpu_rows.end(), ref.begin(), ref.end());
  }
  const int rows = layers * c.kv_heads;
  DeviceBuffer<float> d_rows(gpu_rows), d_max(prefix);
  DeviceBuffer<double> d_ws(2 * rows);
  DeviceBuffer<int32_t> d_sel(keep);
  CUDA_ASSERT(d_sel.Poison());
  STATUS_ASSERT(ZScoreMax(d_rows.get(), rows, prefix, prefix, d_max.get(), d_ws.get(),
                          d_ws.size() * sizeof(double), nullptr));
  STATUS_ASSERT(TopKAscending(d_max.get(), 1, prefix, prefix, keep, d_sel.get(), keep, nullptr));
  std::vector<int32_t> sel;
  CUDA_ASSERT(d_sel.Download(&sel));
  const std::vector<float> cpu_max = CpuZScoreMax(cpu_rows, rows, prefix, prefix);
  EXPECT_TRUE(CompareExact("CLAA selection L=2000 keep=20%", sel,
                           CpuTopK(cpu_max.data(), prefix, keep)));
}

TEST_F(GpuKernelCheck, CompactKvByHeadMatchesIndexLists) {
  const int kvh = 8, d = 128, bs = 16, len = 700, count = 150;
  const int row = kvh * d;
  Bf16Data k = RandomBf16(size_t(len) * row, 121), v = RandomBf16(size_t(len) * row, 122);
  // Per-head sorted index lists (each head keeps different tokens).
  std::vector<int32_t> idx(size_t(kvh) * count);
  std::mt19937 rng(123);
  for (int h = 0; h < kvh; ++h) {
    std::vector<int> all(len);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::sort(all.begin(), all.begin() + count);
    std::copy_n(all.begin(), count, idx.begin() + size_t(h) * count);
  }
  const int dst_blocks = (count + bs - 1) / bs, src_blocks = (len + bs - 1) / bs;
  const int pool_blocks = dst_blocks + src_blocks + 4;
  std::vector<int32_t> perm(pool_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> src_table(perm.begin(), perm.begin() + src_blocks);
  std::vector<int32_t> dst_table(perm.begin() + src_blocks, perm.begin() + src_blocks + dst_blocks);

  const size_t pool_elems = size_t(pool_blocks) * bs * row;
  DeviceBuffer<Bf16> d_k(k.bf), d_v(v.bf), d_pk(pool_elems), d_pv(pool_elems);
  DeviceBuffer<int32_t> d_idx(idx), d_src_table(src_table), d_dst_table(dst_table);
  for (const bool paged_src : {false, true}) {
    CUDA_ASSERT(d_pk.Poison());
    CUDA_ASSERT(d_pv.Poison());
    PagedKvLayer pool{d_pk.get(), d_pv.get(), pool_blocks, bs, kvh, d};
    if (paged_src) {
      // Put the source into the pool first (through WritePagedKv), then compact pool -> pool.
      std::vector<int32_t> slots(len);
      for (int s = 0; s < len; ++s) slots[s] = src_table[s / bs] * bs + s % bs;
      DeviceBuffer<int32_t> d_slots(slots);
      STATUS_ASSERT(WritePagedKv(pool, d_k.get(), row, d_v.get(), row, d_slots.get(), len,
                                 nullptr));
      STATUS_ASSERT(CompactKvByHead(d_pk.get(), d_pv.get(), 0, d_src_table.get(), d_idx.get(),
                                    count, pool, d_dst_table.get(), nullptr));
    } else {
      STATUS_ASSERT(CompactKvByHead(d_k.get(), d_v.get(), row, nullptr, d_idx.get(), count, pool,
                                    d_dst_table.get(), nullptr));
    }
    std::vector<Bf16> pk, pv;
    CUDA_ASSERT(d_pk.Download(&pk));
    CUDA_ASSERT(d_pv.Download(&pv));
    std::vector<float> got, ref;
    for (int h = 0; h < kvh; ++h) {
      for (int t = 0; t < count; ++t) {
        const size_t dst = ((size_t(dst_table[t / bs]) * bs + t % bs) * kvh + h) * d;
        const size_t src = size_t(idx[size_t(h) * count + t]) * row + size_t(h) * d;
        for (int e = 0; e < d; ++e) {
          got.push_back(Bf16ToFloat(pk[dst + e]));
          ref.push_back(k.f[src + e]);
          got.push_back(Bf16ToFloat(pv[dst + e]));
          ref.push_back(v.f[src + e]);
        }
      }
    }
    EXPECT_TRUE(CompareExact(std::string("CompactKvByHead ") + (paged_src ? "paged" : "contig"),
                             got, ref));
  }
}

// ---------------------------------------------------------------------------------------------
// GEMM.

TEST_F(GpuKernelCheck, BlasLtGemmMatchesCpuGemm) {
  auto gemm_or = BlasLtGemm::Create();
  ASSERT_TRUE(gemm_or.ok()) << gemm_or.status();
  BlasLtGemm& gemm = **gemm_or;
  struct Case {
    int m, n, k;
    int64_t lda_pad;
    bool fp32_out, accumulate;
  };
  for (const Case& c : {Case{37, 512, 4096, 0, false, false}, Case{1, 1024, 4096, 0, true, false},
                        Case{300, 1000, 512, 8, false, true}, Case{64, 128256 / 16, 512, 0, true, true},
                        Case{5, 24, 40, 4, false, false}}) {
    SCOPED_TRACE(::testing::Message() << c.m << "x" << c.n << "x" << c.k);
    const int64_t lda = c.k + c.lda_pad, ldw = c.k, ldc = c.n + (c.fp32_out ? 4 : 8);
    Bf16Data a = RandomBf16(size_t(c.m) * lda, 131 + c.m);
    Bf16Data w = RandomBf16(size_t(c.n) * ldw, 132 + c.n);
    Bf16Data c0 = RandomBf16(size_t(c.m) * ldc, 133 + c.k);
    std::vector<float> ref = Columns(c0.f, c.m, ldc, c.n);
    const std::vector<float> af = Columns(a.f, c.m, lda, c.k);
    if (!c.accumulate) std::fill(ref.begin(), ref.end(), 0.0f);
    Gemm(af.data(), c.m, c.k, w.f.data(), c.n, ref.data(), c.accumulate);
    DeviceBuffer<Bf16> d_a(a.bf), d_w(w.bf);
    std::vector<float> got;
    if (c.fp32_out) {
      DeviceBuffer<float> d_c(c0.f);
      if (!c.accumulate) CUDA_ASSERT(d_c.Poison());  // beta = 0 must not read C
      STATUS_ASSERT(gemm.Run(d_a.get(), lda, d_w.get(), ldw, d_c.get(), ldc, c.m, c.n, c.k,
                             c.accumulate ? 1.0f : 0.0f, nullptr));
      CUDA_ASSERT(d_c.Download(&got));
      got = Columns(got, c.m, ldc, c.n);
    } else {
      DeviceBuffer<Bf16> d_c(c0.bf);
      if (!c.accumulate) CUDA_ASSERT(d_c.Poison());
      STATUS_ASSERT(gemm.Run(d_a.get(), lda, d_w.get(), ldw, d_c.get(), ldc, c.m, c.n, c.k,
                             c.accumulate ? 1.0f : 0.0f, nullptr));
      std::vector<Bf16> raw;
      CUDA_ASSERT(d_c.Download(&raw));
      got = Columns(ToFloat(raw), c.m, ldc, c.n);
    }
    // Sums of k products of |x| <= 1: |C| ~ sqrt(k) / 3. fp32 accumulation in a different order
    // (~1e-6 relative to the sum of |terms|), plus bf16 output rounding (2^-9) when bf16.
    const double scale = std::sqrt(double(c.k)) / 3.0;
    const Tol tol = c.fp32_out ? Tol{1e-4 * scale, 1e-4, 1e-5} : Tol{1e-2 * scale, 1e-2, 5e-3};
    EXPECT_TRUE(Compare("BlasLtGemm " + std::to_string(c.m) + "x" + std::to_string(c.n) + "x" +
                            std::to_string(c.k) + (c.fp32_out ? " f32" : " bf16") +
                            (c.accumulate ? " +C" : ""),
                        got, ref, tol));
  }
}


// ---------------------------------------------------------------------------------------------
// AttnCache (kernels/attention_maps.h): capture = GroupScores + CausalSoftmaxPackFp16 against the
// engine's ComputeMaps; reuse = UnpackMapsBf16 + MapsTimesV against ApplyCachedMaps (head_dim 64,
// 128 and 40; n = 1100 spans three of MapsTimesV's 512-row GEMMs). GQA 8/2 heads, Q/K/V inside one
// fused QKV row (strided); the reused maps come from a longer entry (head stride
// Triangle(n + 23): its first n rows serve n tokens).

struct MapsCase {
  int head_dim;
  int n;
};

void RunMapsCase(MapsGemm& gemm, const MapsCase& c) {
  constexpr int kHeads = 8, kKvHeads = 2, kGroup = kHeads / kKvHeads;
  const int d = c.head_dim, n = c.n;
  const int q_dim = kHeads * d, kv_dim = kKvHeads * d, qkv_dim = q_dim + 2 * kv_dim;
  const std::string tag = " d=" + std::to_string(d) + " n=" + std::to_string(n);
  const Bf16Data qkv = RandomBf16(size_t(n) * qkv_dim, 900 + n + d);
  DeviceBuffer<Bf16> d_qkv(qkv.bf);
  const int64_t tri = MapsTriangle(n);

  // Capture.
  PromptQk qk{qkv.f.data(), qkv_dim, qkv.f.data() + q_dim, qkv_dim, n, kHeads, kKvHeads, d};
  const attncache::MapsShape shape{1, kHeads, n};
  std::vector<uint16_t> ref_maps(shape.values());
  attncache::ComputeMaps(qk, 0, 0, shape, ref_maps.data());
  DeviceBuffer<float> scores(size_t(kKvHeads) * n * n);
  DeviceBuffer<uint16_t> d_maps(shape.values());
  ASSERT_EQ(d_maps.Poison(), cudaSuccess);
  for (int member = 0; member < kGroup; ++member) {
    STATUS_ASSERT(gemm.GroupScores(d_qkv.get(), qkv_dim, d_qkv.get() + q_dim, qkv_dim, n, kHeads,
                                   kKvHeads, d, member, 1.0f / std::sqrt(float(d)), scores.get(),
                                   nullptr));
    STATUS_ASSERT(CausalSoftmaxPackFp16(scores.get(), int64_t(n) * n, kKvHeads, n,
                                        d_maps.get() + member * tri, kGroup * tri, nullptr));
  }
  std::vector<uint16_t> got_maps;
  ASSERT_EQ(d_maps.Download(&got_maps), cudaSuccess);
  std::vector<float> got_f(got_maps.size()), ref_f(ref_maps.size());
  attncache::HalfToFloat(got_maps.data(), got_maps.size(), got_f.data());
  attncache::HalfToFloat(ref_maps.data(), ref_maps.size(), ref_f.data());
  // Same bf16 inputs: fp32 sums in another order, then one fp16 rounding on each side (2^-11).
  EXPECT_TRUE(Compare("CausalSoftmaxPackFp16" + tag, got_f, ref_f, Tol{2e-5, 2e-3, 1e-3}));

  // Reuse: maps of a longer entry (random rows summing to 1) serve n tokens.
  const int len = n + 23;
  const attncache::MapsShape entry{1, kHeads, len};
  std::vector<uint16_t> packed(entry.values());
  const Bf16Data noise = RandomBf16(entry.values(), 77 + n);
  for (int h = 0; h < kHeads; ++h) {
    for (int t = 0; t < len; ++t) {
      const size_t row = entry.offset(0, h) + attncache::MapsShape::Triangle(t);
      std::vector<float> p(t + 1);
      float sum = 0;
      for (int j = 0; j <= t; ++j) sum += p[j] = std::fabs(noise.f[row + j]);
      for (float& x : p) x /= sum;
      attncache::FloatToHalf(p.data(), p.size(), &packed[row]);
    }
  }
  std::vector<float> ref_out(size_t(n) * q_dim, 0.f);
  attncache::ApplyCachedMaps(attncache::MapsView{packed.data(), entry}, 0, 0, kHeads, kKvHeads, d,
                             qkv.f.data() + q_dim + kv_dim, qkv_dim, n, ref_out.data(), q_dim);
  DeviceBuffer<uint16_t> d_packed(packed);
  DeviceBuffer<Bf16> dense(size_t(kHeads) * n * n), d_out(size_t(n) * q_dim);
  ASSERT_EQ(dense.Poison(), cudaSuccess);
  ASSERT_EQ(d_out.Poison(), cudaSuccess);
  STATUS_ASSERT(UnpackMapsBf16(d_packed.get(), MapsTriangle(len), kHeads, n, dense.get(),
                               nullptr));
  STATUS_ASSERT(gemm.MapsTimesV(dense.get(), d_qkv.get() + q_dim + kv_dim, qkv_dim, n, kHeads,
                                kKvHeads, d, d_out.get(), q_dim, nullptr));
  std::vector<Bf16> got_out;
  ASSERT_EQ(d_out.Download(&got_out), cudaSuccess);
  // The GPU rounds the fp16 probabilities to bf16 (2^-9 relative) and its output to bf16.
  EXPECT_TRUE(Compare("UnpackMapsBf16 + MapsTimesV" + tag, ToFloat(got_out), ref_out,
                      Tol{2e-3, 1e-2, 1e-2}));
}

TEST_F(GpuKernelCheck, AttentionMapsCaptureAndReuseMatchCpu) {
  auto gemm_or = MapsGemm::Create();
  ASSERT_TRUE(gemm_or.ok()) << gemm_or.status();
  for (const MapsCase& c : {MapsCase{64, 1}, MapsCase{64, 77}, MapsCase{64, 300},
                            MapsCase{128, 200}, MapsCase{40, 130}, MapsCase{64, 1100}}) {
    SCOPED_TRACE(::testing::Message() << "head_dim " << c.head_dim << " n " << c.n);
    RunMapsCase(**gemm_or, c);
  }
}

// ---------------------------------------------------------------------------------------------
// Timing (only with CLAA_GPU_CHECK_TIMING=1): CUDA events around repeated launches after a
// warm-up, median of the repeats, random inputs.

class GpuKernelTiming : public GpuKernelCheck {
 protected:
  void SetUp() override {
    GpuKernelCheck::SetUp();
    if (IsSkipped()) return;
    const char* env = std::getenv("CLAA_GPU_CHECK_TIMING");
    if (env == nullptr || std::string(env) != "1") {
      GTEST_SKIP() << "timing runs only with CLAA_GPU_CHECK_TIMING=1";
    }
  }

  // Median milliseconds of `reps` runs of fn (after `warmup` runs).
  template <typename Fn>
  double MedianMs(Fn fn, int warmup = 3, int reps = 10) {
    for (int i = 0; i < warmup; ++i) fn();
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; ++i) {
      cudaEventRecord(start);
      fn();
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      cudaEventElapsedTime(&ms[i], start, stop);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
  }
};

TEST_F(GpuKernelTiming, FlashPrefillAndGemm) {
  std::printf("\n%-52s %10s %12s\n", "timing (median of 10, CUDA events)", "ms", "TFLOP/s|GB/s");
  // Attention: Llama-3.1-8B heads (32 q, 8 kv, d 128), one sequence; causal flops 4 s^2 d h / 2.
  for (const int s : {4096, 16384}) {
    const int h = 32, kvh = 8, d = 128;
    Bf16Data q = RandomBf16(size_t(s) * h * d, 141), kv = RandomBf16(size_t(s) * kvh * d, 142);
    DeviceBuffer<Bf16> d_q(q.bf), d_k(kv.bf), d_v(kv.bf), d_o(size_t(s) * h * d);
    DeviceBuffer<int32_t> d_cu(std::vector<int32_t>{0, s});
    VarlenAttentionArgs a;
    a.q = d_q.get();
    a.q_stride = h * d;
    a.k = d_k.get();
    a.k_stride = kvh * d;
    a.v = d_v.get();
    a.v_stride = kvh * d;
    a.out = d_o.get();
    a.out_stride = h * d;
    a.cu_seqlens_q = d_cu.get();
    a.batch = 1;
    a.max_seqlen_q = s;
    a.num_heads = h;
    a.num_kv_heads = kvh;
    a.head_dim = d;
    a.scale = 1.0f / std::sqrt(float(d));
    absl::Status st;
    const double ms = MedianMs([&] { st.Update(FlashAttentionPrefill(a, nullptr)); });
    ASSERT_TRUE(st.ok()) << st;
    const double flops = 4.0 * s * double(s) * d * h / 2;
    std::printf("%-52s %10.3f %12.1f\n",
                ("FlashPrefill causal s=" + std::to_string(s) + " h=32/8 d=128").c_str(), ms,
                flops / ms / 1e9);
  }
  // Decode: batch 1 at 32k context and batch 16 at 4k; bytes = K + V of every cached token.
  for (const auto& [batch, len] : {std::pair{1, 32768}, std::pair{16, 4096}}) {
    const int h = 32, kvh = 8, d = 128, bs = 16;
    const int blocks_per_seq = len / bs, nblocks = batch * blocks_per_seq;
    const size_t pool = size_t(nblocks) * bs * kvh * d;
    Bf16Data kv = RandomBf16(pool, 143);
    Bf16Data q = RandomBf16(size_t(batch) * h * d, 144);
    std::vector<int32_t> table(nblocks), lens(batch, len);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(145));
    DeviceBuffer<Bf16> d_k(kv.bf), d_v(kv.bf), d_q(q.bf), d_o(size_t(batch) * h * d);
    DeviceBuffer<int32_t> d_t(table), d_l(lens);
    const size_t ws = DecodeAttentionWorkspaceBytes(batch, h, d, len);
    DeviceBuffer<uint8_t> d_ws(ws);
    DecodeAttentionArgs a;
    a.q = d_q.get();
    a.q_stride = h * d;
    a.cache = PagedKvLayer{d_k.get(), d_v.get(), nblocks, bs, kvh, d};
    a.block_tables = d_t.get();
    a.max_blocks_per_seq = blocks_per_seq;
    a.kv_lens = d_l.get();
    a.max_kv_len = len;
    a.batch = batch;
    a.num_heads = h;
    a.scale = 1.0f / std::sqrt(float(d));
    a.out = d_o.get();
    a.out_stride = h * d;
    a.workspace = d_ws.get();
    a.workspace_bytes = ws;
    absl::Status st;
    const double ms = MedianMs([&] { st.Update(PagedDecodeAttention(a, nullptr)); });
    ASSERT_TRUE(st.ok()) << st;
    const double bytes = 2.0 * batch * len * kvh * d * 2;
    std::printf("%-52s %10.3f %12.1f\n",
                ("PagedDecode len=" + std::to_string(len) + " batch=" + std::to_string(batch) +
                 " h=32/8 d=128").c_str(),
                ms, bytes / ms / 1e6);
  }
  // GEMM 8192^3 (bf16 peak reference) and a Llama MLP up-projection at 4k tokens.
  auto gemm_or = BlasLtGemm::Create();
  ASSERT_TRUE(gemm_or.ok()) << gemm_or.status();
  for (const auto& [m, n, k] : {std::tuple{8192, 8192, 8192}, std::tuple{4096, 28672, 4096}}) {
    Bf16Data a = RandomBf16(size_t(m) * k, 146), w = RandomBf16(size_t(n) * k, 147);
    DeviceBuffer<Bf16> d_a(a.bf), d_w(w.bf), d_c(size_t(m) * n);
    absl::Status st;
    const double ms = MedianMs(
        [&] { st.Update((*gemm_or)->Run(d_a.get(), k, d_w.get(), k, d_c.get(), n, m, n, k, 0.0f,
                                        nullptr)); });
    ASSERT_TRUE(st.ok()) << st;
    std::printf("%-52s %10.3f %12.1f\n",
                ("BlasLtGemm bf16 " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                 std::to_string(k)).c_str(),
                ms, 2.0 * m * n * double(k) / ms / 1e9);
  }
  // Window scores at 32k (one layer, Llama heads).
  {
    const int len = 32768, h = 32, kvh = 8, d = 128, w = 8;
    Bf16Data q = RandomBf16(size_t(w) * h * d, 148), k = RandomBf16(size_t(len) * kvh * d, 149);
    DeviceBuffer<Bf16> d_q(q.bf), d_k(k.bf);
    DeviceBuffer<float> d_o(size_t(kvh) * (len - w));
    const size_t ws = WindowScoresWorkspaceBytes(len, w, h, kvh);
    DeviceBuffer<uint8_t> d_ws(ws);
    WindowScoresArgs a;
    a.q_window = d_q.get();
    a.q_stride = h * d;
    a.k = d_k.get();
    a.k_stride = kvh * d;
    a.prompt_len = len;
    a.window = w;
    a.num_heads = h;
    a.num_kv_heads = kvh;
    a.head_dim = d;
    a.scale = 1.0f / std::sqrt(float(d));
    a.out = d_o.get();
    a.out_stride = len - w;
    a.workspace = d_ws.get();
    a.workspace_bytes = ws;
    absl::Status st;
    const double ms = MedianMs([&] { st.Update(WindowScores(a, nullptr)); });
    ASSERT_TRUE(st.ok()) << st;
    std::printf("%-52s %10.3f %12s\n", "WindowScores len=32768 w=8 h=32/8 d=128", ms, "-");
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace claa::gpu
