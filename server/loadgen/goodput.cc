#include "server/loadgen/goodput.h"

#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace claa::loadgen {

absl::StatusOr<GoodputSlos> ParseGoodputSlos(std::string_view spec) {
  GoodputSlos slos;
  const absl::string_view text(spec.data(), spec.size());
  for (absl::string_view item : absl::StrSplit(text, absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
    const size_t colon = item.find(':');
    const std::string item_str(item);
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("goodput: expected KEY:MILLISECONDS, got '", item_str, "'"));
    }
    const absl::string_view key = item.substr(0, colon);
    double ms = 0;
    if (!absl::SimpleAtod(item.substr(colon + 1), &ms) || !std::isfinite(ms) || ms <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "goodput: '", item_str, "' needs a positive number of milliseconds after ':'"));
    }
    std::optional<double>* slot = key == "ttft"   ? &slos.ttft_ms
                                  : key == "tpot" ? &slos.tpot_ms
                                  : key == "e2el" ? &slos.e2el_ms
                                                  : nullptr;
    if (slot == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("goodput: unknown metric '", std::string(key),
                                                     "' (use ttft, tpot or e2el)"));
    }
    if (slot->has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("goodput: '", std::string(key), "' is given twice"));
    }
    *slot = ms;
  }
  return slos;
}

bool MeetsSlos(const RequestResult& r, const GoodputSlos& slos) {
  if (!r.success) return false;
  if (slos.ttft_ms && r.ttft_s * 1e3 > *slos.ttft_ms) return false;
  if (slos.tpot_ms && Tpot(r) * 1e3 > *slos.tpot_ms) return false;
  if (slos.e2el_ms && r.e2el_s * 1e3 > *slos.e2el_ms) return false;
  return true;
}

}  // namespace claa::loadgen
