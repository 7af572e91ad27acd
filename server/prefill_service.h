#ifndef CLAA_SERVER_PREFILL_SERVICE_H_
#define CLAA_SERVER_PREFILL_SERVICE_H_

// The public claa.v1.Prefill gRPC service (proto/claa/v1/prefill.proto): Score, Classify and
// Embed, answered by one prefill each through attncache::PrefillEngine, with AttnCache when the
// server has one and the request asks for it.
//
// Concurrency with generation: ModelRunner::Forward calls must not overlap, and the scheduler's
// worker drives the serving runner on its own thread without a lock another caller could take.
// So the prefill-only path runs on a ModelRunner of its own (built by claa-server from a copy of
// the same weights, with a small KV cache), and PrefillEngine serialises its forwards with a
// mutex. That costs the weights' memory once more, but prefill-only requests then never wait
// behind decode steps nor disturb them; sharing one runner needs a "run this between steps" hook
// in the scheduler.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "claa/v1/prefill.grpc.pb.h"
#include "engine/attncache/attn_cache.h"
#include "engine/attncache/prefill_engine.h"
#include "engine/generate/loaded_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "prometheus/registry.h"
#include "server/attn_cache_metrics.h"

namespace claa {

class PrefillService final : public v1::Prefill::Service {
 public:
  // All pointers must outlive the service; metrics may be null.
  PrefillService(const Tokenizer* tokenizer, attncache::PrefillEngine* engine,
                 AttnCacheMetrics* metrics);

  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override;
  grpc::Status Classify(grpc::ServerContext* context, const v1::ClassifyRequest* request,
                        v1::ClassifyResponse* response) override;
  grpc::Status Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                     v1::EmbedResponse* response) override;

 private:
  const Tokenizer* tokenizer_;
  attncache::PrefillEngine* engine_;
  AttnCacheMetrics* metrics_;
};

struct PrefillServingOptions {
  // AttnCache directory; empty: no cache (requests asking for one get outcome DISABLED).
  std::string cache_dir;
  int64_t cache_max_bytes = int64_t{1} << 30;
  double cache_threshold = 0.995;
  // A trained Siamese MLP (siamese_mlp.h) as the lookup feature; empty: the training-free
  // random projection.
  std::string cache_projector;
  // KV cache of the prefill-only runner (all ranks): bounds the longest prefill and how many
  // label sequences run in one forward.
  int64_t kv_cache_bytes = int64_t{64} << 20;
  // When the served model is on GPUs, the prefill-only runner is too (its own copy of the
  // weights on the same GPUs); this much device memory per GPU keeps hit maps resident.
  int64_t gpu_map_bytes = int64_t{2} << 30;
};

// Everything the service needs, owned together (members are destroyed bottom-up: the service
// before the engine, the cache before its metrics observer, the runner last).
struct PrefillServing {
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<AttnCacheMetrics> metrics;
  std::unique_ptr<attncache::AttnCache> cache;
  std::unique_ptr<attncache::PrefillEngine> engine;
  std::unique_ptr<PrefillService> service;
  std::vector<attncache::RefusedFile> refused;  // store files refused at start-up

  // Builds the prefill runner from copies of `model`'s weights (same TP size, and on the same
  // GPUs when `model` runs on GPUs), opens the cache
  // when options.cache_dir is set, and registers the metrics on `registry` (may be null).
  static absl::StatusOr<std::unique_ptr<PrefillServing>> Create(
      const LoadedModel& model, const PrefillServingOptions& options,
      prometheus::Registry* registry);
};

}  // namespace claa

#endif  // CLAA_SERVER_PREFILL_SERVICE_H_
