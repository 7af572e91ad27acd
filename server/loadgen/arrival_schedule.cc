#include "server/loadgen/arrival_schedule.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace claa::loadgen {

absl::StatusOr<std::vector<double>> MakeArrivalSchedule(const ArrivalOptions& options) {
  if (options.num_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_prompts must be >= 0, got ", options.num_requests));
  }
  if (!(options.request_rate > 0)) {  // also refuses NaN
    return absl::InvalidArgumentError(
        absl::StrCat("request_rate must be > 0 (or inf), got ", options.request_rate));
  }
  if (!(options.burstiness > 0) || std::isinf(options.burstiness)) {
    return absl::InvalidArgumentError(
        absl::StrCat("burstiness must be a finite number > 0, got ", options.burstiness));
  }
  std::vector<double> offsets(static_cast<size_t>(options.num_requests), 0.0);
  if (std::isinf(options.request_rate)) return offsets;

  std::mt19937_64 rng(options.seed);
  // gamma(k, theta) has mean k * theta = 1 / rate whatever the shape k. Shape 1 is the
  // exponential distribution; sample it directly for the common Poisson case.
  std::exponential_distribution<double> exponential(options.request_rate);
  std::gamma_distribution<double> gamma(options.burstiness,
                                        1.0 / (options.request_rate * options.burstiness));
  const bool poisson = options.burstiness == 1.0;
  double t = 0;
  for (size_t i = 1; i < offsets.size(); ++i) {
    t += poisson ? exponential(rng) : gamma(rng);
    offsets[i] = t;
  }
  return offsets;
}

}  // namespace claa::loadgen
