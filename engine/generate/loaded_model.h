#ifndef CLAA_ENGINE_GENERATE_LOADED_MODEL_H_
#define CLAA_ENGINE_GENERATE_LOADED_MODEL_H_

// A model ready to serve: config, tokenizer and a tensor-parallel runner with its KV cache.
// Shared by claa-server, claa-cli and the benchmarks so all of them load models the same way.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gpu/backend_loader.h"
#include "engine/model/config.h"
#include "engine/runtime/model_runner.h"
#include "engine/tokenizer/tokenizer.h"

namespace claa {

struct ModelLoadOptions {
  // Hugging Face model directory (config.json, *.safetensors, tokenizer.json). Empty: the
  // built-in demo model (engine/model/builtin_model.h).
  std::string model_dir;
  int tp_size = 1;
  // KV cache size in bytes over all ranks; it sets the number of paged blocks.
  int64_t kv_cache_bytes = int64_t{512} << 20;
  int block_size = 16;
  // False: config and tokenizer only, no weights and no runner (the router of disaggregated
  // serving tokenizes and validates but runs no model; its context is then the model's
  // max_position_embeddings, not bounded by kv_cache_bytes).
  bool load_weights = true;
  // Where the model runs: "cpu"; "cuda" (the CUDA backend, libclaa_cuda_backend.so, loaded with
  // dlopen; an error if it or a GPU is missing); "auto" (cuda when both are there, else cpu).
  // With tp > 1 on cuda: GPUs gpu_device .. gpu_device + tp - 1, NCCL between them.
  std::string device = "cpu";
  int gpu_device = 0;
  // The backend library; empty: $CLAA_CUDA_BACKEND, then next to the executable, then the
  // loader's search path (engine/gpu/backend_loader.h).
  std::string cuda_backend_path;
};

struct LoadedModel {
  std::string name;  // directory name, or kBuiltinModelName
  bool builtin = false;
  ModelConfig config;
  std::unique_ptr<Tokenizer> tokenizer;
  // Declared before the runner, so the GPU model is destroyed before its library.
  std::unique_ptr<gpu::GpuBackendLibrary> gpu_library;
  std::unique_ptr<ModelRunner> runner;
  // Where the runner runs ("cpu", or the GPUs), and with device "auto", why it is not on a GPU.
  std::string device_description;
  std::string device_note;
  std::vector<int32_t> eos_token_ids;  // config.json and generation_config.json, merged
  std::optional<int32_t> bos_token_id;
  int num_kv_blocks = 0;
  // min(max_position_embeddings, tokens the KV cache holds): prompt + output must fit.
  int max_context_length = 0;
};

// Bytes one token's K and V take over all layers and ranks (fp32).
int64_t KvBytesPerToken(const ModelConfig& config);

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const ModelLoadOptions& options);

}  // namespace claa

#endif  // CLAA_ENGINE_GENERATE_LOADED_MODEL_H_
