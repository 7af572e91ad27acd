#include "engine/gpu/cuda_llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/gpu/batch_validation.h"
#include "engine/gpu/kv_transfer.h"  // KvPacker: stage_packer_'s destructor
#include "engine/runtime/cpu_ops.h"
#include "engine/util/status_macros.h"
#include "kernels/model_kernels.h"

namespace claa::gpu {
namespace {

constexpr size_t kGemmWorkspaceBytes = 32 << 20;

}  // namespace

absl::Status CudaLlamaModel::CheckConfig(const ModelConfig& c) {
  if (c.num_layers <= 0 || c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.vocab_size <= 0 || c.intermediate_size <= 0) {
    return absl::InvalidArgumentError("model config: non-positive size or heads not a multiple "
                                      "of KV heads");
  }
  // 64 and 128 run on the tensor-core kernels, other multiples of 8 on the generic one.
  if (c.head_dim % 8 != 0 || c.head_dim > 256) {
    return absl::UnimplementedError(absl::StrFormat(
        "the GPU kernels need head_dim a multiple of 8 up to 256; the model has %d",
        c.head_dim));
  }
  return absl::OkStatus();
}

ModelConfig LocalTpConfig(const ModelConfig& config, int tp) {
  ModelConfig local = config;
  local.num_heads = config.num_heads / tp;
  local.num_kv_heads = config.num_kv_heads / tp;
  local.intermediate_size = config.intermediate_size / tp;
  return local;
}

CudaLlamaModel::CudaLlamaModel(const ModelConfig& config, DeviceWeights weights,
                               const GpuModelOptions& options, cudaStream_t stream, TpRank tp)
    : full_config_(config),
      config_(LocalTpConfig(config, tp.size)),
      tp_(std::move(tp)),
      options_(options),
      stream_(stream),
      weights_(std::move(weights)),
      map_tier_(options.attention_map_bytes) {
  dims_.num_layers = config_.num_layers;
  dims_.num_heads = config_.num_heads;
  dims_.num_kv_heads = config_.num_kv_heads;
  dims_.head_dim = config_.head_dim;
  dims_.block_size = options.block_size;
  dims_.paged_decode = FastHeadDim();
}

CudaLlamaModel::~CudaLlamaModel() {
  // Work may still be queued after an error return; let it finish before memory goes.
  cudaStreamSynchronize(stream_);
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
  if (transfer_stream_ != nullptr) cudaStreamDestroy(transfer_stream_);
  cudaStreamDestroy(stream_);
}

const char* CudaLlamaModel::OpGroupName(OpGroup group) {
  static constexpr const char* kNames[] = {
      "upload", "embedding", "rmsnorm", "qkv gemm", "rope", "kv write", "attention",
      "pruning (scores, top-k, compaction)", "o_proj gemm", "gate_up gemm", "swiglu",
      "down gemm", "nccl all-reduce", "propagation (gather)", "lm head + download"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == int(OpGroup::kCount));
  return kNames[int(group)];
}

absl::Status CudaLlamaModel::Mark(OpGroup group) {
  if (!profiling_) return absl::OkStatus();
  if (events_.size() <= marks_.size()) {
    cudaEvent_t e;
    CLAA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
    events_.push_back(e);
  }
  CLAA_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[marks_.size()], stream_));
  marks_.push_back(group);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> CudaLlamaModel::LastProfile() const {
  std::vector<double> ms(int(OpGroup::kCount), 0.0);
  // The last mark closes the previous interval and opens none.
  for (size_t i = 0; i + 1 < marks_.size(); ++i) {
    float t = 0;
    CLAA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&t, events_[i], events_[i + 1]));
    ms[int(marks_[i])] += t;
  }
  std::vector<std::pair<std::string, double>> out;
  for (int g = 0; g < int(OpGroup::kCount); ++g) {
    out.push_back({OpGroupName(OpGroup(g)), ms[g]});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CudaLlamaModel>> CudaLlamaModel::Create(
    const ModelConfig& config, DeviceWeights weights, const GpuModelOptions& options,
    cudaStream_t stream, TpRank tp) {
  absl::Status valid = CheckConfig(config);
  if (valid.ok()) valid = ValidateTpShard(config, TpShard{tp.rank, tp.size});
  if (valid.ok() && tp.size > 1 && (tp.group == nullptr || tp.group->size() != tp.size)) {
    valid = absl::InvalidArgumentError("tensor parallelism needs the group's NCCL communicators");
  }
  if (valid.ok() && (options.num_blocks <= 0 || options.block_size <= 0)) {
    valid = absl::InvalidArgumentError(absl::StrFormat("num_blocks=%d block_size=%d",
                                                       options.num_blocks, options.block_size));
  }
  if (!valid.ok()) {
    cudaStreamDestroy(stream);  // the model owns the stream from here on
    return valid;
  }
  std::unique_ptr<CudaLlamaModel> m(
      new CudaLlamaModel(config, std::move(weights), options, stream, std::move(tp)));
  const ModelConfig& local = m->config_;
  const size_t slots = size_t(options.num_blocks) * options.block_size;
  const size_t layer_bytes = slots * local.num_kv_heads * local.head_dim * sizeof(Bf16);
  CLAA_RETURN_IF_ERROR(m->kv_.Reserve(layer_bytes * 2 * local.num_layers));

  const std::vector<float> inv_freq = ComputeRopeInvFreq(config);
  CLAA_RETURN_IF_ERROR(m->inv_freq_.Reserve(inv_freq.size() * sizeof(float)));
  CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpy(m->inv_freq_.get(), inv_freq.data(),
                                       inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
  CLAA_ASSIGN_OR_RETURN(m->gemm_, BlasLtGemm::Create(kGemmWorkspaceBytes));
  return m;
}

PagedKvLayer CudaLlamaModel::CacheLayer(int layer) const {
  const size_t layer_elems = size_t(options_.num_blocks) * options_.block_size *
                             config_.num_kv_heads * config_.head_dim;
  PagedKvLayer l;
  l.k = kv_.get<Bf16>() + size_t(2 * layer) * layer_elems;
  l.v = l.k + layer_elems;
  l.num_blocks = options_.num_blocks;
  l.block_size = options_.block_size;
  l.num_kv_heads = config_.num_kv_heads;
  l.head_dim = config_.head_dim;
  return l;
}

absl::Status CudaLlamaModel::ValidateBatch(absl::Span<const ForwardItem> batch) const {
  return ValidateGpuBatch(batch, full_config_, options_.num_blocks, options_.block_size);
}

absl::Status CudaLlamaModel::ReserveActivations(int rows) {
  if (pack_kv_) {
    CLAA_RETURN_IF_ERROR(kv_pack_.Reserve(size_t(std::max(rows, activation_rows_)) * 2 *
                                          config_.num_kv_heads * config_.head_dim *
                                          sizeof(Bf16)));
  }
  if (rows <= activation_rows_) return absl::OkStatus();
  // Grow with headroom so a stream of slightly longer prompts does not reallocate each time.
  rows = std::max(rows, activation_rows_ + activation_rows_ / 4);
  const size_t r = size_t(rows);
  const size_t h = config_.hidden_size;
  const size_t q_dim = size_t(config_.num_heads) * config_.head_dim;
  const size_t qkv_dim = q_dim + 2 * size_t(config_.num_kv_heads) * config_.head_dim;
  for (DeviceBuffer& b : residual_) CLAA_RETURN_IF_ERROR(b.Reserve(r * h * sizeof(Bf16)));
  CLAA_RETURN_IF_ERROR(normed_.Reserve(r * h * sizeof(Bf16)));
  CLAA_RETURN_IF_ERROR(qkv_.Reserve(r * qkv_dim * sizeof(Bf16)));
  CLAA_RETURN_IF_ERROR(attn_.Reserve(r * q_dim * sizeof(Bf16)));
  CLAA_RETURN_IF_ERROR(
      gate_up_.Reserve(r * 2 * size_t(config_.intermediate_size) * sizeof(Bf16)));
  for (DeviceBuffer& b : positions_) CLAA_RETURN_IF_ERROR(b.Reserve(r * sizeof(int32_t)));
  if (pack_kv_) {
    CLAA_RETURN_IF_ERROR(kv_pack_.Reserve(r * 2 * size_t(config_.num_kv_heads) *
                                          config_.head_dim * sizeof(Bf16)));
  }
  activation_rows_ = rows;
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::Forward(absl::Span<const ForwardItem> batch,
                                     std::vector<float>* logits, bool all_logits) {
  CLAA_RETURN_IF_ERROR(ValidateBatch(batch));
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const int b = int(batch.size());
  const int layers = config_.num_layers;
  selection_scores_.assign(b, {0, 0});
  if (b == 0) {
    if (logits != nullptr) logits->clear();
    return absl::OkStatus();
  }

  // --- Plan every pass on the host (batch_plan.h). ---
  std::vector<ItemPruning> pruning(b);
  for (int i = 0; i < b; ++i) {
    const int n = int(batch[i].tokens.size());
    pruning[i] = batch[i].prefill != nullptr ? ResolveItemPruning(batch[i].prefill->pruning, n)
                                             : ResolveItemPruning(PruningConfig{}, n);
    if (all_logits && batch[i].prefill != nullptr && batch[i].prefill->pruning.prunes()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("batch item %d: all_logits is not available for a pruned prefill", i));
    }
  }
  Blob blob;
  ScratchLayout scratch;
  const std::vector<int> zeros(layers, 0);
  // GemFilter: one scoring pass per such item, then the main pass re-runs its kept tokens.
  std::vector<PassPlan> scoring;
  std::vector<int> scoring_item;
  for (int i = 0; i < b; ++i) {
    if (!pruning[i].active() || pruning[i].method != PruningMethod::kGemFilter) continue;
    PassItemInput in;
    in.rows = int(batch[i].tokens.size());
    in.host_tokens = batch[i].tokens;
    in.past = zeros;
    in.blocks = batch[i].kv->blocks;
    in.pruning = pruning[i];
    scoring.push_back(BuildPassPlan(absl::MakeConstSpan(&in, 1), dims_, true, &blob, &scratch));
    scoring_item.push_back(i);
  }
  std::vector<PassItemInput> main(b);
  for (int i = 0; i < b; ++i) {
    PassItemInput& in = main[i];
    in.blocks = batch[i].kv->blocks;
    if (pruning[i].active() && pruning[i].method == PruningMethod::kGemFilter) {
      in.rows = pruning[i].keep;  // tokens come from the scoring pass's selection
      in.start_pos = 0;
      in.past = zeros;
      in.pruning = ResolveItemPruning(PruningConfig{}, in.rows);
    } else {
      in.rows = int(batch[i].tokens.size());
      in.start_pos = batch[i].start_pos;
      in.host_tokens = batch[i].tokens;
      in.past = batch[i].kv->layer_lengths;
      in.pruning = pruning[i];
      if (pruning[i].method == PruningMethod::kOracle) {
        in.oracle_scores = batch[i].prefill->oracle_scores;
      }
    }
  }
  const PassPlan plan = BuildPassPlan(main, dims_, false, &blob, &scratch);

  // --- Scratch beyond the plan's own: kernel workspaces, final rows. ---
  const int kv_dim = config_.num_kv_heads * config_.head_dim;
  size_t window_ws = 0, decode_ws = 0;
  int64_t mixed_k = 0;
  int max_rows = plan.max_rows;
  for (const PassPlan* p : [&] {
         std::vector<const PassPlan*> all{&plan};
         for (const PassPlan& s : scoring) all.push_back(&s);
         return all;
       }()) {
    max_rows = std::max(max_rows, p->max_rows);
    for (const PruneWork& w : p->work) {
      if (w.p.method == PruningMethod::kGemFilter) continue;
      window_ws = std::max(window_ws, WindowScoresWorkspaceBytes(w.p.prompt_len, w.p.window,
                                                                 config_.num_heads,
                                                                 config_.num_kv_heads));
    }
    for (const AttnLayout& lay : p->layouts) {
      if (lay.mode == AttnMode::kDecode) {
        decode_ws = std::max(decode_ws, DecodeAttentionWorkspaceBytes(
                                            p->num_items, config_.num_heads, config_.head_dim,
                                            lay.max_k));
      } else if (lay.mode == AttnMode::kMixed) {
        mixed_k = std::max(mixed_k, lay.total_k);
      }
    }
  }
  const size_t window_off = scratch.Take(window_ws);
  const size_t decode_off = scratch.Take(decode_ws);
  const size_t kv_k_off = scratch.Take(size_t(mixed_k) * kv_dim * sizeof(Bf16));
  const size_t kv_v_off = scratch.Take(size_t(mixed_k) * kv_dim * sizeof(Bf16));
  const size_t final_off = scratch.Take(size_t(b) * config_.hidden_size * sizeof(Bf16));

  // --- Device memory; growth happens here, before any work is queued. ---
  CLAA_RETURN_IF_ERROR(ReserveActivations(max_rows));
  CLAA_RETURN_IF_ERROR(blob_host_.Reserve(blob.bytes()));
  CLAA_RETURN_IF_ERROR(blob_dev_.Reserve(blob.bytes()));
  CLAA_RETURN_IF_ERROR(scratch_.Reserve(scratch.bytes()));
  const int logit_rows = all_logits ? plan.total_out() : b;
  const size_t logits_bytes =
      logits != nullptr ? size_t(logit_rows) * config_.vocab_size * sizeof(float) : 0;
  CLAA_RETURN_IF_ERROR(logits_dev_.Reserve(logits_bytes));
  size_t kept_bytes = 0;
  for (const PruneWork& w : plan.work) kept_bytes += size_t(w.p.keep) * sizeof(int32_t);
  for (const PassPlan& s : scoring) kept_bytes += size_t(s.work[0].p.keep) * sizeof(int32_t);
  CLAA_RETURN_IF_ERROR(out_host_.Reserve(logits_bytes + kept_bytes));
  // Final-norm hidden states (embeddings, scoring on the host): rank 0, all final rows at once.
  const bool want_hidden =
      tp_.rank == 0 && std::any_of(batch.begin(), batch.end(), [](const ForwardItem& item) {
        return item.final_hidden != nullptr;
      });
  const size_t hidden_bytes =
      want_hidden ? size_t(plan.total_out()) * config_.hidden_size * sizeof(Bf16) : 0;
  CLAA_RETURN_IF_ERROR(final_hidden_dev_.Reserve(hidden_bytes));
  CLAA_RETURN_IF_ERROR(final_hidden_host_.Reserve(hidden_bytes));
  CLAA_ASSIGN_OR_RETURN(const ReusePlan reuse, PlanReuse(batch));

  marks_.clear();
  CLAA_RETURN_IF_ERROR(Mark(OpGroup::kUpload));
  std::memcpy(blob_host_.get(), blob.data().data(), blob.bytes());
  CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(blob_dev_.get(), blob_host_.get(), blob.bytes(),
                                            cudaMemcpyHostToDevice, stream_));
  PassContext ctx;
  ctx.blob = blob_dev_.get<int32_t>();
  ctx.scratch = scratch_.get<char>();
  ctx.window_ws = ctx.scratch + window_off;
  ctx.window_ws_bytes = window_ws;
  ctx.decode_ws = decode_ws > 0 ? ctx.scratch + decode_off : nullptr;
  ctx.decode_ws_bytes = decode_ws;
  ctx.kv_k = reinterpret_cast<Bf16*>(ctx.scratch + kv_k_off);
  ctx.kv_v = reinterpret_cast<Bf16*>(ctx.scratch + kv_v_off);

  // --- GemFilter scoring passes; their selections become the main pass's token ids. ---
  Bf16* residual = nullptr;
  const int32_t* positions = nullptr;
  for (size_t s = 0; s < scoring.size(); ++s) {
    const PassPlan& sp = scoring[s];
    CLAA_RETURN_IF_ERROR(RunPass(sp, ctx, nullptr, &residual, &positions));
    const PruneWork& w = sp.work[0];
    const int i = scoring_item[s];
    CLAA_RETURN_IF_ERROR(GatherInt32(ctx.blob + sp.tokens, sp.rows_in[0], ctx.blob + w.kept,
                                     w.p.keep, ctx.blob + plan.tokens + plan.offsets[0][i],
                                     stream_));
  }

  // --- Main pass. ---
  CLAA_RETURN_IF_ERROR(RunPass(plan, ctx, &reuse, &residual, &positions));
  CLAA_RETURN_IF_ERROR(DownloadCaptures(batch, reuse));
  if (want_hidden) {
    CLAA_RETURN_IF_ERROR(AddRmsNorm(residual, nullptr, weights_.final_norm, plan.total_out(),
                                    config_.hidden_size, float(config_.rms_norm_eps),
                                    final_hidden_dev_.get<Bf16>(), stream_));
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(final_hidden_host_.get(), final_hidden_dev_.get(),
                                              hidden_bytes, cudaMemcpyDeviceToHost, stream_));
  }

  // --- Final norm and LM head on the rows whose logits are wanted. ---
  char* out = out_host_.get<char>();
  CLAA_RETURN_IF_ERROR(Mark(OpGroup::kLmHead));
  if (logits != nullptr) {
    Bf16* normed = normed_.get<Bf16>();
    const int hidden = config_.hidden_size;
    if (all_logits) {
      CLAA_RETURN_IF_ERROR(AddRmsNorm(residual, nullptr, weights_.final_norm, logit_rows, hidden,
                                      float(config_.rms_norm_eps), normed, stream_));
    } else {
      Bf16* last = reinterpret_cast<Bf16*>(ctx.scratch + final_off);
      CLAA_RETURN_IF_ERROR(GatherRows(residual, hidden, plan.total_out(),
                                      ctx.blob + plan.last_rows, b, hidden, last, hidden,
                                      stream_));
      CLAA_RETURN_IF_ERROR(AddRmsNorm(last, nullptr, weights_.final_norm, b, hidden,
                                      float(config_.rms_norm_eps), normed, stream_));
    }
    CLAA_RETURN_IF_ERROR(gemm_->Run(normed, hidden, weights_.lm_head, hidden,
                                    logits_dev_.get<float>(), config_.vocab_size, logit_rows,
                                    config_.vocab_size, hidden, 0.0f, stream_));
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out, logits_dev_.get(), logits_bytes,
                                              cudaMemcpyDeviceToHost, stream_));
  }
  // Selections, for the reports.
  std::vector<std::pair<int, size_t>> kept_at;  // (item, byte offset in out_host_)
  size_t at = logits_bytes;
  auto download_kept = [&](int item, const int32_t* src, int keep) -> absl::Status {
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out + at, src, size_t(keep) * sizeof(int32_t),
                                              cudaMemcpyDeviceToHost, stream_));
    kept_at.push_back({item, at});
    at += size_t(keep) * sizeof(int32_t);
    return absl::OkStatus();
  };
  for (size_t s = 0; s < scoring.size(); ++s) {
    const PruneWork& w = scoring[s].work[0];
    CLAA_RETURN_IF_ERROR(download_kept(scoring_item[s], ctx.blob + w.kept, w.p.keep));
    selection_scores_[scoring_item[s]] = {w.token_scores, w.p.prefix};
  }
  for (const PruneWork& w : plan.work) {
    CLAA_RETURN_IF_ERROR(download_kept(w.item, ctx.blob + w.kept, w.p.keep));
    selection_scores_[w.item] = {w.token_scores, w.p.prefix};
  }
  CLAA_RETURN_IF_ERROR(Mark(OpGroup::kLmHead));  // closes the last interval
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  CLAA_CUDA_RETURN_IF_ERROR(cudaGetLastError());

  // --- Host results: logits, lengths, reports. ---
  // Tensor parallel: every rank ran the same batch on the same SequenceKv objects; rank 0
  // alone advances them and fills the reports (the others' selections are the same, since the
  // scores were combined before top-k).
  if (tp_.rank != 0) return absl::OkStatus();
  if (logits != nullptr) {
    logits->resize(size_t(logit_rows) * config_.vocab_size);
    std::memcpy(logits->data(), out, logits_bytes);
  }
  for (int i = 0; i < b; ++i) {
    SequenceKv* kv = batch[i].kv;
    kv->layer_lengths = plan.new_lengths[i];
    kv->num_positions += main[i].rows;
    const PrefillOptions* prefill = batch[i].prefill;
    if (prefill == nullptr || prefill->report == nullptr) continue;
    PrefillReport* report = prefill->report;
    report->layer_lengths = plan.new_lengths[i];
    report->kept_tokens.resize(batch[i].tokens.size());
    std::iota(report->kept_tokens.begin(), report->kept_tokens.end(), 0);
  }
  if (want_hidden) {
    const int hidden = config_.hidden_size;
    const Bf16* rows = final_hidden_host_.get<const Bf16>();
    for (int i = 0; i < b; ++i) {
      std::vector<float>* out_hidden = batch[i].final_hidden;
      if (out_hidden == nullptr) continue;
      const int first = plan.offsets.back()[i];
      const int count = plan.offsets.back()[i + 1] - first;
      out_hidden->resize(size_t(count) * hidden);
      for (size_t j = 0; j < out_hidden->size(); ++j) {
        (*out_hidden)[j] = Bf16ToFloat(rows[size_t(first) * hidden + j]);
      }
    }
  }
  for (const auto& [item, offset] : kept_at) {
    const PrefillOptions* prefill = batch[item].prefill;
    if (prefill == nullptr || prefill->report == nullptr) continue;
    const int keep = pruning[item].keep;
    const int32_t* src = reinterpret_cast<const int32_t*>(out + offset);
    prefill->report->kept_tokens.assign(src, src + keep);
  }
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::AllReduceRows(Bf16* rows, int count) {
  if (tp_.size == 1) return absl::OkStatus();
  return AllReduceBf16Async(tp_.group->comm(tp_.rank), rows,
                            size_t(count) * config_.hidden_size, stream_);
}

absl::Status CudaLlamaModel::CombineScores(float* scores, int count, ncclRedOp_t op) {
  if (tp_.size == 1) return absl::OkStatus();
  return AllReduceF32Async(tp_.group->comm(tp_.rank), scores, size_t(count), op, stream_);
}

absl::StatusOr<std::vector<float>> CudaLlamaModel::LastSelectionScores(int item) const {
  if (item < 0 || item >= int(selection_scores_.size()) || selection_scores_[item].second == 0) {
    return absl::NotFoundError(absl::StrFormat("item %d did not prune in the last forward", item));
  }
  const auto [offset, count] = selection_scores_[item];
  std::vector<float> out(count);
  CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data(), scratch_.get<char>() + offset,
                                       size_t(count) * sizeof(float), cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace claa::gpu
