#ifndef CLAA_ENGINE_GPU_GPU_MODEL_H_
#define CLAA_ENGINE_GPU_GPU_MODEL_H_

// The GPU backend's interface, as the server sees it. Free of CUDA headers: the backend lives in
// a shared library (libclaa_cuda_backend.so) that the server loads with dlopen only when it
// wants a GPU (DESIGN.md §5: cuBLAS loaded at start-up breaks prometheus-cpp's exposer), through
// backend_loader.h. One binary then serves on CPU-only hosts and on GPUs.
//
// A GpuModel mirrors claa::LlamaModel (engine/runtime/llama_model.h) on one GPU: the same
// ForwardItem batches, the same SequenceKv block tables (block ids from the caller's
// BlockManager index the model's own bf16 paged pools), the same per-layer lengths, the same
// pruned prefill (CLAA / FastKV / Oracle with token-selective propagation and per-KV-head cache
// compaction, GemFilter's scoring pass and re-run), the same reports. Weights, activations and
// the cache are bf16 with fp32 accumulation, so logits differ from the fp32 CPU path by bf16
// rounding (tests/gpu/gpu_model_check.cc states the tolerances).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "engine/runtime/llama_model.h"

namespace claa::gpu {

struct GpuModelOptions {
  int device = 0;
  // Paged KV pools: num_blocks blocks of block_size token slots in every layer (the scheme of
  // engine/runtime/kv_cache.h). Block ids come from the caller's BlockManager.
  int num_blocks = 0;
  int block_size = 16;
  // AttnCache hits: device memory (per GPU) for reused attention maps kept resident between
  // requests (engine/gpu/attention_map_tier.h); maps beyond it are uploaded for each use.
  size_t attention_map_bytes = size_t{2} << 30;
};

// A KV cache received over a GpuKvLink, waiting in the receiving model's device memory until
// GpuModel::WriteStagedKv puts it into a sequence's blocks (the decode scheduler admits the
// request in between). Dropping it frees the memory.
class GpuKvStage {
 public:
  virtual ~GpuKvStage() = default;
  virtual const std::vector<int>& layer_lengths() const = 0;
  virtual size_t bytes() const = 0;  // K + V, bf16
};

// One end of a point-to-point NCCL communicator between two processes (the NCCL transport of
// disaggregated serving: the prefill worker's model is rank 0, the decode worker's rank 1).
// Transfers on a link run one at a time and in the same order at both ends; the caller's
// protocol (server/kv_links.h) makes sure. Every wait is bounded: a missing or dead peer, a
// passed deadline or `cancelled()` returning true aborts the communicator (ncclCommAbort), so
// no thread hangs in NCCL; the link is then broken() and must be replaced at both ends.
class GpuKvLink {
 public:
  virtual ~GpuKvLink() = default;
  // Sends kv's cache (kv.layer_lengths slots of every layer, bf16 K and V); returns the bytes
  // sent.
  virtual absl::StatusOr<size_t> Send(const SequenceKv& kv, absl::Time deadline,
                                      const std::function<bool()>& cancelled) = 0;
  // Receives a cache of `layer_lengths` slots per layer into a new stage.
  virtual absl::StatusOr<std::unique_ptr<GpuKvStage>> Recv(
      absl::Span<const int> layer_lengths, absl::Time deadline,
      const std::function<bool()>& cancelled) = 0;
  virtual bool broken() const = 0;
};

class GpuModel {
 public:
  virtual ~GpuModel() = default;

  // The whole model's config (also when tensor-parallel ranks each hold a slice of it).
  virtual const ModelConfig& config() const = 0;
  // GPUs the model runs on (tensor-parallel ranks; 1 for a single-GPU model).
  virtual int tp_size() const = 0;
  virtual int num_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual size_t weight_bytes() const = 0;
  virtual size_t kv_cache_bytes() const = 0;

  // As LlamaModel::ValidateBatch; also refuses what the GPU path does not do (score capture
  // for evaluation) with Unimplemented. Attention reuse (AttnCache) runs on the device: a hit's
  // layers compute A @ V from its maps (HostAttentionMaps, kept resident up to
  // GpuModelOptions::attention_map_bytes), a capture's maps are computed from the RoPE'd Q/K.
  virtual absl::Status ValidateBatch(absl::Span<const ForwardItem> batch) const = 0;

  // As LlamaModel::Forward: runs the batch, appends K/V to the cache, advances
  // kv->layer_lengths / num_positions, fills prefill reports, and writes the fp32 logits of each
  // item's last token to *logits ([batch, vocab]; every token's with all_logits).
  // logits == nullptr skips the LM head. Returns once the logits are on the host. A
  // tensor-parallel model runs every rank (one host thread per GPU) inside this call.
  virtual absl::Status Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                               bool all_logits) = 0;

  // The KV handoff of disaggregated serving (engine/runtime/kv_slots.h, host-staged): slots
  // [first, first + n) of `layer` of kv's sequence between the GPU pools and flat host buffers
  // of [n][all KV heads][head_dim] fp32 in global head order (bf16 on the device); OutOfRange
  // for slots beyond the sequence's blocks. The sequence must not be in a running Forward; a
  // Forward of other sequences may run meanwhile (the copies use a stream of their own).
  // Thread-safe.
  virtual absl::Status ReadKvSlots(const SequenceKv& kv, int layer, int first, int n, float* k,
                                   float* v) = 0;
  virtual absl::Status WriteKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                    const float* k, const float* v) = 0;

  // The NCCL transport of the KV handoff between processes; single-GPU models only (a
  // tensor-parallel model answers Unimplemented and the server keeps the host-staged path).
  // NewKvLinkId: a fresh ncclUniqueId (opaque bytes) for both ends' OpenKvLink; this process
  // must open one end of it. OpenKvLink joins the two-rank communicator `id` as `rank` (0 or 1)
  // and returns once the peer has joined too, or DeadlineExceeded / Cancelled (cancelled()
  // returned true, e.g. the peer's call failed).
  virtual absl::StatusOr<std::string> NewKvLinkId() {
    return absl::UnimplementedError("NCCL KV links need a single-GPU model");
  }
  virtual absl::StatusOr<std::unique_ptr<GpuKvLink>> OpenKvLink(
      const std::string& id, int rank, absl::Time deadline,
      const std::function<bool()>& cancelled) {
    return absl::UnimplementedError("NCCL KV links need a single-GPU model");
  }
  // Writes a received stage into kv's blocks (which must cover its lengths); lengths and
  // positions are the caller's to set, as with WriteKvSlots. Thread-safe like WriteKvSlots.
  virtual absl::Status WriteStagedKv(const GpuKvStage& stage, const SequenceKv& kv) {
    return absl::UnimplementedError("NCCL KV links need a single-GPU model");
  }

  // Evaluation / checks: the per-token score that selected item `item`'s kept tokens in the
  // last Forward (CLAA: z-score max; FastKV / GemFilter: head sum; Oracle: the given scores),
  // one value per prefix token. NotFound when that item did not prune. Tensor parallel: Internal
  // unless every rank holds the very same scores (they are combined before top-k, so every rank
  // must have kept the same tokens).
  virtual absl::StatusOr<std::vector<float>> LastSelectionScores(int item) const = 0;
};

class GpuBackend {
 public:
  virtual ~GpuBackend() = default;

  // CUDA devices visible to this process (0 without a driver or device; not an error).
  virtual int DeviceCount() const = 0;
  // "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)", or an error text.
  virtual std::string DeviceDescription(int device) const = 0;

  // A model from fp32 host weights (converted to bf16 on upload); the weights must be the
  // whole model (shard size 1).
  virtual absl::StatusOr<std::unique_ptr<GpuModel>> CreateModel(
      const ModelWeights& weights, const GpuModelOptions& options) = 0;
  // A tensor-parallel model: shards[r] (shard r of shards.size(), ModelWeights' TP layout) on
  // device options.device + r, NCCL between them (NCCL_NVLS_ENABLE defaults to 0). One shard
  // is CreateModel. options.num_blocks is per GPU (each holds its KV heads' share).
  virtual absl::StatusOr<std::unique_ptr<GpuModel>> CreateTpModel(
      absl::Span<const ModelWeights> shards, const GpuModelOptions& options) = 0;
  // A model of `config`'s shape with random bf16 weights drawn on the device (uniform with
  // standard deviation init_std; norm weights near 1): for benchmarks, where an 8B model's
  // fp32 host copy would cost 32 GB and a minute.
  virtual absl::StatusOr<std::unique_ptr<GpuModel>> CreateRandomModel(
      const ModelConfig& config, uint64_t seed, float init_std,
      const GpuModelOptions& options) = 0;
  // The same split over tp GPUs (devices options.device ..): each rank draws its own slices
  // (benchmarks; they are not slices of CreateRandomModel's model).
  virtual absl::StatusOr<std::unique_ptr<GpuModel>> CreateRandomTpModel(
      const ModelConfig& config, int tp, uint64_t seed, float init_std,
      const GpuModelOptions& options) = 0;
};

// The C entry point of libclaa_cuda_backend.so. The caller passes the layout it was built with;
// the library returns null when it differs from its own (a stale library next to a newer
// binary), so types never cross the boundary with different layouts.
struct GpuBackendAbi {
  // 2: tensor parallelism (tp_size, CreateTpModel, CreateRandomTpModel); 3: attention reuse
  // on the GPU (AttentionReuse's host_maps / capture_output, attention_map_bytes); 4: KV slot
  // reads and writes (disaggregated serving on GPUs); 5: NCCL KV links between processes
  // (NewKvLinkId, OpenKvLink, WriteStagedKv); 6: GpuKvLink::Send returns the bytes sent.
  int version = 6;
  size_t forward_item_size = sizeof(ForwardItem);
  size_t sequence_kv_size = sizeof(SequenceKv);
  size_t prefill_options_size = sizeof(PrefillOptions);
  size_t model_config_size = sizeof(ModelConfig);
  size_t model_weights_size = sizeof(ModelWeights);
  size_t options_size = sizeof(GpuModelOptions);

  bool operator==(const GpuBackendAbi&) const = default;
};

inline constexpr char kGpuBackendFactorySymbol[] = "claa_cuda_backend_create";
// Returns a new backend the caller owns, or null on an ABI mismatch.
using GpuBackendFactory = GpuBackend* (*)(const GpuBackendAbi* caller_abi);

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_GPU_MODEL_H_
