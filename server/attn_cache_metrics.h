#ifndef CLAA_SERVER_ATTN_CACHE_METRICS_H_
#define CLAA_SERVER_ATTN_CACHE_METRICS_H_

// Prometheus metrics of AttnCache and the prefill-only RPCs, registered on the server's registry
// (ServerMetrics::registry()) so they appear on the same /metrics page:
//   claa_attn_cache_lookups_total, claa_attn_cache_hits_total, claa_attn_cache_evictions_total
//   (counters), claa_attn_cache_store_bytes (gauge), and
//   claa_prefill_only_request_seconds{rpc, attn_cache} (histogram; attn_cache = hit | miss |
//   partial | off), which shows on a dashboard what hits save.
#include <memory>
#include <string>

#include "engine/attncache/attn_cache.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace claa {

class AttnCacheMetrics : public attncache::AttnCacheObserver {
 public:
  AttnCacheMetrics(prometheus::Registry& registry, const std::string& model_name);

  // attncache::AttnCacheObserver
  void OnLookup(bool hit) override;
  void OnStoreBytes(int64_t bytes) override;
  void OnEvictions(int64_t count) override;

  // One finished prefill-only request: rpc "score" | "classify" | "embed".
  void OnRequest(const std::string& rpc, const std::string& attn_cache, double seconds);

 private:
  std::string model_name_;
  prometheus::Counter* lookups_;
  prometheus::Counter* hits_;
  prometheus::Counter* evictions_;
  prometheus::Gauge* store_bytes_;
  prometheus::Family<prometheus::Histogram>* request_seconds_;
};

}  // namespace claa

#endif  // CLAA_SERVER_ATTN_CACHE_METRICS_H_
