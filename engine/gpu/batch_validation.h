#ifndef CLAA_ENGINE_GPU_BATCH_VALIDATION_H_
#define CLAA_ENGINE_GPU_BATCH_VALIDATION_H_

// The GPU model's batch checks: the ones every backend makes (ValidateForwardBatch,
// engine/runtime/batch_checks.h, as LlamaModel does), plus what the GPU path needs of attention
// reuse (host maps, a capture buffer) and what it does not do (score capture for evaluation:
// Unimplemented). config is the whole model's (attention maps cover every query head, also
// under tensor parallelism).
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/config.h"
#include "engine/runtime/llama_model.h"

namespace claa::gpu {

absl::Status ValidateGpuBatch(absl::Span<const ForwardItem> batch, const ModelConfig& config,
                              int num_blocks, int block_size);

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_BATCH_VALIDATION_H_
