#include "engine/attncache/attention_maps.h"

#include "absl/strings/str_format.h"

namespace claa::attncache {

absl::Status CheckMapsFit(const MapsShape& shape, int num_tokens, int num_layers, int num_heads) {
  if (shape.layers != num_layers || shape.heads != num_heads) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cached attention maps are for %d layers x %d heads, the model has %d x %d",
        shape.layers, shape.heads, num_layers, num_heads));
  }
  if (num_tokens > shape.length) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cached attention maps cover %d tokens, the input has %d", shape.length, num_tokens));
  }
  return absl::OkStatus();
}

}  // namespace claa::attncache
