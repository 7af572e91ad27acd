#ifndef CLAA_TESTS_UNIT_RUNTIME_REFERENCE_MODEL_H_
#define CLAA_TESTS_UNIT_RUNTIME_REFERENCE_MODEL_H_

// A naive dense Llama forward in double precision, written independently of the engine (plain
// loops, no paging, no BLAS), as the yardstick for the forward pass and for pruning: it can
// propagate only a given set of tokens past a layer (token-selective propagation) and hand back
// every layer's RoPE'd queries and keys so that tests compute attention scores on their own.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/model/weights.h"

namespace claa::testing {

struct ReferenceTrace {
  // [layer][token] -> heads * head_dim values (RoPE'd), for the tokens that ran at that layer
  // (all prompt tokens up to the pruning layer, then the kept ones, indexed by prompt position).
  std::vector<std::vector<std::vector<double>>> q, k, v;  // v: not rotated
};

// y = M x (+ bias) for M [out, in] (HF layout), in double.
inline std::vector<double> RefMatvec(const std::vector<float>& m, int out, int in,
                                     const std::vector<double>& x,
                                     const std::vector<float>* bias = nullptr) {
  std::vector<double> y(out);
  for (int o = 0; o < out; ++o) {
    double s = bias && !bias->empty() ? (*bias)[o] : 0.0;
    for (int i = 0; i < in; ++i) s += double(m[size_t(o) * in + i]) * x[i];
    y[o] = s;
  }
  return y;
}

inline std::vector<double> RefRmsNorm(const std::vector<double>& x, const std::vector<float>& g,
                                      double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  ms /= x.size();
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + eps) * g[i];
  return y;
}

// Rotate-half RoPE (no scaling) of `heads` head vectors of d values at position pos.
inline void RefRope(std::vector<double>& v, int heads, int d, int pos, double theta) {
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < d / 2; ++i) {
      const double a = pos / std::pow(theta, 2.0 * i / d);
      const double x1 = v[h * d + i], x2 = v[h * d + i + d / 2];
      v[h * d + i] = x1 * std::cos(a) - x2 * std::sin(a);
      v[h * d + i + d / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
}

// Logits of every surviving row ([rows][vocab], row-major). With prune_after >= 0, layers after
// prune_after run only on `kept` (ascending prompt indices) at their original positions and the
// rows are those tokens.
inline std::vector<double> ReferenceLogits(const ModelWeights& w,
                                           const std::vector<int32_t>& tokens,
                                           const std::vector<int>& kept = {},
                                           int prune_after = -1,
                                           ReferenceTrace* trace = nullptr) {
  const ModelConfig& c = w.config;
  const int T = int(tokens.size()), H = c.hidden_size, d = c.head_dim;
  const int nh = c.num_heads, nkv = c.num_kv_heads, F = c.intermediate_size;
  auto matvec = [](const std::vector<float>& m, int out, int in, const std::vector<double>& x,
                   const std::vector<float>* bias) { return RefMatvec(m, out, in, x, bias); };
  auto rms = [&](const std::vector<double>& x, const std::vector<float>& g) {
    return RefRmsNorm(x, g, c.rms_norm_eps);
  };
  auto rope = [&](std::vector<double>& v, int heads, int pos) {
    RefRope(v, heads, d, pos, c.rope_theta);
  };
  std::vector<int> active(T);
  for (int t = 0; t < T; ++t) active[t] = t;
  std::vector<std::vector<double>> h(T, std::vector<double>(H));
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i) h[t][i] = w.embed_tokens[size_t(tokens[t]) * H + i];
  if (trace != nullptr) {
    trace->q.assign(c.num_layers, std::vector<std::vector<double>>(T));
    trace->k.assign(c.num_layers, std::vector<std::vector<double>>(T));
    trace->v.assign(c.num_layers, std::vector<std::vector<double>>(T));
  }
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& l = w.layers[layer];
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int t : active) {
      auto x = rms(h[t], l.input_norm);
      q[t] = matvec(l.q_proj, nh * d, H, x, &l.q_bias);
      k[t] = matvec(l.k_proj, nkv * d, H, x, &l.k_bias);
      v[t] = matvec(l.v_proj, nkv * d, H, x, &l.v_bias);
      rope(q[t], nh, t);
      rope(k[t], nkv, t);
      if (trace != nullptr) {
        trace->q[layer][t] = q[t];
        trace->k[layer][t] = k[t];
        trace->v[layer][t] = v[t];
      }
    }
    for (int t : active) {
      std::vector<double> attn(nh * d, 0.0);
      for (int hh = 0; hh < nh; ++hh) {
        const int g = hh / (nh / nkv);
        std::vector<double> p;
        std::vector<int> seen;
        double mx = -1e300, sum = 0;
        for (int s : active) {
          if (s > t) break;
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += q[t][hh * d + i] * k[s][g * d + i];
          p.push_back(dot / std::sqrt(double(d)));
          seen.push_back(s);
          mx = std::max(mx, p.back());
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (size_t j = 0; j < seen.size(); ++j)
          for (int i = 0; i < d; ++i) attn[hh * d + i] += p[j] / sum * v[seen[j]][g * d + i];
      }
      auto o = matvec(l.o_proj, H, nh * d, attn, &l.o_bias);
      for (int i = 0; i < H; ++i) h[t][i] += o[i];
      auto x = rms(h[t], l.post_attention_norm);
      auto g = matvec(l.gate_proj, F, H, x, nullptr);
      auto u = matvec(l.up_proj, F, H, x, nullptr);
      for (int i = 0; i < F; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto dn = matvec(l.down_proj, H, F, g, nullptr);
      for (int i = 0; i < H; ++i) h[t][i] += dn[i];
    }
    if (layer == prune_after) active = kept;
  }
  std::vector<double> logits;
  for (int t : active) {
    auto y = matvec(w.LmHead(), c.vocab_size, H, rms(h[t], w.final_norm), nullptr);
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_RUNTIME_REFERENCE_MODEL_H_
