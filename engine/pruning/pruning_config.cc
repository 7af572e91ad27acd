#include "engine/pruning/pruning_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace claa {
namespace {

// Layer l of the paper's 32-layer model at this depth.
int ScaleLayer(int l32, int num_layers) { return std::max(0, l32 * num_layers / 32); }

absl::Status Invalid(absl::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("pruning.", field, ": ", what));
}

}  // namespace

const char* PruningMethodName(PruningMethod method) {
  switch (method) {
    case PruningMethod::kFull: return "full";
    case PruningMethod::kClaa: return "claa";
    case PruningMethod::kFastKv: return "fastkv";
    case PruningMethod::kGemFilter: return "gemfilter";
    case PruningMethod::kOracle: return "oracle";
  }
  return "unknown";
}

absl::StatusOr<PruningMethod> ParsePruningMethod(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (PruningMethod m : {PruningMethod::kFull, PruningMethod::kClaa, PruningMethod::kFastKv,
                          PruningMethod::kGemFilter, PruningMethod::kOracle}) {
    if (lower == PruningMethodName(m)) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown pruning method \"", name, "\" (expected full, claa, fastkv, gemfilter or oracle)"));
}

int PruningConfig::KeepCount(int prompt_len) const {
  if (prompt_len <= 0) return 0;
  // The epsilon keeps 0.2 * 50 at 10 despite 0.2 not being exact in binary.
  const int wanted = int(std::ceil(keep_ratio * prompt_len - 1e-9));
  return std::min(prompt_len, std::max(wanted, window));
}

std::string PruningConfig::DebugString() const {
  return absl::StrFormat(
      "method=%s keep_ratio=%g pruning_layer=%d window=%d aggregation_layers=%d min_layer=%d "
      "pooling_kernel=%d",
      PruningMethodName(method), keep_ratio, pruning_layer, window, aggregation_layers, min_layer,
      pooling_kernel);
}

PruningConfig DefaultPruningConfig(PruningMethod method, int num_layers, double keep_ratio) {
  PruningConfig c;
  c.method = method;
  c.keep_ratio = keep_ratio;
  c.window = 8;
  if (method == PruningMethod::kGemFilter) {
    c.pruning_layer = ScaleLayer(13, num_layers);
    c.pooling_kernel = 5;
    c.aggregation_layers = 1;
  } else {
    c.pruning_layer = ScaleLayer(15, num_layers);
    c.pooling_kernel = 7;
    c.aggregation_layers = method == PruningMethod::kClaa ? 4 : 1;
  }
  c.aggregation_layers = std::min(c.aggregation_layers, c.pruning_layer + 1);
  c.min_layer = std::min(ScaleLayer(4, num_layers), c.pruning_layer);
  return c;
}

absl::Status ValidatePruningConfig(const PruningConfig& c, int num_layers) {
  if (num_layers < 1) return absl::InvalidArgumentError("the model has no layers");
  if (!(c.keep_ratio > 0.0 && c.keep_ratio <= 1.0)) {
    return Invalid("keep_ratio", absl::StrCat("must be in (0, 1], got ", c.keep_ratio));
  }
  if (c.pruning_layer < 0 || c.pruning_layer >= num_layers) {
    return Invalid("pruning_layer",
                   absl::StrCat("must be in [0, ", num_layers, "), got ", c.pruning_layer));
  }
  if (c.window < 1 || c.window > 1024) {
    return Invalid("window", absl::StrCat("must be in [1, 1024], got ", c.window));
  }
  if (c.aggregation_layers < 1 || c.aggregation_layers > c.pruning_layer + 1) {
    return Invalid("aggregation_layers",
                   absl::StrCat("must be in [1, pruning_layer + 1 = ", c.pruning_layer + 1,
                                "], got ", c.aggregation_layers));
  }
  if (c.min_layer < 0 || c.min_layer > c.pruning_layer + 1) {
    return Invalid("min_layer", absl::StrCat("must be in [0, pruning_layer + 1 = ",
                                             c.pruning_layer + 1, "], got ", c.min_layer));
  }
  if (c.pooling_kernel < 1 || c.pooling_kernel % 2 == 0 || c.pooling_kernel > 255) {
    return Invalid("pooling_kernel",
                   absl::StrCat("must be odd and in [1, 255], got ", c.pooling_kernel));
  }
  return absl::OkStatus();
}

absl::StatusOr<PruningConfig> ResolvePruningConfig(const PruningConfig& base,
                                                   const PruningOverrides& o, int num_layers) {
  PruningConfig c = base;
  if (o.method.has_value() && *o.method != base.method) {
    // A different method brings its own layer/pooling defaults; the keep ratio carries over.
    c = DefaultPruningConfig(*o.method, num_layers, base.keep_ratio);
  }
  if (o.keep_ratio) c.keep_ratio = *o.keep_ratio;
  if (o.pruning_layer) {
    c.pruning_layer = *o.pruning_layer;
    if (c.pruning_layer >= 0 && c.pruning_layer < num_layers) {
      // Keep the derived values inside the new pruning layer unless they were given too.
      if (!o.aggregation_layers) {
        c.aggregation_layers = std::min(c.aggregation_layers, c.pruning_layer + 1);
      }
      if (!o.min_layer) c.min_layer = std::min(c.min_layer, c.pruning_layer);
    }
  }
  if (o.window) c.window = *o.window;
  if (o.aggregation_layers) c.aggregation_layers = *o.aggregation_layers;
  if (o.min_layer) c.min_layer = *o.min_layer;
  if (o.pooling_kernel) c.pooling_kernel = *o.pooling_kernel;
  if (auto s = ValidatePruningConfig(c, num_layers); !s.ok()) return s;
  return c;
}

}  // namespace claa
