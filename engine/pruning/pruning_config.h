#ifndef CLAA_ENGINE_PRUNING_PRUNING_CONFIG_H_
#define CLAA_ENGINE_PRUNING_PRUNING_CONFIG_H_

// Which prompt tokens a prefill keeps, and the knobs of each method (DESIGN.md §2).
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace claa {

enum class PruningMethod {
  kFull,       // no pruning
  kClaa,       // max over the last n layers x KV heads of z-scored window scores
  kFastKv,     // the pruning layer's window score summed over KV heads
  kGemFilter,  // raw last-query score at an early layer, then a re-run on the kept tokens
  kOracle,     // a ranking given by the caller (evaluation: the Answer-Informed Oracle)
};

// "full", "claa", "fastkv", "gemfilter", "oracle".
const char* PruningMethodName(PruningMethod method);
absl::StatusOr<PruningMethod> ParsePruningMethod(absl::string_view name);

// A fully resolved configuration: every field is set and consistent with the model's depth.
// The default-constructed one (no pruning) is valid for any depth; DefaultPruningConfig gives
// the paper's settings for a method.
struct PruningConfig {
  PruningMethod method = PruningMethod::kFull;
  // Fraction of the prompt kept (propagated tokens and per-layer cache capacity), in (0, 1].
  double keep_ratio = 1.0;
  // CLAA / FastKV / Oracle: the last layer that runs on the whole prompt; only kept tokens go on.
  // GemFilter: the layer whose scores select the tokens before the re-run.
  int pruning_layer = 0;
  // The last `window` prompt positions score the prefix and are always kept.
  int window = 8;
  // CLAA's n: the rolling window of layers whose scores are aggregated (ends at pruning_layer).
  int aggregation_layers = 1;
  // Layers below keep the full prompt KV ("deferred early compression").
  int min_layer = 0;
  // Average pooling over positions of the window scores (odd).
  int pooling_kernel = 7;

  bool prunes() const { return method != PruningMethod::kFull; }
  // Tokens kept of a prompt of prompt_len tokens: ceil(keep_ratio * prompt_len), at least the
  // window (or the whole prompt when it is shorter), at most the prompt.
  int KeepCount(int prompt_len) const;
  std::string DebugString() const;
};

// Per-request overrides; unset fields take the defaults for the model's depth.
struct PruningOverrides {
  std::optional<PruningMethod> method;
  std::optional<double> keep_ratio;
  std::optional<int> pruning_layer;
  std::optional<int> window;
  std::optional<int> aggregation_layers;
  std::optional<int> min_layer;
  std::optional<int> pooling_kernel;
};

// The paper's settings (Llama-3.1-8B, 32 layers: CLAA/FastKV prune after layer 15 with n = 4,
// min_layer 4, window 8, pooling 7; GemFilter selects at layer 13 with pooling 5) scaled to
// num_layers: a layer index L32 of the 32-layer model becomes floor(L32 * num_layers / 32).
PruningConfig DefaultPruningConfig(PruningMethod method, int num_layers, double keep_ratio = 1.0);

// base (usually the server's default, already valid) with the overrides applied; method-specific
// defaults (GemFilter's layer and pooling) follow the method unless overridden. InvalidArgument
// naming the field when a value is out of range or the combination is inconsistent.
absl::StatusOr<PruningConfig> ResolvePruningConfig(const PruningConfig& base,
                                                   const PruningOverrides& overrides,
                                                   int num_layers);

absl::Status ValidatePruningConfig(const PruningConfig& config, int num_layers);

}  // namespace claa

#endif  // CLAA_ENGINE_PRUNING_PRUNING_CONFIG_H_
