#ifndef CLAA_ENGINE_MODEL_MODEL_LOADER_H_
#define CLAA_ENGINE_MODEL_MODEL_LOADER_H_

// One call from a Hugging Face model directory to this rank's fp32 weights.
#include <filesystem>

#include "absl/status/statusor.h"
#include "engine/model/weights.h"

namespace claa {

// Reads <dir>/config.json, opens <dir>/model.safetensors (or the sharded index) and loads this
// rank's slice of every weight. The archive is closed before returning (weights are copies).
absl::StatusOr<ModelWeights> LoadModelDir(const std::filesystem::path& dir, TpShard shard = {});

}  // namespace claa

#endif  // CLAA_ENGINE_MODEL_MODEL_LOADER_H_
