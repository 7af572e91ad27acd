#include "engine/runtime/model_runner.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"

namespace claa {

RunnerOptions RunnerOptions::FromMemoryBudget(const ModelConfig& config, int tp_size,
                                              size_t bytes_per_rank, int block_size) {
  RunnerOptions options;
  options.block_size = block_size;
  const int kv_heads = tp_size > 0 ? config.num_kv_heads / tp_size : 0;
  const size_t per_block =
      PagedKvCache::BytesPerBlock(config.num_layers, block_size, kv_heads, config.head_dim);
  options.num_kv_blocks =
      per_block == 0 ? 0 : int(std::min<size_t>(bytes_per_rank / per_block, 1u << 30));
  return options;
}

namespace {

// Shards must describe the same model and be the slice that was asked for.
absl::Status CheckShard(const ModelWeights& w, const ModelWeights& rank0, TpShard want) {
  const ModelConfig& a = w.config;
  const ModelConfig& b = rank0.config;
  if (w.shard.rank != want.rank || w.shard.size != want.size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "loader returned shard %d/%d for rank %d/%d", w.shard.rank, w.shard.size, want.rank,
        want.size));
  }
  if (a.vocab_size != b.vocab_size || a.hidden_size != b.hidden_size ||
      a.num_layers != b.num_layers || a.num_heads != b.num_heads ||
      a.num_kv_heads != b.num_kv_heads || a.head_dim != b.head_dim ||
      a.intermediate_size != b.intermediate_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d's config differs from rank 0's", want.rank));
  }
  if (w.local_heads * want.size != a.num_heads || w.local_kv_heads * want.size != a.num_kv_heads ||
      w.local_ffn * want.size != a.intermediate_size ||
      int(w.layers.size()) != a.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d's shard sizes do not match a %d-way split", want.rank, want.size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(ShardLoader load_shard,
                                                                 int tp_size,
                                                                 RunnerOptions options) {
  if (tp_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("tp_size must be >= 1, got %d", tp_size));
  }
  if (options.num_kv_blocks < 1 || options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("need num_kv_blocks >= 1 and block_size >= 1, got %d and %d",
                        options.num_kv_blocks, options.block_size));
  }
  std::unique_ptr<ModelRunner> runner(new ModelRunner());
  runner->tp_size_ = tp_size;

  std::vector<absl::StatusOr<ModelWeights>> loaded(tp_size);
  if (tp_size == 1) {
    loaded[0] = load_shard(TpShard{0, 1});
  } else {
    std::vector<std::thread> threads;
    for (int r = 0; r < tp_size; ++r) {
      threads.emplace_back([&, r] { loaded[r] = load_shard(TpShard{r, tp_size}); });
    }
    for (auto& t : threads) t.join();
  }
  for (int r = 0; r < tp_size; ++r) {
    if (!loaded[r].ok()) {
      return absl::Status(loaded[r].status().code(),
                          absl::StrFormat("loading TP shard %d/%d: %s", r, tp_size,
                                          loaded[r].status().message()));
    }
    runner->weights_.push_back(*std::move(loaded[r]));
  }
  CLAA_RETURN_IF_ERROR(ValidateTpShard(runner->weights_[0].config, TpShard{0, tp_size}));
  for (int r = 0; r < tp_size; ++r) {
    CLAA_RETURN_IF_ERROR(CheckShard(runner->weights_[r], runner->weights_[0], TpShard{r, tp_size}));
  }

  const ModelConfig& c = runner->weights_[0].config;
  runner->block_manager_ = std::make_unique<BlockManager>(options.num_kv_blocks, options.block_size);
  if (options.gpu_backend != nullptr) {
    gpu::GpuModelOptions gpu_options;
    gpu_options.device = options.gpu_device;
    gpu_options.num_blocks = options.num_kv_blocks;
    gpu_options.block_size = options.block_size;
    gpu_options.attention_map_bytes = options.gpu_attention_map_bytes;
    absl::StatusOr<std::unique_ptr<gpu::GpuModel>> model =
        tp_size == 1 ? options.gpu_backend->CreateModel(runner->weights_[0], gpu_options)
                     : options.gpu_backend->CreateTpModel(runner->weights_, gpu_options);
    if (!model.ok()) {
      return absl::Status(model.status().code(),
                          absl::StrCat("creating the GPU model: ", model.status().message()));
    }
    runner->gpu_model_ = *std::move(model);
    runner->gpu_device_ = options.gpu_device;
    std::string devices;
    for (int r = 0; r < tp_size; ++r) {
      absl::StrAppend(&devices, r > 0 ? "; " : "",
                      options.gpu_backend->DeviceDescription(options.gpu_device + r));
    }
    runner->device_description_ =
        absl::StrFormat("cuda: %s; %.2f GB bf16 weights, %.2f GB KV pools", devices,
                        runner->gpu_model_->weight_bytes() / 1e9,
                        runner->gpu_model_->kv_cache_bytes() / 1e9);
    return runner;
  }
  if (tp_size > 1) runner->comm_group_ = std::make_unique<CpuCommGroup>(tp_size);
  for (int r = 0; r < tp_size; ++r) {
    runner->caches_.push_back(std::make_unique<PagedKvCache>(
        c.num_layers, options.num_kv_blocks, options.block_size, runner->weights_[r].local_kv_heads,
        c.head_dim));
    runner->models_.push_back(std::make_unique<LlamaModel>(
        &runner->weights_[r], tp_size > 1 ? runner->comm_group_->rank(r) : nullptr,
        runner->caches_[r].get()));
  }
  if (tp_size > 1) runner->rank_threads_ = std::make_unique<RankThreads>(tp_size);
  return runner;
}

ModelRunner::~ModelRunner() = default;

absl::Status ModelRunner::Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                                  bool all_logits) {
  if (broken_) {
    return absl::InternalError("ModelRunner is unusable after an earlier rank failure");
  }
  if (logits == nullptr) return absl::InvalidArgumentError("logits must not be null");
  if (gpu_model_ != nullptr) {
    // The GPU model validates the batch (as LlamaModel does) before any rank starts.
    CLAA_RETURN_IF_ERROR(gpu_model_->ValidateBatch(batch));
    absl::Status s = gpu_model_->Forward(batch, logits, all_logits);
    if (!s.ok()) broken_ = true;
    return s;
  }
  // Rejecting a bad batch here keeps every rank's failure symmetric: none of them starts.
  CLAA_RETURN_IF_ERROR(models_[0]->ValidateBatch(batch));
  if (tp_size_ == 1) {
    absl::Status s = models_[0]->Forward(batch, logits, all_logits);
    if (!s.ok()) broken_ = true;
    return s;
  }
  // Ranks other than 0 skip the LM head: it is replicated, and rank 0's logits are returned.
  // A failing rank must not leave its peers blocked in a collective.
  const std::vector<absl::Status> statuses = rank_threads_->Run([&](int rank) {
    absl::Status s = models_[rank]->Forward(batch, rank == 0 ? logits : nullptr, all_logits);
    if (!s.ok()) comm_group_->Abort();
    return s;
  });
  absl::Status status = statuses[0];
  for (int r = 1; r < tp_size_ && status.ok(); ++r) {
    if (!statuses[r].ok()) {
      status = absl::Status(statuses[r].code(),
                            absl::StrFormat("TP rank %d: %s", r, statuses[r].message()));
    }
  }
  if (!status.ok()) broken_ = true;
  return status;
}

}  // namespace claa
