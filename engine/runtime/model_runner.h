#ifndef CLAA_ENGINE_RUNTIME_MODEL_RUNNER_H_
#define CLAA_ENGINE_RUNTIME_MODEL_RUNNER_H_

// A whole tensor-parallel group on the CPU: one LlamaModel + PagedKvCache per rank, a
// CpuCommGroup between them, a shared BlockManager, and persistent worker threads for ranks
// 1..tp-1 (rank 0 runs on the caller's thread).
//
// Or on GPUs (RunnerOptions::gpu_backend): the shards are uploaded as bf16 to one GPU per rank
// through the CUDA backend (engine/gpu/gpu_model.h, loaded with dlopen), which runs the group
// (NCCL between ranks); the BlockManager stays here and its block ids index the GPU's pools.
// The host keeps its fp32 shards (weights(r): the prefill-only runner and AttnCache copy them).
// The KV handoff of disaggregated serving reads and writes the host pools, or on GPUs the
// device pools through gpu_model() (engine/runtime/kv_slots.h).
//
// Threading: one caller thread drives Forward (calls must not overlap). BlockManager is
// thread-safe, so other threads may reserve and release blocks, but not for sequences that are in
// a running Forward.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/gpu/gpu_model.h"
#include "engine/model/weights.h"
#include "engine/runtime/block_manager.h"
#include "engine/runtime/cpu_communicator.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/llama_model.h"
#include "engine/util/rank_threads.h"

namespace claa {

struct RunnerOptions {
  int num_kv_blocks = 0;
  int block_size = 16;

  // Options whose KV cache fits `bytes_per_rank` bytes on each rank: K and V of every layer for
  // the rank's num_kv_heads / tp_size heads, fp32 (see PagedKvCache::BytesPerBlock). The
  // activations and weights are not included; budget them separately.
  static RunnerOptions FromMemoryBudget(const ModelConfig& config, int tp_size,
                                        size_t bytes_per_rank, int block_size = 16);

  // Non-null: run on GPUs gpu_device .. gpu_device + tp - 1 through this backend (not owned;
  // it must outlive the runner). Its bf16 pools hold num_kv_blocks blocks, half the fp32 bytes.
  gpu::GpuBackend* gpu_backend = nullptr;
  int gpu_device = 0;
  // GPUs: device memory per GPU for AttnCache maps kept resident between hits.
  size_t gpu_attention_map_bytes = size_t{2} << 30;
};

class ModelRunner {
 public:
  using ShardLoader = std::function<absl::StatusOr<ModelWeights>(TpShard)>;

  // Loads every rank's shard -- load_shard runs concurrently on tp_size threads when tp_size > 1,
  // so it must be thread-safe -- checks that the shards agree, and builds the group.
  // InvalidArgument when the config cannot be split tp_size ways or options are invalid; a
  // loader error is returned with the rank prefixed.
  //
  // BLAS note: every rank calls OpenBLAS from its own thread and OpenBLAS threads each call
  // itself; with tp > 1 on a many-core host, set OPENBLAS_NUM_THREADS ~ cores / tp_size.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(ShardLoader load_shard, int tp_size,
                                                             RunnerOptions options);
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Runs LlamaModel::Forward on every rank concurrently and returns rank 0's logits (the LM head
  // is replicated, so every rank would compute the same ones; the others skip it). An invalid
  // batch is rejected before any rank starts. If a rank fails mid-way (a bug), the group is
  // aborted and every later Forward returns Internal.
  absl::Status Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                       bool all_logits = false);

  const ModelConfig& config() const { return weights_[0].config; }
  // Whether Forward runs on GPUs (then cache(r) does not exist: the KV lives on the devices).
  bool on_gpu() const { return gpu_model_ != nullptr; }
  // First GPU of the model (on_gpu() only).
  int gpu_device() const { return gpu_device_; }
  // The GPU model (on_gpu() only; the KV handoff reads and writes its pools).
  gpu::GpuModel& gpu_model() { return *gpu_model_; }
  // "cpu", or the GPU model's device summary (for start-up logs).
  std::string device_description() const { return device_description_; }
  BlockManager& block_manager() { return *block_manager_; }
  int tp_size() const { return tp_size_; }
  int block_size() const { return block_manager_->block_size(); }
  // Rank r's weights (tests, introspection).
  const ModelWeights& weights(int rank) const { return weights_[rank]; }
  // Rank r's KV pools (KV handoff reads and writes slots of sequences not in a Forward). CPU
  // only: check on_gpu() first.
  PagedKvCache& cache(int rank) { return *caches_[rank]; }

 private:
  ModelRunner() = default;

  int tp_size_ = 1;
  std::vector<ModelWeights> weights_;
  std::unique_ptr<BlockManager> block_manager_;
  std::unique_ptr<CpuCommGroup> comm_group_;
  std::vector<std::unique_ptr<PagedKvCache>> caches_;
  std::vector<std::unique_ptr<LlamaModel>> models_;
  std::unique_ptr<gpu::GpuModel> gpu_model_;  // on GPUs: instead of caches_ / models_
  std::string device_description_ = "cpu";
  int gpu_device_ = 0;
  bool broken_ = false;

  std::unique_ptr<RankThreads> rank_threads_;  // tp > 1 on the CPU
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_MODEL_RUNNER_H_
