#include "engine/attncache/prefill_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "engine/attncache/attention_reuse.h"
#include "engine/runtime/cpu_ops.h"
#include "engine/util/status_macros.h"

namespace claa::attncache {

struct PrefillEngine::Job {
  std::vector<int32_t> tokens;
  std::vector<float> hidden;  // final-norm hidden states, [tokens, hidden_size]
  CacheOutcome cache;
  CacheLookup lookup;  // a hit's entry stays mapped while the job lives
  std::unique_ptr<CachedAttention> cached;
  std::unique_ptr<AttentionCapture> capture;
  SequenceKv kv;
};

PrefillEngine::PrefillEngine(ModelRunner* runner, AttnCache* cache)
    : runner_(runner), cache_(cache) {}

int PrefillEngine::max_sequence_tokens() const {
  const int64_t kv = int64_t(runner_->block_manager().num_blocks()) * runner_->block_size();
  const int pos = config().max_position_embeddings;
  return int(pos > 0 ? std::min<int64_t>(pos, kv) : kv);
}

absl::Status PrefillEngine::CheckTokens(absl::Span<const int32_t> tokens, int extra) const {
  if (tokens.empty()) return absl::InvalidArgumentError("empty prompt");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at index ", i,
                                                     " is outside [0, ", config().vocab_size, ")"));
    }
  }
  if (int64_t(tokens.size()) + extra > max_sequence_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(tokens.size() + extra, " tokens exceed the ",
                                                   max_sequence_tokens(), " a prefill may run"));
  }
  return absl::OkStatus();
}

absl::Status PrefillEngine::ForwardGroup(std::vector<Job*>& group) {
  std::vector<ForwardItem> items;
  for (Job* job : group) {
    ForwardItem item;
    item.kv = &job->kv;
    item.tokens = job->tokens;
    item.final_hidden = &job->hidden;
    if (job->cached) item.attention_reuse = job->cached.get();
    if (job->capture) item.attention_reuse = job->capture.get();
    items.push_back(item);
  }
  std::vector<float> logits;
  absl::Status s = runner_->Forward(items, &logits);
  for (Job* job : group) ReleaseSequence(runner_->block_manager(), &job->kv);
  group.clear();
  return s;
}

absl::Status PrefillEngine::RunJobs(std::vector<Job>& jobs, CacheMode mode) {
  const ModelConfig& c = config();
  const bool use_cache = cache_ != nullptr && mode != CacheMode::kOff;
  for (Job& job : jobs) {
    job.kv = SequenceKv(c.num_layers);
    if (!use_cache) continue;
    CLAA_ASSIGN_OR_RETURN(job.lookup, cache_->Lookup(job.tokens));
    job.cache.consulted = true;
    job.cache.hit = job.lookup.hit;
    job.cache.similarity = job.lookup.similarity;
    if (job.lookup.hit) {
      job.cached =
          std::make_unique<CachedAttention>(job.lookup.entry->maps(), job.lookup.entry->id());
    } else if (mode == CacheMode::kLookupAndInsert) {
      job.capture =
          std::make_unique<AttentionCapture>(c.num_layers, c.num_heads, int(job.tokens.size()));
    }
  }
  // Hits and the rest run in separate forwards: a batch of hits only skips the Q/K projections
  // altogether (the model computes them for a whole batch at once).
  for (const bool hits : {true, false}) {
    std::vector<Job*> group;
    for (Job& job : jobs) {
      if ((job.cached != nullptr) != hits) continue;
      absl::Status s = ReserveTokens(runner_->block_manager(), &job.kv, int(job.tokens.size()));
      if (!s.ok() && !group.empty()) {
        CLAA_RETURN_IF_ERROR(ForwardGroup(group));
        s = ReserveTokens(runner_->block_manager(), &job.kv, int(job.tokens.size()));
      }
      if (!s.ok()) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "a sequence of ", job.tokens.size(), " tokens does not fit the prefill KV cache (",
            runner_->block_manager().num_free(), " free blocks of ", runner_->block_size(),
            " tokens)"));
      }
      group.push_back(&job);
    }
    if (!group.empty()) CLAA_RETURN_IF_ERROR(ForwardGroup(group));
  }
  for (Job& job : jobs) {
    if (!job.capture) continue;
    absl::StatusOr<int64_t> id =
        cache_->Insert(job.tokens, job.lookup.feature, job.capture->view());
    job.cache.inserted = id.ok();
    // Not the request's failure: the answer is computed; only the reuse is lost.
    if (!id.ok())
      std::fprintf(stderr, "attn cache: not inserted: %s\n", id.status().ToString().c_str());
    job.capture.reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<ScoreResult> PrefillEngine::Score(
    absl::Span<const int32_t> prompt, const std::vector<std::vector<int32_t>>& continuations,
    CacheMode mode) {
  const ModelConfig& c = config();
  if (continuations.empty()) return absl::InvalidArgumentError("no continuations");
  size_t longest = 0;
  for (const auto& cont : continuations) {
    if (cont.empty()) return absl::InvalidArgumentError("empty continuation");
    CLAA_RETURN_IF_ERROR(CheckTokens(cont, 0));
    longest = std::max(longest, cont.size());
  }
  CLAA_RETURN_IF_ERROR(CheckTokens(prompt, int(longest) - 1));

  std::lock_guard<std::mutex> lock(mu_);
  // Distinct sequences: prompt + all but the last token of each continuation.
  std::vector<Job> jobs;
  std::map<std::vector<int32_t>, int> index_of;
  std::vector<int> job_of(continuations.size());
  for (size_t j = 0; j < continuations.size(); ++j) {
    std::vector<int32_t> seq(prompt.begin(), prompt.end());
    seq.insert(seq.end(), continuations[j].begin(), continuations[j].end() - 1);
    auto [it, fresh] = index_of.emplace(seq, int(jobs.size()));
    if (fresh) {
      jobs.emplace_back();
      jobs.back().tokens = std::move(seq);
    }
    job_of[j] = it->second;
  }
  CLAA_RETURN_IF_ERROR(RunJobs(jobs, mode));

  ScoreResult result;
  const int hidden = c.hidden_size;
  const float* lm_head = runner_->weights(0).LmHead().data();
  std::vector<float> logits;
  for (size_t j = 0; j < continuations.size(); ++j) {
    const Job& job = jobs[job_of[j]];
    const std::vector<int32_t>& cont = continuations[j];
    const int m = int(cont.size());
    const int first_row = int(prompt.size()) - 1;  // predicts the continuation's first token
    // Only these m rows need the LM head, not the whole sequence.
    logits.resize(size_t(m) * c.vocab_size);
    Gemm(&job.hidden[size_t(first_row) * hidden], m, hidden, lm_head, c.vocab_size, logits.data());
    ContinuationScore score;
    for (int r = 0; r < m; ++r) {
      const float* row = &logits[size_t(r) * c.vocab_size];
      const float max_v = *std::max_element(row, row + c.vocab_size);
      double sum = 0.0;
      for (int v = 0; v < c.vocab_size; ++v) sum += std::exp(double(row[v]) - max_v);
      const double lp = double(row[cont[r]]) - max_v - std::log(sum);
      score.token_logprobs.push_back(float(lp));
      score.logprob += lp;
    }
    score.cache = job.cache;
    result.continuations.push_back(std::move(score));
  }
  for (const Job& job : jobs) result.sequences.push_back(job.cache);
  return result;
}

absl::StatusOr<EmbedResult> PrefillEngine::Embed(absl::Span<const int32_t> prompt, Pooling pooling,
                                                 bool normalize, CacheMode mode) {
  CLAA_RETURN_IF_ERROR(CheckTokens(prompt, 0));
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Job> jobs(1);
  jobs[0].tokens.assign(prompt.begin(), prompt.end());
  CLAA_RETURN_IF_ERROR(RunJobs(jobs, mode));
  const int hidden = config().hidden_size;
  const int n = int(prompt.size());
  const std::vector<float>& h = jobs[0].hidden;
  EmbedResult result;
  result.cache = jobs[0].cache;
  std::vector<double> acc(hidden, 0.0);
  if (pooling == Pooling::kLast) {
    for (int i = 0; i < hidden; ++i) acc[i] = h[size_t(n - 1) * hidden + i];
  } else {
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < hidden; ++i) acc[i] += h[size_t(t) * hidden + i];
    }
    for (double& x : acc) x /= n;
  }
  double norm = 1.0;
  if (normalize) {
    double sq = 0.0;
    for (double x : acc) sq += x * x;
    norm = sq > 0.0 ? std::sqrt(sq) : 1.0;
  }
  result.embedding.resize(hidden);
  for (int i = 0; i < hidden; ++i) result.embedding[i] = float(acc[i] / norm);
  return result;
}

}  // namespace claa::attncache
