#include "engine/runtime/llama_model.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_format.h"
#include "engine/runtime/batch_checks.h"
#include "engine/util/status_macros.h"

namespace claa {

LlamaModel::LlamaModel(const ModelWeights* weights, Communicator* comm, PagedKvCache* cache)
    : weights_(weights), comm_(comm), cache_(cache), rope_(weights->config) {}

absl::Status LlamaModel::ValidateBatch(absl::Span<const ForwardItem> batch) const {
  return ValidateForwardBatch(batch, config(), cache_->num_blocks(), cache_->block_size());
}

absl::Status LlamaModel::AllReduce(std::vector<float>& buf, size_t count) {
  if (comm_ == nullptr || comm_->size() == 1) return absl::OkStatus();
  return comm_->AllReduceSum(buf.data(), count);
}

absl::Status LlamaModel::Forward(absl::Span<const ForwardItem> batch, std::vector<float>* logits,
                                 bool all_logits) {
  CLAA_RETURN_IF_ERROR(ValidateBatch(batch));
  const ModelWeights& w = *weights_;
  const int layers = config().num_layers;
  const int num_items = int(batch.size());

  std::vector<std::unique_ptr<PrefillPruner>> pruners(num_items);
  for (int i = 0; i < num_items; ++i) {
    if (batch[i].prefill == nullptr) continue;
    if (all_logits && batch[i].prefill->pruning.prunes()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("batch item %d: all_logits is not available for a pruned prefill", i));
    }
    pruners[i] = std::make_unique<PrefillPruner>(*batch[i].prefill, int(batch[i].tokens.size()),
                                                 layers, w.local_heads, w.local_kv_heads,
                                                 config().head_dim, comm_);
  }

  // GemFilter: a scoring pass over layers [0, pruning_layer] picks the tokens, then the main
  // pass re-runs the whole model on them at fresh positions 0..kept-1 (its cache is rewritten).
  std::vector<std::vector<int32_t>> rerun_tokens(num_items);
  for (int i = 0; i < num_items; ++i) {
    if (!pruners[i] || !pruners[i]->runs_scoring_pass()) continue;
    PassItem scoring{batch[i].kv, batch[i].tokens, 0, pruners[i].get()};
    CLAA_RETURN_IF_ERROR(RunPass(absl::MakeConstSpan(&scoring, 1),
                                 batch[i].prefill->pruning.pruning_layer + 1, /*commit=*/false,
                                 nullptr, false, nullptr));
    for (int t : pruners[i]->kept()) rerun_tokens[i].push_back(batch[i].tokens[t]);
  }

  std::vector<PassItem> items;
  items.reserve(num_items);
  for (int i = 0; i < num_items; ++i) {
    if (!rerun_tokens[i].empty()) {
      items.push_back(PassItem{batch[i].kv, rerun_tokens[i], 0, nullptr});
    } else {
      items.push_back(PassItem{batch[i].kv, batch[i].tokens, batch[i].start_pos, pruners[i].get(),
                               batch[i].attention_reuse});
    }
    items.back().final_hidden = batch[i].final_hidden;
  }
  std::vector<std::vector<int>> new_lengths;
  CLAA_RETURN_IF_ERROR(RunPass(items, layers, /*commit=*/true, logits, all_logits, &new_lengths));

  for (int i = 0; i < num_items; ++i) {
    if (!pruners[i]) continue;
    CLAA_RETURN_IF_ERROR(pruners[i]->Finish());
    PrefillReport* report = batch[i].prefill->report;
    if (report == nullptr || (comm_ != nullptr && comm_->rank() != 0)) continue;
    report->layer_lengths = new_lengths[i];
    if (batch[i].prefill->pruning.prunes()) {
      report->kept_tokens = pruners[i]->kept();
    } else {
      report->kept_tokens.resize(batch[i].tokens.size());
      for (size_t t = 0; t < batch[i].tokens.size(); ++t) report->kept_tokens[t] = int(t);
    }
  }
  return absl::OkStatus();
}

void LlamaModel::CompactRows(std::vector<int>& item_rows, int item, const std::vector<int>& kept) {
  const int hidden = config().hidden_size;
  const int num_items = int(item_rows.size());
  // Rows only move towards the front (kept is ascending, earlier items do not grow), so an
  // in-place forward sweep never overwrites a row it still has to read.
  int dst = item_offset_[item];
  auto move_row = [&](int src) {
    if (src != dst) {
      std::memmove(&hidden_[size_t(dst) * hidden], &hidden_[size_t(src) * hidden],
                   hidden * sizeof(float));
      positions_[dst] = positions_[src];
    }
    ++dst;
  };
  for (int t : kept) move_row(item_offset_[item] + t);
  item_rows[item] = int(kept.size());
  for (int j = item + 1; j < num_items; ++j) {
    const int first = item_offset_[j];
    item_offset_[j] = dst;
    for (int r = 0; r < item_rows[j]; ++r) move_row(first + r);
  }
  item_offset_[num_items] = dst;
}

absl::Status LlamaModel::RunPass(absl::Span<const PassItem> batch, int num_layers, bool commit,
                                 std::vector<float>* logits, bool all_logits,
                                 std::vector<std::vector<int>>* new_lengths) {
  const ModelConfig& c = config();
  const ModelWeights& w = *weights_;
  const int num_items = int(batch.size());
  const int layers = c.num_layers;
  const int hidden = c.hidden_size;
  const int d = c.head_dim;
  const int q_dim = w.local_heads * d;
  const int kv_dim = w.local_kv_heads * d;
  const int ffn = w.local_ffn;
  const float eps = float(c.rms_norm_eps);
  const int first_head = weights_->shard.rank * w.local_heads;
  // Items that reuse cached attention need no queries or keys; skip them when no item does.
  bool need_qk = false;
  for (const PassItem& item : batch) {
    need_qk = need_qk || item.reuse == nullptr || !item.reuse->replaces_attention();
  }

  // Snapshot what the batch needs from the shared SequenceKv (see the header on TP).
  item_offset_.resize(num_items + 1);
  past_lengths_.resize(size_t(num_items) * layers);
  std::vector<int> item_rows(num_items);
  int total = 0;
  for (int i = 0; i < num_items; ++i) {
    item_offset_[i] = total;
    item_rows[i] = int(batch[i].tokens.size());
    total += item_rows[i];
    std::copy(batch[i].kv->layer_lengths.begin(), batch[i].kv->layer_lengths.end(),
              past_lengths_.begin() + size_t(i) * layers);
  }
  item_offset_[num_items] = total;
  if (new_lengths != nullptr) {
    new_lengths->assign(num_items, std::vector<int>(layers, 0));
  }
  if (total == 0) {
    if (logits != nullptr) logits->clear();
    return absl::OkStatus();
  }

  positions_.resize(total);
  hidden_.resize(size_t(total) * hidden);
  normed_.resize(size_t(total) * hidden);
  proj_.resize(size_t(total) * hidden);
  q_.resize(size_t(total) * q_dim);
  attn_.resize(size_t(total) * q_dim);
  k_.resize(size_t(total) * kv_dim);
  v_.resize(size_t(total) * kv_dim);
  gate_.resize(size_t(total) * ffn);
  up_.resize(size_t(total) * ffn);

  for (int i = 0; i < num_items; ++i) {
    const PassItem& item = batch[i];
    for (size_t j = 0; j < item.tokens.size(); ++j) {
      const int row = item_offset_[i] + int(j);
      positions_[row] = item.start_pos + int(j);
      std::memcpy(&hidden_[size_t(row) * hidden],
                  &w.embed_tokens[size_t(item.tokens[j]) * hidden], hidden * sizeof(float));
    }
  }

  for (int l = 0; l < num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    // Rows shrink after a pruning layer; everything below works on the current count.
    total = item_offset_[num_items];
    const size_t hidden_count = size_t(total) * hidden;

    // --- Self-attention: column-parallel q/k/v, row-parallel o_proj. ---
    RmsNorm(hidden_.data(), total, hidden, lw.input_norm.data(), eps, normed_.data());
    if (need_qk) {
      Gemm(normed_.data(), total, hidden, lw.q_proj.data(), q_dim, q_.data());
      Gemm(normed_.data(), total, hidden, lw.k_proj.data(), kv_dim, k_.data());
      if (!lw.q_bias.empty()) AddBias(q_.data(), total, q_dim, lw.q_bias.data());
      if (!lw.k_bias.empty()) AddBias(k_.data(), total, kv_dim, lw.k_bias.data());
      rope_.Apply(q_.data(), total, w.local_heads, q_dim, positions_.data());
      rope_.Apply(k_.data(), total, w.local_kv_heads, kv_dim, positions_.data());
    }
    Gemm(normed_.data(), total, hidden, lw.v_proj.data(), kv_dim, v_.data());
    if (!lw.v_bias.empty()) AddBias(v_.data(), total, kv_dim, lw.v_bias.data());

    for (int i = 0; i < num_items; ++i) {
      const SequenceKv& kv = *batch[i].kv;
      const int past = past_lengths_[size_t(i) * layers + l];
      const int first = item_offset_[i];
      const int n = item_rows[i];
      if (AttentionReuse* reuse = batch[i].reuse; reuse != nullptr && reuse->replaces_attention()) {
        CLAA_RETURN_IF_ERROR(reuse->ApplyCached(l, first_head, w.local_heads, w.local_kv_heads, d,
                                                &v_[size_t(first) * kv_dim], kv_dim, n,
                                                &attn_[size_t(first) * q_dim], q_dim));
        if (new_lengths != nullptr) (*new_lengths)[i][l] = past + n;
        continue;
      }
      for (int j = 0; j < n; ++j) {
        std::memcpy(cache_->k_slot(l, kv.blocks, past + j), &k_[size_t(first + j) * kv_dim],
                    kv_dim * sizeof(float));
        std::memcpy(cache_->v_slot(l, kv.blocks, past + j), &v_[size_t(first + j) * kv_dim],
                    kv_dim * sizeof(float));
      }
      PagedCausalAttention(*cache_, l, kv.blocks, past, &q_[size_t(first) * q_dim], q_dim, n,
                           w.local_heads, &attn_[size_t(first) * q_dim], q_dim, &attn_scratch_);
      if (PrefillPruner* pruner = batch[i].pruner; pruner != nullptr) {
        const PromptQk qk{&q_[size_t(first) * q_dim], q_dim, &k_[size_t(first) * kv_dim],
                          kv_dim, n, w.local_heads, w.local_kv_heads, d};
        CLAA_RETURN_IF_ERROR(pruner->AfterAttention(l, qk, *cache_, kv.blocks));
      }
      if (AttentionReuse* reuse = batch[i].reuse; reuse != nullptr && reuse->captures()) {
        const PromptQk qk{&q_[size_t(first) * q_dim], q_dim, &k_[size_t(first) * kv_dim],
                          kv_dim, n, w.local_heads, w.local_kv_heads, d};
        CLAA_RETURN_IF_ERROR(reuse->Capture(l, first_head, qk));
      }
      if (new_lengths != nullptr) {
        (*new_lengths)[i][l] =
            past + (batch[i].pruner ? batch[i].pruner->LayerLength(l, n) : n);
      }
    }

    Gemm(attn_.data(), total, q_dim, lw.o_proj.data(), hidden, proj_.data());
    CLAA_RETURN_IF_ERROR(AllReduce(proj_, hidden_count));
    if (!lw.o_bias.empty()) AddBias(proj_.data(), total, hidden, lw.o_bias.data());
    for (size_t x = 0; x < hidden_count; ++x) hidden_[x] += proj_[x];

    // --- MLP: column-parallel gate/up, row-parallel down. ---
    RmsNorm(hidden_.data(), total, hidden, lw.post_attention_norm.data(), eps, normed_.data());
    Gemm(normed_.data(), total, hidden, lw.gate_proj.data(), ffn, gate_.data());
    Gemm(normed_.data(), total, hidden, lw.up_proj.data(), ffn, up_.data());
    SwiGlu(gate_.data(), up_.data(), size_t(total) * ffn, gate_.data());
    Gemm(gate_.data(), total, ffn, lw.down_proj.data(), hidden, proj_.data());
    CLAA_RETURN_IF_ERROR(AllReduce(proj_, hidden_count));
    for (size_t x = 0; x < hidden_count; ++x) hidden_[x] += proj_[x];

    // Token-selective propagation: past the pruning layer only the kept tokens go on, with their
    // original positions.
    for (int i = 0; i < num_items; ++i) {
      PrefillPruner* pruner = batch[i].pruner;
      if (pruner != nullptr && pruner->propagates_selectively() && pruner->SelectsAt(l)) {
        CompactRows(item_rows, i, pruner->kept());
      }
    }
  }
  total = item_offset_[num_items];

  // Every rank has passed its collectives, so all have taken their snapshot: commit once.
  if (commit && (comm_ == nullptr || comm_->rank() == 0)) {
    for (int i = 0; i < num_items; ++i) {
      SequenceKv* kv = batch[i].kv;
      kv->layer_lengths = (*new_lengths)[i];
      kv->num_positions += int(batch[i].tokens.size());
    }
  }

  if (comm_ == nullptr || comm_->rank() == 0) {
    for (int i = 0; i < num_items; ++i) {
      if (batch[i].final_hidden == nullptr) continue;
      batch[i].final_hidden->resize(size_t(item_rows[i]) * hidden);
      RmsNorm(&hidden_[size_t(item_offset_[i]) * hidden], item_rows[i], hidden,
              w.final_norm.data(), eps, batch[i].final_hidden->data());
    }
  }

  if (logits == nullptr) return absl::OkStatus();
  // Final norm + LM head on the rows whose logits are wanted only.
  const int rows = all_logits ? total : num_items;
  for (int r = 0; r < rows; ++r) {
    const int src = all_logits ? r : item_offset_[r + 1] - 1;
    RmsNorm(&hidden_[size_t(src) * hidden], 1, hidden, w.final_norm.data(), eps,
            &normed_[size_t(r) * hidden]);
  }
  logits->resize(size_t(rows) * c.vocab_size);
  Gemm(normed_.data(), rows, hidden, w.LmHead().data(), c.vocab_size, logits->data());
  return absl::OkStatus();
}

}  // namespace claa
