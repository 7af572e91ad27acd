#ifndef CLAA_ENGINE_GPU_DEVICE_WEIGHTS_H_
#define CLAA_ENGINE_GPU_DEVICE_WEIGHTS_H_

// A Llama model's weights on one GPU, bf16, in one allocation. Projections that read the same
// input are fused so each is one GEMM: qkv = [q; k; v] rows ([q_dim + 2 kv_dim, hidden]) and
// gate_up = [gate; up] ([2 ffn, hidden]); the Hugging Face [out, in] layout is kept
// (BlasLtGemm's W).
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gpu/cuda_util.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

struct DeviceLayerWeights {
  Bf16* input_norm = nullptr;
  Bf16* post_norm = nullptr;
  Bf16* qkv = nullptr;
  Bf16* qkv_bias = nullptr;  // null unless config.qkv_bias
  Bf16* o = nullptr;
  Bf16* o_bias = nullptr;    // null unless config.o_bias
  Bf16* gate_up = nullptr;
  Bf16* down = nullptr;
};

struct DeviceWeights {
  DeviceBuffer storage;
  Bf16* embed = nullptr;  // [vocab, hidden]
  Bf16* final_norm = nullptr;
  Bf16* lm_head = nullptr;  // == embed when tied
  std::vector<DeviceLayerWeights> layers;
  size_t bytes = 0;
};

// fp32 host weights -> bf16 device weights (round to nearest even). A tensor-parallel shard
// (weights.shard.size > 1) gives that rank's slices (LocalTpConfig's shapes).
absl::StatusOr<DeviceWeights> UploadWeights(const ModelWeights& weights, cudaStream_t stream);

// Random weights of `config`'s shapes (pass a rank's LocalTpConfig for a shard) drawn on the device: matrices uniform with standard deviation init_std, norm
// weights uniform in [0.9, 1.1], biases small. Deterministic in seed; layer_seed_salt changes
// the layers' draws only (tensor-parallel ranks share the replicated tensors).
absl::StatusOr<DeviceWeights> RandomDeviceWeights(const ModelConfig& config, uint64_t seed,
                                                  float init_std, cudaStream_t stream,
                                                  uint64_t layer_seed_salt = 0);

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_DEVICE_WEIGHTS_H_
