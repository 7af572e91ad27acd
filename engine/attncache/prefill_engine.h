#ifndef CLAA_ENGINE_ATTNCACHE_PREFILL_ENGINE_H_
#define CLAA_ENGINE_ATTNCACHE_PREFILL_ENGINE_H_

// Prefill-only work -- scoring continuations, classifying among labels, pooled embeddings -- run
// on a ModelRunner with AttnCache (DESIGN.md §3) in the loop: each forwarded sequence is looked
// up; a hit reuses the stored maps in every layer, a miss runs normally and, when asked, its maps
// are stored.
//
// Threading: calls are serialised by one mutex, because ModelRunner::Forward calls must not
// overlap. The runner must not be driven by anyone else (the server gives this engine a runner
// of its own, see server/prefill_service.h).
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/attncache/attn_cache.h"
#include "engine/runtime/model_runner.h"

namespace claa::attncache {

enum class CacheMode { kOff, kLookup, kLookupAndInsert };

// What the cache did for one forwarded sequence.
struct CacheOutcome {
  bool consulted = false;  // a lookup ran (mode not off and the engine has a cache)
  bool hit = false;
  double similarity = 0.0;  // see CacheLookup
  bool inserted = false;
};

struct ContinuationScore {
  double logprob = 0.0;               // sum over the continuation's tokens
  std::vector<float> token_logprobs;  // one per continuation token
  CacheOutcome cache;                 // of the sequence that scored it
};

struct ScoreResult {
  std::vector<ContinuationScore> continuations;
  std::vector<CacheOutcome> sequences;  // one per distinct forwarded sequence
};

enum class Pooling { kMean, kLast };

struct EmbedResult {
  std::vector<float> embedding;  // hidden_size values
  CacheOutcome cache;
};

class PrefillEngine {
 public:
  // runner (not owned) must outlive the engine and be used by nobody else. cache may be null (no
  // AttnCache: every mode behaves as off).
  PrefillEngine(ModelRunner* runner, AttnCache* cache);

  // Log-probability of each continuation after the prompt: log P(c_1..c_m | prompt) summed over
  // its tokens. A continuation of m tokens forwards prompt + its first m - 1 tokens; identical
  // sequences (e.g. every single-token continuation) are forwarded once.
  absl::StatusOr<ScoreResult> Score(absl::Span<const int32_t> prompt,
                                    const std::vector<std::vector<int32_t>>& continuations,
                                    CacheMode mode);

  // The prompt's final-norm hidden states pooled over tokens (mean) or the last one; L2
  // normalised when `normalize`.
  absl::StatusOr<EmbedResult> Embed(absl::Span<const int32_t> prompt, Pooling pooling,
                                    bool normalize, CacheMode mode);

  // Longest sequence one forward may run (position limit and the runner's KV blocks).
  int max_sequence_tokens() const;
  const ModelConfig& config() const { return runner_->config(); }
  AttnCache* cache() const { return cache_; }

 private:
  struct Job;
  // Runs the jobs (lookups, forwards in groups that fit the KV cache, inserts). Caller holds mu_.
  absl::Status RunJobs(std::vector<Job>& jobs, CacheMode mode);
  absl::Status ForwardGroup(std::vector<Job*>& group);
  absl::Status CheckTokens(absl::Span<const int32_t> tokens, int extra) const;

  ModelRunner* runner_;
  AttnCache* cache_;
  std::mutex mu_;
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_PREFILL_ENGINE_H_
