#ifndef CLAA_ENGINE_GPU_TP_GROUP_MODEL_H_
#define CLAA_ENGINE_GPU_TP_GROUP_MODEL_H_

// A tensor-parallel model as one GpuModel: a CudaLlamaModel per GPU (rank), joined by NCCL,
// and persistent host threads for ranks 1..tp-1 (rank 0 runs on the caller's thread), as the
// CPU path's ModelRunner does. Forward hands the batch to every rank, and returns rank 0's
// logits once all ranks are done.
//
// A rank that fails after the others have entered a collective would leave them waiting in
// NCCL; the ranks validate the same batch alike before any collective, and after a failure the
// group is marked broken and refuses further work (Internal), as ModelRunner does.
#include <memory>
#include <vector>

#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/gpu_model.h"
#include "engine/util/rank_threads.h"

namespace claa::gpu {

class TpGroupModel final : public GpuModel {
 public:
  // ranks[r] must be rank r of a group of ranks.size() (CudaLlamaModel::Create with TpRank).
  explicit TpGroupModel(std::vector<std::unique_ptr<CudaLlamaModel>> ranks);
  ~TpGroupModel() override;

  const ModelConfig& config() const override { return ranks_[0]->config(); }
  int tp_size() const override { return int(ranks_.size()); }
  int num_blocks() const override { return ranks_[0]->num_blocks(); }
  int block_size() const override { return ranks_[0]->block_size(); }
  size_t weight_bytes() const override;
  size_t kv_cache_bytes() const override;
  absl::Status ValidateBatch(absl::Span<const ForwardItem> batch) const override {
    return ranks_[0]->ValidateBatch(batch);
  }
  absl::Status Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                       bool all_logits) override;
  absl::StatusOr<std::vector<float>> LastSelectionScores(int item) const override;
  // Each rank fills its heads of the flat rows.
  absl::Status ReadKvSlots(const SequenceKv& kv, int layer, int first, int n, float* k,
                           float* v) override;
  absl::Status WriteKvSlots(const SequenceKv& kv, int layer, int first, int n, const float* k,
                            const float* v) override;

  // Benchmarks: the rank models (profiling, streams).
  CudaLlamaModel& rank(int r) { return *ranks_[r]; }

 private:
  std::vector<std::unique_ptr<CudaLlamaModel>> ranks_;
  RankThreads threads_;  // after ranks_: joined before the models go
  bool broken_ = false;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_TP_GROUP_MODEL_H_
