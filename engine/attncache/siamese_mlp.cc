#include "engine/attncache/siamese_mlp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/attncache/checksum.h"
#include "engine/runtime/cpu_ops.h"

namespace claa::attncache {
namespace {

constexpr char kMagic[8] = {'C', 'L', 'A', 'A', 'S', 'M', 'L', 'P'};
constexpr uint32_t kVersion = 1;

// Adam state of one parameter tensor.
struct Adam {
  std::vector<float> m, v;
  explicit Adam(size_t n) : m(n, 0.0f), v(n, 0.0f) {}
  void Step(std::vector<float>& w, const std::vector<float>& g, double lr, double decay, int t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const double c1 = 1.0 - std::pow(b1, t), c2 = 1.0 - std::pow(b2, t);
    for (size_t i = 0; i < w.size(); ++i) {
      const double grad = g[i] + decay * w[i];
      m[i] = float(b1 * m[i] + (1 - b1) * grad);
      v[i] = float(b2 * v[i] + (1 - b2) * grad * grad);
      w[i] -= float(lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps));
    }
  }
};

}  // namespace

SiameseMlp::SiameseMlp(SiameseShape shape)
    : shape_(shape),
      reduce_(GaussianMatrix(shape.reduce_dim, shape.input_dim, shape.seed)),
      w1_(size_t(shape.hidden) * (shape.reduce_dim + 1)),
      b1_(shape.hidden, 0.0f),
      w2_(size_t(shape.dim) * shape.hidden),
      b2_(shape.dim, 0.0f) {
  std::mt19937_64 rng(shape.seed + 1);
  std::normal_distribution<float> he(0.0f, std::sqrt(2.0f / float(z_dim())));
  for (float& x : w1_) x = he(rng);
  std::normal_distribution<float> small(0.0f, 1.0f / std::sqrt(float(shape.hidden)));
  for (float& x : w2_) x = small(rng);
}

void SiameseMlp::Reduce(absl::Span<const float> pooled, int num_tokens, float* z) const {
  Gemm(pooled.data(), 1, shape_.input_dim, reduce_.data(), shape_.reduce_dim, z);
  z[shape_.reduce_dim] = float(std::log(double(std::max(1, num_tokens))) /
                               std::log(double(std::max(2, shape_.feature_length))));
}

void SiameseMlp::Forward(const float* z, float* h, float* f) const {
  Gemm(z, 1, z_dim(), w1_.data(), shape_.hidden, h);
  for (int i = 0; i < shape_.hidden; ++i) h[i] = std::max(0.0f, h[i] + b1_[i]);
  Gemm(h, 1, shape_.hidden, w2_.data(), shape_.dim, f);
  for (int i = 0; i < shape_.dim; ++i) f[i] += b2_[i];
}

void SiameseMlp::Project(absl::Span<const float> pooled, int num_tokens, float* out) const {
  std::vector<float> z(z_dim()), h(shape_.hidden);
  Reduce(pooled, num_tokens, z.data());
  Forward(z.data(), h.data(), out);
}

std::vector<double> SiameseMlp::Train(const std::vector<std::vector<float>>& pooled,
                                      const std::vector<int>& num_tokens,
                                      const std::vector<SiamesePair>& pairs,
                                      const SiameseTrainOptions& options) {
  const int zd = z_dim(), hd = shape_.hidden, od = shape_.dim;
  // The fixed reduction once per example.
  std::vector<std::vector<float>> z(pooled.size(), std::vector<float>(zd));
  for (size_t i = 0; i < pooled.size(); ++i) Reduce(pooled[i], num_tokens[i], z[i].data());

  Adam aw1(w1_.size()), ab1(b1_.size()), aw2(w2_.size()), ab2(b2_.size());
  std::vector<float> gw1(w1_.size()), gb1(b1_.size()), gw2(w2_.size()), gb2(b2_.size());
  std::vector<float> ha(hd), hb(hd), fa(od), fb(od), g(od), dh(hd);
  std::vector<int> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::mt19937_64 rng(options.seed);
  std::vector<double> curve;
  int step = 0;

  // Accumulates one tower's gradients for output gradient `gout`.
  auto backward = [&](const float* zi, const float* hi, const float* gout) {
    for (int o = 0; o < od; ++o) {
      gb2[o] += gout[o];
      float* row = &gw2[size_t(o) * hd];
      for (int j = 0; j < hd; ++j) row[j] += gout[o] * hi[j];
    }
    std::fill(dh.begin(), dh.end(), 0.0f);
    for (int o = 0; o < od; ++o) {
      const float* row = &w2_[size_t(o) * hd];
      for (int j = 0; j < hd; ++j) dh[j] += gout[o] * row[j];
    }
    for (int j = 0; j < hd; ++j) {
      if (hi[j] <= 0.0f) continue;  // ReLU
      gb1[j] += dh[j];
      float* row = &gw1[size_t(j) * zd];
      for (int k = 0; k < zd; ++k) row[k] += dh[j] * zi[k];
    }
  };

  auto error = [&](const std::vector<SiamesePair>& set) {
    double sq = 0.0;
    for (const SiamesePair& p : set) {
      Forward(z[p.a].data(), ha.data(), fa.data());
      Forward(z[p.b].data(), hb.data(), fb.data());
      double d2 = 0.0;
      for (int o = 0; o < od; ++o) d2 += double(fa[o] - fb[o]) * (fa[o] - fb[o]);
      sq += (std::sqrt(d2) - p.target) * (std::sqrt(d2) - p.target);
    }
    return set.empty() ? 0.0 : sq / set.size();
  };
  double best = std::numeric_limits<double>::infinity();
  int best_epoch = -1;
  std::vector<float> best_w1, best_b1, best_w2, best_b2;

  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double sq = 0.0;
    for (size_t start = 0; start < order.size(); start += options.batch) {
      const size_t end = std::min(order.size(), start + size_t(options.batch));
      std::fill(gw1.begin(), gw1.end(), 0.0f);
      std::fill(gb1.begin(), gb1.end(), 0.0f);
      std::fill(gw2.begin(), gw2.end(), 0.0f);
      std::fill(gb2.begin(), gb2.end(), 0.0f);
      const float scale = 1.0f / float(end - start);
      for (size_t k = start; k < end; ++k) {
        const SiamesePair& p = pairs[order[k]];
        Forward(z[p.a].data(), ha.data(), fa.data());
        Forward(z[p.b].data(), hb.data(), fb.data());
        double d2 = 0.0;
        for (int o = 0; o < od; ++o) d2 += double(fa[o] - fb[o]) * (fa[o] - fb[o]);
        const double d = std::sqrt(d2 + 1e-12);
        const double r = d - p.target;
        sq += r * r;
        // d(r^2)/d fa = 2 r (fa - fb) / d; the b tower gets the opposite.
        for (int o = 0; o < od; ++o) g[o] = float(2.0 * r * (fa[o] - fb[o]) / d) * scale;
        backward(z[p.a].data(), ha.data(), g.data());
        for (float& x : g) x = -x;
        backward(z[p.b].data(), hb.data(), g.data());
      }
      ++step;
      aw1.Step(w1_, gw1, options.learning_rate, options.weight_decay, step);
      ab1.Step(b1_, gb1, options.learning_rate, 0.0, step);
      aw2.Step(w2_, gw2, options.learning_rate, options.weight_decay, step);
      ab2.Step(b2_, gb2, options.learning_rate, 0.0, step);
    }
    if (options.validation == nullptr) {
      curve.push_back(pairs.empty() ? 0.0 : sq / pairs.size());
      continue;
    }
    const double v = error(*options.validation);
    curve.push_back(v);
    if (v < best) {
      best = v;
      best_epoch = epoch;
      best_w1 = w1_, best_b1 = b1_, best_w2 = w2_, best_b2 = b2_;
    } else if (epoch - best_epoch >= options.patience) {
      break;
    }
  }
  if (best_epoch >= 0) w1_ = best_w1, b1_ = best_b1, w2_ = best_w2, b2_ = best_b2;
  return curve;
}

absl::Status SiameseMlp::Save(const std::string& path) const {
  std::vector<char> buf;
  auto put = [&buf](const void* p, size_t n) {
    buf.insert(buf.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
  };
  put(kMagic, sizeof(kMagic));
  put(&kVersion, sizeof(kVersion));
  const int32_t dims[] = {shape_.input_dim, shape_.dim, shape_.reduce_dim, shape_.hidden,
                          shape_.feature_length};
  put(dims, sizeof(dims));
  put(&shape_.seed, sizeof(shape_.seed));
  for (const std::vector<float>* t : {&w1_, &b1_, &w2_, &b2_}) put(t->data(), t->size() * 4);
  const uint64_t sum = Checksum64(buf.data(), buf.size());
  put(&sum, sizeof(sum));
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  out.write(buf.data(), std::streamsize(buf.size()));
  out.close();
  if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SiameseMlp>> SiameseMlp::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open projector file ", path));
  std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto damaged = [&path](const std::string& what) {
    return absl::DataLossError(absl::StrCat("projector file ", path, " is corrupt: ", what));
  };
  const size_t head = sizeof(kMagic) + 4 + 5 * 4 + 8;
  if (buf.size() < head + 8) return damaged("too short");
  if (std::memcmp(buf.data(), kMagic, sizeof(kMagic)) != 0) return damaged("bad magic");
  uint64_t stored;
  std::memcpy(&stored, buf.data() + buf.size() - 8, 8);
  if (stored != Checksum64(buf.data(), buf.size() - 8)) return damaged("checksum mismatch");
  uint32_t version;
  std::memcpy(&version, buf.data() + sizeof(kMagic), 4);
  if (version != kVersion) return damaged(absl::StrCat("version ", version));
  int32_t dims[5];
  std::memcpy(dims, buf.data() + sizeof(kMagic) + 4, sizeof(dims));
  SiameseShape shape;
  shape.input_dim = dims[0];
  shape.dim = dims[1];
  shape.reduce_dim = dims[2];
  shape.hidden = dims[3];
  shape.feature_length = dims[4];
  std::memcpy(&shape.seed, buf.data() + sizeof(kMagic) + 4 + sizeof(dims), 8);
  for (int32_t d : dims) {
    if (d < 1 || d > (1 << 24)) return damaged("shape out of range");
  }
  auto mlp = std::make_unique<SiameseMlp>(shape);
  size_t off = head;
  for (std::vector<float>* t : {&mlp->w1_, &mlp->b1_, &mlp->w2_, &mlp->b2_}) {
    if (off + t->size() * 4 > buf.size() - 8) return damaged("weights truncated");
    std::memcpy(t->data(), buf.data() + off, t->size() * 4);
    off += t->size() * 4;
  }
  if (off != buf.size() - 8) return damaged("trailing bytes");
  return mlp;
}

}  // namespace claa::attncache
