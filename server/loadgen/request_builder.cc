#include "server/loadgen/request_builder.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace claa::loadgen {

absl::StatusOr<std::optional<v1::PruningOptions::Method>> ParsePruningMethod(
    const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower.empty()) return std::optional<v1::PruningOptions::Method>();
  if (lower == "full") return v1::PruningOptions::FULL;
  if (lower == "claa") return v1::PruningOptions::CLAA;
  if (lower == "fastkv") return v1::PruningOptions::FASTKV;
  if (lower == "gemfilter") return v1::PruningOptions::GEMFILTER;
  return absl::InvalidArgumentError(
      absl::StrCat("pruning_method: unknown method '", name, "' (full|claa|fastkv|gemfilter)"));
}

v1::GenerateRequest BuildRequest(const Prompt& prompt, const RequestOptions& options) {
  v1::GenerateRequest request;
  if (!prompt.token_ids.empty()) {
    request.mutable_token_ids()->mutable_ids()->Add(prompt.token_ids.begin(),
                                                    prompt.token_ids.end());
  } else {
    request.set_text(prompt.text);
  }
  v1::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_temperature(options.temperature);
  sampling->set_max_tokens(static_cast<uint32_t>(prompt.max_tokens));
  sampling->set_ignore_eos(options.ignore_eos);
  if (options.pruning_method || options.keep_ratio) {
    v1::PruningOptions* pruning = request.mutable_pruning();
    if (options.pruning_method) pruning->set_method(*options.pruning_method);
    if (options.keep_ratio) pruning->set_keep_ratio(*options.keep_ratio);
  }
  return request;
}

}  // namespace claa::loadgen
