#include "server/attn_cache_metrics.h"

namespace claa {
namespace {

// Prefill-only requests are one forward pass: finer low buckets than vLLM's e2e ones.
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0};

}  // namespace

AttnCacheMetrics::AttnCacheMetrics(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name) {
  const prometheus::Labels labels = {{"model_name", model_name}};
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
  };
  lookups_ = counter("claa_attn_cache_lookups_total",
                     "AttnCache lookups (one per forwarded sequence of a request that asked).");
  hits_ = counter("claa_attn_cache_hits_total",
                  "AttnCache lookups that reused stored attention maps.");
  evictions_ = counter("claa_attn_cache_evictions_total",
                       "AttnCache entries evicted to stay under --attn_cache_max_mb.");
  store_bytes_ = &prometheus::BuildGauge()
                      .Name("claa_attn_cache_store_bytes")
                      .Help("Bytes of attention maps in the AttnCache store.")
                      .Register(registry)
                      .Add(labels);
  request_seconds_ = &prometheus::BuildHistogram()
                          .Name("claa_prefill_only_request_seconds")
                          .Help("Server time of Score / Classify / Embed requests, by AttnCache "
                                "outcome.")
                          .Register(registry);
}

void AttnCacheMetrics::OnLookup(bool hit) {
  lookups_->Increment();
  if (hit) hits_->Increment();
}

void AttnCacheMetrics::OnStoreBytes(int64_t bytes) { store_bytes_->Set(double(bytes)); }

void AttnCacheMetrics::OnEvictions(int64_t count) { evictions_->Increment(double(count)); }

void AttnCacheMetrics::OnRequest(const std::string& rpc, const std::string& attn_cache,
                                 double seconds) {
  request_seconds_
      ->Add({{"model_name", model_name_}, {"rpc", rpc}, {"attn_cache", attn_cache}},
            kRequestBuckets)
      .Observe(seconds);
}

}  // namespace claa
