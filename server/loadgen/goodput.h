#ifndef CLAA_SERVER_LOADGEN_GOODPUT_H_
#define CLAA_SERVER_LOADGEN_GOODPUT_H_

// Goodput service-level objectives, as vLLM's --goodput: "ttft:MS tpot:MS e2el:MS" (any
// subset, space- or comma-separated, milliseconds). A request is good when it succeeded and
// each given metric is <= its objective.
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/loadgen/request_result.h"

namespace claa::loadgen {

struct GoodputSlos {
  std::optional<double> ttft_ms = std::nullopt;
  std::optional<double> tpot_ms = std::nullopt;
  std::optional<double> e2el_ms = std::nullopt;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};

// "" gives no objectives. Errors name the offending item.
absl::StatusOr<GoodputSlos> ParseGoodputSlos(std::string_view spec);

// True when `r` succeeded and meets every objective in `slos` (vacuously for none).
bool MeetsSlos(const RequestResult& r, const GoodputSlos& slos);

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_GOODPUT_H_
