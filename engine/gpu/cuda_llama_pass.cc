// CudaLlamaModel's layer loop: one pass of the plan (batch_plan.h) over the decoder layers.
#include <cmath>
#include <utility>

#include "engine/gpu/cuda_llama_model.h"
#include "engine/util/status_macros.h"
#include "kernels/model_kernels.h"

namespace claa::gpu {

absl::Status CudaLlamaModel::RunPass(const PassPlan& plan, const PassContext& ctx,
                                     const ReusePlan* reuse, Bf16** residual_out,
                                     const int32_t** positions_out) {
  const ModelConfig& c = config_;
  const int hidden = c.hidden_size;
  const int d = c.head_dim;
  const int q_dim = c.num_heads * d;
  const int kv_dim = c.num_kv_heads * d;
  const int qkv_dim = q_dim + 2 * kv_dim;
  const int ffn = c.intermediate_size;
  const float eps = float(c.rms_norm_eps);

  int cur = 0;  // which residual / positions buffer holds the live rows
  Bf16* residual = residual_[cur].get<Bf16>();
  const int32_t* positions = ctx.blob + plan.positions;
  Bf16* normed = normed_.get<Bf16>();
  Bf16* qkv = qkv_.get<Bf16>();
  Bf16* attn = attn_.get<Bf16>();
  Bf16* gate_up = gate_up_.get<Bf16>();

  CLAA_RETURN_IF_ERROR(Mark(OpGroup::kEmbed));
  CLAA_RETURN_IF_ERROR(EmbeddingGather(weights_.embed, c.vocab_size, hidden,
                                       ctx.blob + plan.tokens, plan.total_in(), residual,
                                       stream_));
  size_t next_compaction = 0;
  for (int l = 0; l < plan.num_layers; ++l) {
    const DeviceLayerWeights& w = weights_.layers[l];
    const AttnLayout& lay = plan.layouts[plan.layer_layout[l]];
    const int rows = lay.total_rows;

    // --- Attention block. ---
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kNorm));
    CLAA_RETURN_IF_ERROR(
        AddRmsNorm(residual, nullptr, w.input_norm, rows, hidden, eps, normed, stream_));
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kQkvGemm));
    if (reuse != nullptr && reuse->all_hits) {
      // Every item reuses stored maps: only V is needed (its rows of the fused weight), no
      // RoPE, no cache writes (a hit's sequence is never extended), no Q/K attention.
      const int v_col = q_dim + kv_dim;
      CLAA_RETURN_IF_ERROR(gemm_->Run(normed, hidden, w.qkv + int64_t(v_col) * hidden, hidden,
                                      qkv + v_col, qkv_dim, rows, kv_dim, hidden, 0.f, stream_));
      if (w.qkv_bias != nullptr) {
        CLAA_RETURN_IF_ERROR(
            AddBiasRows(qkv + v_col, qkv_dim, rows, kv_dim, w.qkv_bias + v_col, stream_));
      }
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kAttention));
      CLAA_RETURN_IF_ERROR(ReuseAttention(plan, *reuse, l));
    } else {
      CLAA_RETURN_IF_ERROR(
          gemm_->Run(normed, hidden, w.qkv, hidden, qkv, qkv_dim, rows, qkv_dim, hidden, 0.f,
                     stream_));
      if (w.qkv_bias != nullptr) {
        CLAA_RETURN_IF_ERROR(AddBiasRows(qkv, qkv_dim, rows, qkv_dim, w.qkv_bias, stream_));
      }
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kRope));
      CLAA_RETURN_IF_ERROR(ApplyRope(qkv, rows, c.num_heads, d, qkv_dim, positions,
                                     inv_freq_.get<float>(), stream_));
      CLAA_RETURN_IF_ERROR(ApplyRope(qkv + q_dim, rows, c.num_kv_heads, d, qkv_dim, positions,
                                     inv_freq_.get<float>(), stream_));
      if (lay.writes_cache) {
        CLAA_RETURN_IF_ERROR(Mark(OpGroup::kKvWrite));
        CLAA_RETURN_IF_ERROR(WritePagedKv(CacheLayer(l), qkv + q_dim, qkv_dim,
                                          qkv + q_dim + kv_dim, qkv_dim, ctx.blob + lay.slots,
                                          rows, stream_));
      }
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kAttention));
      CLAA_RETURN_IF_ERROR(Attention(plan, lay, l, ctx));
      // Mixed batches: hits overwrite the attention rows just computed, captures read Q/K.
      if (reuse != nullptr && reuse->any) CLAA_RETURN_IF_ERROR(ReuseAttention(plan, *reuse, l));
      if (!plan.work.empty()) CLAA_RETURN_IF_ERROR(Mark(OpGroup::kPruning));
      CLAA_RETURN_IF_ERROR(PruningAfterAttention(plan, l, ctx));
    }
    // GemFilter's scoring pass needs nothing past the selecting layer's scores.
    if (plan.scoring_pass && l == plan.num_layers - 1) break;

    // Row-parallel projections: rank 0 adds its partial sum to the residual (and the bias, once),
    // the other ranks overwrite theirs; the all-reduce then leaves residual + sum of the parts.
    const float accumulate = tp_.rank == 0 ? 1.f : 0.f;
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kOGemm));
    CLAA_RETURN_IF_ERROR(gemm_->Run(attn, q_dim, w.o, q_dim, residual, hidden, rows, hidden,
                                    q_dim, accumulate, stream_));
    if (w.o_bias != nullptr && tp_.rank == 0) {
      CLAA_RETURN_IF_ERROR(AddBiasRows(residual, hidden, rows, hidden, w.o_bias, stream_));
    }
    if (tp_.size > 1) {
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kAllReduce));
      CLAA_RETURN_IF_ERROR(AllReduceRows(residual, rows));
    }

    // --- MLP block. ---
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kNorm));
    CLAA_RETURN_IF_ERROR(
        AddRmsNorm(residual, nullptr, w.post_norm, rows, hidden, eps, normed, stream_));
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kGateUpGemm));
    CLAA_RETURN_IF_ERROR(gemm_->Run(normed, hidden, w.gate_up, hidden, gate_up, 2 * ffn, rows,
                                    2 * ffn, hidden, 0.f, stream_));
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kSwiGlu));
    CLAA_RETURN_IF_ERROR(
        SwiGlu(gate_up, 2 * ffn, gate_up + ffn, 2 * ffn, rows, ffn, gate_up, 2 * ffn, stream_));
    CLAA_RETURN_IF_ERROR(Mark(OpGroup::kDownGemm));
    CLAA_RETURN_IF_ERROR(gemm_->Run(gate_up, 2 * ffn, w.down, ffn, residual, hidden, rows,
                                    hidden, ffn, accumulate, stream_));
    if (tp_.size > 1) {
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kAllReduce));
      CLAA_RETURN_IF_ERROR(AllReduceRows(residual, rows));
    }

    // --- Token-selective propagation: only the kept rows (and their positions) go on. ---
    if (next_compaction < plan.compactions.size() &&
        plan.compactions[next_compaction].layer == l) {
      const Compaction& cp = plan.compactions[next_compaction++];
      CLAA_RETURN_IF_ERROR(Mark(OpGroup::kPropagation));
      int32_t* gather = ctx.blob + cp.gather;
      for (const Compaction::Segment& seg : cp.pruned) {
        const PruneWork& pw = plan.work[seg.work];
        CLAA_RETURN_IF_ERROR(AddOffsetInt32(ctx.blob + pw.kept, pw.p.keep, seg.old_offset,
                                            gather + seg.new_offset, stream_));
      }
      Bf16* next_residual = residual_[cur ^ 1].get<Bf16>();
      int32_t* next_positions = positions_[cur ^ 1].get<int32_t>();
      CLAA_RETURN_IF_ERROR(GatherRows(residual, hidden, rows, gather, cp.new_total, hidden,
                                      next_residual, hidden, stream_));
      CLAA_RETURN_IF_ERROR(
          GatherInt32(positions, rows, gather, cp.new_total, next_positions, stream_));
      cur ^= 1;
      residual = next_residual;
      positions = next_positions;
    }
  }
  *residual_out = residual;
  *positions_out = positions;
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::Attention(const PassPlan& plan, const AttnLayout& lay, int layer,
                                       const PassContext& ctx) {
  const ModelConfig& c = config_;
  const int d = c.head_dim;
  const int q_dim = c.num_heads * d;
  const int kv_dim = c.num_kv_heads * d;
  const int qkv_dim = q_dim + 2 * kv_dim;
  const float scale = 1.0f / std::sqrt(float(d));
  Bf16* qkv = qkv_.get<Bf16>();
  Bf16* attn = attn_.get<Bf16>();
  const PagedKvLayer cache = CacheLayer(layer);

  if (lay.mode == AttnMode::kDecode) {
    DecodeAttentionArgs a;
    a.q = qkv;
    a.q_stride = qkv_dim;
    a.cache = cache;
    a.block_tables = ctx.blob + plan.block_tables;
    a.max_blocks_per_seq = plan.max_blocks;
    a.kv_lens = ctx.blob + lay.k_lens;
    a.per_head_lengths = false;  // CLAA keeps the same count per KV head: per-layer lengths
    a.max_kv_len = lay.max_k;
    a.batch = plan.num_items;
    a.num_heads = c.num_heads;
    a.scale = scale;
    a.out = attn;
    a.out_stride = q_dim;
    a.workspace = ctx.decode_ws;
    a.workspace_bytes = ctx.decode_ws_bytes;
    return PagedDecodeAttention(a, stream_);
  }

  VarlenAttentionArgs a;
  a.q = qkv;
  a.q_stride = qkv_dim;
  a.out = attn;
  a.out_stride = q_dim;
  a.cu_seqlens_q = ctx.blob + lay.cu_q;
  a.batch = plan.num_items;
  a.max_seqlen_q = lay.max_q;
  a.num_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = d;
  a.scale = scale;
  if (lay.mode == AttnMode::kFresh && pack_kv_) {
    Bf16* packed = kv_pack_.get<Bf16>();
    const size_t row_bytes = size_t(2 * kv_dim) * sizeof(Bf16);
    CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(packed, row_bytes, qkv + q_dim,
                                                size_t(qkv_dim) * sizeof(Bf16), row_bytes,
                                                lay.total_rows, cudaMemcpyDeviceToDevice,
                                                stream_));
    a.k = packed;
    a.k_stride = 2 * kv_dim;
    a.v = packed + kv_dim;
    a.v_stride = 2 * kv_dim;
  } else if (lay.mode == AttnMode::kFresh) {
    a.k = qkv + q_dim;
    a.k_stride = qkv_dim;
    a.v = qkv + q_dim + kv_dim;
    a.v_stride = qkv_dim;
  } else {
    // Cached + new keys of every item, contiguous (the new ones were just written to the cache).
    CLAA_RETURN_IF_ERROR(GatherPagedKv(cache, ctx.blob + plan.block_tables, plan.max_blocks,
                                       ctx.blob + lay.k_lens, ctx.blob + lay.cu_k,
                                       plan.num_items, lay.max_k, ctx.kv_k, ctx.kv_v, kv_dim,
                                       stream_));
    a.k = ctx.kv_k;
    a.k_stride = kv_dim;
    a.v = ctx.kv_v;
    a.v_stride = kv_dim;
    a.cu_seqlens_k = ctx.blob + lay.cu_k;
  }
  return FastHeadDim() ? FlashAttentionPrefill(a, stream_) : VarlenAttentionAnyHeadDim(a, stream_);
}

// PrefillPruner::AfterAttention on the device: window scores at the layers that need them,
// per-head compaction of the cache (layers min_layer..pruning_layer), and at the pruning layer
// the selection (z-score max / head sum / given scores, then top-k). GemFilter's scoring pass
// scores the last query instead.
absl::Status CudaLlamaModel::PruningAfterAttention(const PassPlan& plan, int layer,
                                                   const PassContext& ctx) {
  const ModelConfig& c = config_;
  const int d = c.head_dim;
  const int q_dim = c.num_heads * d;
  const int kv_dim = c.num_kv_heads * d;
  const int qkv_dim = q_dim + 2 * kv_dim;
  const int kvh = c.num_kv_heads;
  for (const PruneWork& w : plan.work) {
    const ItemPruning& p = w.p;
    if (layer > p.pruning_layer) continue;
    const Bf16* q_item = qkv_.get<Bf16>() + int64_t(plan.offsets[layer][w.item]) * qkv_dim;
    const Bf16* k_item = q_item + q_dim;
    float* token_scores = reinterpret_cast<float*>(ctx.scratch + w.token_scores);
    int32_t* kept = ctx.blob + w.kept;
    const int top = p.keep - p.window;  // ranked tokens kept besides the window

    if (p.method == PruningMethod::kGemFilter) {
      if (layer != p.pruning_layer) continue;
      LastQueryScoresArgs a;
      a.q_last = q_item + int64_t(p.prompt_len - 1) * qkv_dim;
      a.k = k_item;
      a.k_stride = qkv_dim;
      a.prompt_len = p.prompt_len;
      a.window = p.window;
      a.num_heads = c.num_heads;
      a.num_kv_heads = kvh;
      a.head_dim = d;
      a.pool_kernel = p.pool;
      a.out = reinterpret_cast<float*>(ctx.scratch + w.temp);
      a.out_stride = p.prefix;
      a.workspace = ctx.scratch + w.raw;
      a.workspace_bytes = LastQueryScoresWorkspaceBytes(p.prompt_len, p.window, kvh);
      CLAA_RETURN_IF_ERROR(LastQueryScores(a, stream_));
      CLAA_RETURN_IF_ERROR(SumRows(a.out, kvh, p.prefix, p.prefix, token_scores, stream_));
      CLAA_RETURN_IF_ERROR(CombineScores(token_scores, p.prefix, ncclSum));
      CLAA_RETURN_IF_ERROR(
          TopKAscending(token_scores, 1, p.prefix, p.prefix, top, kept, p.keep, stream_));
      continue;
    }

    const bool scorer = p.ScorerNeeds(layer);
    if (scorer || p.CompactsCache(layer)) {
      float* scores = reinterpret_cast<float*>(ctx.scratch + (scorer ? w.history : w.temp));
      if (scorer) {
        scores += int64_t(layer - (p.pruning_layer - p.agg + 1)) * kvh * p.prefix;
      }
      WindowScoresArgs a;
      a.q_window = q_item + int64_t(p.prefix) * qkv_dim;
      a.q_stride = qkv_dim;
      a.k = k_item;
      a.k_stride = qkv_dim;
      a.prompt_len = p.prompt_len;
      a.window = p.window;
      a.num_heads = c.num_heads;
      a.num_kv_heads = kvh;
      a.head_dim = d;
      a.scale = 1.0f / std::sqrt(float(d));
      a.pool_kernel = p.pool;
      a.out = scores;
      a.out_stride = p.prefix;
      a.workspace = ctx.window_ws;
      a.workspace_bytes = ctx.window_ws_bytes;
      CLAA_RETURN_IF_ERROR(WindowScores(a, stream_));
      if (p.CompactsCache(layer)) {
        // Each KV head keeps its own top tokens of this layer (+ the window), written to slots
        // 0..keep-1 straight from this layer's K/V rows.
        int32_t* head_kept = ctx.blob + w.head_kept;
        CLAA_RETURN_IF_ERROR(
            TopKAscending(scores, kvh, p.prefix, p.prefix, top, head_kept, p.keep, stream_));
        CLAA_RETURN_IF_ERROR(CompactKvByHead(
            k_item, k_item + kv_dim, qkv_dim, nullptr, head_kept, p.keep, CacheLayer(layer),
            ctx.blob + plan.block_tables + int64_t(w.item) * plan.max_blocks, stream_));
      }
    }
    if (!p.SelectsAt(layer)) continue;
    float* history = reinterpret_cast<float*>(ctx.scratch + w.history);
    switch (p.method) {
      case PruningMethod::kClaa:
        CLAA_RETURN_IF_ERROR(ZScoreMax(history, p.agg * kvh, p.prefix, p.prefix, token_scores,
                                       ctx.scratch + w.zstats, 16 * size_t(p.agg) * kvh,
                                       stream_));
        // Each rank's z-scores are per (layer, local KV head), so the max of the ranks' maxima
        // is the max over all heads: exact, and the same on every rank.
        CLAA_RETURN_IF_ERROR(CombineScores(token_scores, p.prefix, ncclMax));
        break;
      case PruningMethod::kFastKv:
        CLAA_RETURN_IF_ERROR(SumRows(history, kvh, p.prefix, p.prefix, token_scores, stream_));
        CLAA_RETURN_IF_ERROR(CombineScores(token_scores, p.prefix, ncclSum));
        break;
      case PruningMethod::kOracle:
        CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(token_scores, ctx.blob + w.oracle,
                                                  size_t(p.prefix) * sizeof(float),
                                                  cudaMemcpyDeviceToDevice, stream_));
        break;
      default:
        return absl::InternalError("unexpected pruning method in the selection");
    }
    CLAA_RETURN_IF_ERROR(
        TopKAscending(token_scores, 1, p.prefix, p.prefix, top, kept, p.keep, stream_));
  }
  return absl::OkStatus();
}

}  // namespace claa::gpu
