#ifndef CLAA_SERVER_LOADGEN_REQUEST_BUILDER_H_
#define CLAA_SERVER_LOADGEN_REQUEST_BUILDER_H_

// Turns dataset prompts plus the command line's sampling and pruning options into
// claa.v1.GenerateRequest messages.
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "claa/v1/claa.pb.h"
#include "server/loadgen/dataset.h"

namespace claa::loadgen {

struct RequestOptions {
  float temperature = 0;  // greedy by default, as vLLM's benchmark
  bool ignore_eos = true;
  // Unset: the server's default. Otherwise full|claa|fastkv|gemfilter.
  std::optional<v1::PruningOptions::Method> pruning_method;
  std::optional<float> keep_ratio;
};

// "full", "claa", "fastkv", "gemfilter" (case-insensitive); "" gives nullopt.
absl::StatusOr<std::optional<v1::PruningOptions::Method>> ParsePruningMethod(
    const std::string& name);

v1::GenerateRequest BuildRequest(const Prompt& prompt, const RequestOptions& options);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_REQUEST_BUILDER_H_
