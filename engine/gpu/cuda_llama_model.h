#ifndef CLAA_ENGINE_GPU_CUDA_LLAMA_MODEL_H_
#define CLAA_ENGINE_GPU_CUDA_LLAMA_MODEL_H_

// The Llama forward pass on one GPU (GpuModel, gpu_model.h), built on kernels/.
//
// Per layer, for all rows of the batch at once:
//   normed = rmsnorm(residual)                     AddRmsNorm
//   qkv = normed Wqkv^T (+ bias)                   one cuBLASLt GEMM (fused q/k/v)
//   RoPE on q and k at each row's original position
//   K/V -> paged cache (skipped where nothing will read it)
//   attention: fresh prompts attend within their own rows (varlen flash attention); a batch of
//     single tokens uses paged decode attention; anything else gathers cached + new K/V first
//   [pruning: window / last-query scores, per-head top-k + cache compaction, the selection]
//   residual += attn Wo^T                          GEMM accumulating into the residual (beta 1)
//   normed = rmsnorm(residual); gu = normed Wgu^T  fused gate/up GEMM
//   act = silu(gate) * up (in place); residual += act Wdown^T
//   [token-selective propagation: gather the kept rows and their positions]
// AttnCache (attention reuse): a hit item's attention is A @ V from its stored maps (a batch of
// hits computes only the V columns of the QKV GEMM and skips RoPE, the cache writes and Q/K
// attention); a capture item's maps are computed from its RoPE'd Q/K after attention.
// The residual stream is bf16 (as a bf16 model stores it); GEMMs accumulate in fp32.
//
// Tensor parallelism (Megatron sharding, as the CPU path): rank r holds heads, KV heads and FFN
// columns r/tp of each layer, so the model below runs on a local config with those counts. The
// o_proj and down_proj outputs are partial sums: rank 0 accumulates its part into the residual,
// the others overwrite theirs, and one bf16 NCCL all-reduce of the residual rows completes the
// layer. Pruning scores are combined before selection (CLAA: max of the local z-score maxima,
// FastKV / GemFilter: sum of the local head sums), so every rank keeps the same tokens.
//
// No host synchronisation between the forward's single metadata upload (batch_plan.h) and the
// final download of logits and selections: the pruning decisions stay on the device.
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/gpu/attention_map_tier.h"
#include "engine/gpu/batch_plan.h"
#include "engine/gpu/cuda_util.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/gpu_model.h"
#include "engine/gpu/nccl_group.h"
#include "kernels/attention_maps.h"
#include "kernels/kernels.h"

namespace claa::gpu {

class KvPacker;  // kv_transfer.h

// One rank's place in a tensor-parallel group (size 1: no group).
struct TpRank {
  int rank = 0;
  int size = 1;
  std::shared_ptr<NcclGroup> group;  // null when size == 1
};

// The per-rank shape of a model split `tp` ways: heads, KV heads and FFN divided.
ModelConfig LocalTpConfig(const ModelConfig& config, int tp);

class CudaLlamaModel final : public GpuModel {
 public:
  // Takes the weights (already on options.device, this rank's shard) and allocates the KV pools
  // there. `config` is the whole model's.
  static absl::StatusOr<std::unique_ptr<CudaLlamaModel>> Create(const ModelConfig& config,
                                                                DeviceWeights weights,
                                                                const GpuModelOptions& options,
                                                                cudaStream_t stream,
                                                                TpRank tp = {});
  // Checks that the kernels support this shape (head_dim 64 / 128, GQA divisibility).
  static absl::Status CheckConfig(const ModelConfig& config);
  ~CudaLlamaModel() override;

  const ModelConfig& config() const override { return full_config_; }
  int tp_size() const override { return tp_.size; }
  // Tensor parallel: a rank's Forward must run concurrently with every other rank's on the same
  // batch (TpGroupModel does that); only rank 0 advances the SequenceKv objects and fills the
  // reports, and only rank 0 needs logits.
  int tp_rank() const { return tp_.rank; }
  int num_blocks() const override { return options_.num_blocks; }
  int block_size() const override { return options_.block_size; }
  size_t weight_bytes() const override { return weights_.bytes; }
  size_t kv_cache_bytes() const override { return kv_.bytes(); }

  absl::Status ValidateBatch(absl::Span<const ForwardItem> batch) const override;
  absl::Status Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                       bool all_logits) override;
  absl::StatusOr<std::vector<float>> LastSelectionScores(int item) const override;
  // This rank's KV heads of the flat buffers (rows of all heads; see GpuModel).
  absl::Status ReadKvSlots(const SequenceKv& kv, int layer, int first, int n, float* k,
                           float* v) override;
  absl::Status WriteKvSlots(const SequenceKv& kv, int layer, int first, int n, const float* k,
                            const float* v) override;
  // NCCL KV links between processes (peer_kv_link.h); tp = 1 only.
  absl::StatusOr<std::string> NewKvLinkId() override;
  absl::StatusOr<std::unique_ptr<GpuKvLink>> OpenKvLink(
      const std::string& id, int rank, absl::Time deadline,
      const std::function<bool()>& cancelled) override;
  absl::Status WriteStagedKv(const GpuKvStage& stage, const SequenceKv& kv) override;

  // The stream every kernel of this model runs on (benchmarks record events on it).
  cudaStream_t stream() const { return stream_; }
  int device() const { return options_.device; }
  // This rank's shape (heads / KV heads / FFN divided by tp) and its paged KV pools of a layer
  // (the KV transfer of engine/gpu/kv_transfer.h reads and writes them between forwards).
  const ModelConfig& local_config() const { return config_; }
  PagedKvLayer cache_layer(int layer) const { return CacheLayer(layer); }

  // Benchmarks: with profiling on, Forward records a CUDA event at every op-group boundary (no
  // host synchronisation; events are reused across calls) and LastProfile() then gives the
  // milliseconds of each group in the last Forward, summed over layers and passes.
  enum class OpGroup {
    kUpload, kEmbed, kNorm, kQkvGemm, kRope, kKvWrite, kAttention, kPruning, kOGemm,
    kGateUpGemm, kSwiGlu, kDownGemm, kAllReduce, kPropagation, kLmHead, kCount
  };
  static const char* OpGroupName(OpGroup group);
  void set_profiling(bool on) { profiling_ = on; }
  // Benchmarks (A/B): before fresh-prompt attention, copy the K and V columns of the fused QKV
  // rows into compact [rows, 2 * kv_dim] rows, so the attention kernel streams K/V with a 4 KB
  // instead of a 12 KB row stride (Llama-3.1-8B).
  void set_pack_kv(bool on) { pack_kv_ = on; }
  // Benchmarks: AttnCache hits' A @ V in this many row-block GEMMs (0: MapsGemm's default).
  void set_maps_row_blocks(int blocks) { maps_row_blocks_ = blocks; }
  absl::StatusOr<std::vector<std::pair<std::string, double>>> LastProfile() const;

 private:
  CudaLlamaModel(const ModelConfig& config, DeviceWeights weights,
                 const GpuModelOptions& options, cudaStream_t stream, TpRank tp);
  // Completes a row-parallel GEMM's partial sums in the residual (no-op at tp = 1).
  absl::Status AllReduceRows(Bf16* rows, int count);
  // Combines this rank's per-token scores with the other ranks' (no-op at tp = 1).
  absl::Status CombineScores(float* scores, int count, ncclRedOp_t op);

  // Device addresses of one forward's metadata and scratch.
  struct PassContext {
    int32_t* blob = nullptr;
    char* scratch = nullptr;
    void* window_ws = nullptr;
    size_t window_ws_bytes = 0;
    void* decode_ws = nullptr;
    size_t decode_ws_bytes = 0;
    Bf16* kv_k = nullptr;  // contiguous K/V of kMixed layers
    Bf16* kv_v = nullptr;
  };
  // The main pass's attention reuse: per item the hit's dense maps ([layers][local heads][n][n],
  // null: not a hit) and the capture's packed device maps ([layers][local heads][Triangle(n)],
  // null: no capture).
  struct ReusePlan {
    bool all_hits = false;  // every item is a hit: nothing needs Q or K
    bool any = false;
    std::vector<const Bf16*> hit_maps;
    std::vector<uint16_t*> capture;
    float* scores = nullptr;  // capture scratch: [local KV heads][n][n] fp32
  };
  // Runs one pass; on return *residual / *positions hold the final rows. reuse: null, or the
  // main pass's attention reuse.
  absl::Status RunPass(const PassPlan& plan, const PassContext& ctx, const ReusePlan* reuse,
                       Bf16** residual, const int32_t** positions);
  // Attention reuse at one layer, after (or, for a batch of hits, instead of) Attention.
  absl::Status ReuseAttention(const PassPlan& plan, const ReusePlan& reuse, int layer);
  // Plans the batch's attention reuse (acquires hit maps, sizes capture buffers).
  absl::StatusOr<ReusePlan> PlanReuse(absl::Span<const ForwardItem> batch);
  // Copies the capture items' maps to their host buffers (queued on the stream).
  absl::Status DownloadCaptures(absl::Span<const ForwardItem> batch, const ReusePlan& reuse);
  absl::Status Attention(const PassPlan& plan, const AttnLayout& lay, int layer,
                         const PassContext& ctx);
  absl::Status PruningAfterAttention(const PassPlan& plan, int layer, const PassContext& ctx);
  absl::Status ReserveActivations(int rows);
  PagedKvLayer CacheLayer(int layer) const;
  absl::Status Mark(OpGroup group);  // no-op unless profiling
  // Whether the tensor-core attention kernels cover this head_dim.
  bool FastHeadDim() const { return config_.head_dim == 64 || config_.head_dim == 128; }

  ModelConfig full_config_;
  ModelConfig config_;  // this rank's shape (LocalTpConfig); the whole model's at tp = 1
  TpRank tp_;
  ModelDims dims_;
  GpuModelOptions options_;
  cudaStream_t stream_;
  DeviceWeights weights_;
  DeviceBuffer kv_;  // [layers][K, V][num_blocks * block_size][kv_heads * head_dim]
  DeviceBuffer inv_freq_;
  std::unique_ptr<BlasLtGemm> gemm_;
  std::unique_ptr<MapsGemm> maps_gemm_;  // created on first use (AttnCache)
  AttentionMapTier map_tier_;
  DeviceBuffer capture_maps_, capture_scores_, final_hidden_dev_;
  PinnedBuffer final_hidden_host_;

  int activation_rows_ = 0;
  DeviceBuffer residual_[2], normed_, qkv_, attn_, gate_up_, positions_[2];
  DeviceBuffer blob_dev_, scratch_, logits_dev_;
  PinnedBuffer blob_host_, out_host_;

  bool profiling_ = false;
  bool pack_kv_ = false;
  int maps_row_blocks_ = 0;
  DeviceBuffer kv_pack_;  // [activation rows][2 * kv_dim] when pack_kv_
  std::vector<cudaEvent_t> events_;  // reused; events_[i] ends the interval of marks_[i - 1]
  std::vector<OpGroup> marks_;

  // KV slot copies (kv_slots.cpp's GPU side): runs of consecutive slots inside one block move
  // with one copy each, through pinned staging, on a stream of their own.
  absl::Status CopyKvSlots(const SequenceKv& kv, int layer, int first, int n, float* k, float* v,
                           bool to_host);
  std::mutex transfer_mu_;
  cudaStream_t transfer_stream_ = nullptr;  // guarded by transfer_mu_; created on first use
  PinnedBuffer transfer_staging_;           // guarded by transfer_mu_
  std::unique_ptr<KvPacker> stage_packer_;  // guarded by transfer_mu_ (WriteStagedKv)
  absl::Status EnsureTransferStream();      // callers hold transfer_mu_

  // Where the last forward's selection scores live in scratch_: [item] -> (offset, count).
  std::vector<std::pair<size_t, int>> selection_scores_;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_CUDA_LLAMA_MODEL_H_
