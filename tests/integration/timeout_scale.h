#ifndef CLAA_TESTS_INTEGRATION_TIMEOUT_SCALE_H_
#define CLAA_TESTS_INTEGRATION_TIMEOUT_SCALE_H_

// How long the integration tests wait. Their waits and deadlines are written for a release
// build; a sanitized build runs the same work 2-15x slower (ThreadSanitizer most), and a
// deadline sized for the release build then fails a test that is merely slow. The environment
// variable CLAA_TEST_TIMEOUT_SCALE (a number, default 1; tests/sanitizers/run_sanitized.sh sets
// it) multiplies every server start-up wait, RPC deadline and polling loop the fixtures and
// tests use (Scaled), and the servers' own deadlines between router and workers
// (ServerTimeoutFlags), so that a slow worker is not mistaken for a dead one. Only waiting
// grows: a test that passes takes as long as its work does.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace claa::testing {

// CLAA_TEST_TIMEOUT_SCALE, read once; 1 when unset, and for values below 1 or not numbers
// (shorter waits than a release build needs would only make tests flaky).
inline double TimeoutScale() {
  static const double scale = [] {
    const char* text = std::getenv("CLAA_TEST_TIMEOUT_SCALE");
    if (text == nullptr || *text == '\0') return 1.0;
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !std::isfinite(value) || value < 1.0) {
      std::cerr << "CLAA_TEST_TIMEOUT_SCALE=" << text << " is not a number >= 1; using 1"
                << std::endl;
      return 1.0;
    }
    return value;
  }();
  return scale;
}

// `release` (a wait sized for a release build) times TimeoutScale(), in milliseconds.
template <class Rep, class Period>
std::chrono::milliseconds Scaled(std::chrono::duration<Rep, Period> release) {
  const double ms = std::chrono::duration<double, std::milli>(release).count() * TimeoutScale();
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

// A gRPC deadline (ClientContext::set_deadline, Channel::WaitForConnected) `release` from now,
// scaled.
template <class Rep, class Period>
std::chrono::system_clock::time_point ScaledDeadline(std::chrono::duration<Rep, Period> release) {
  return std::chrono::system_clock::now() + Scaled(release);
}

// A timeout in seconds for a child's command line (claa-loadgen --timeout_s=...), scaled.
inline std::string ScaledSecondsFlag(double release_seconds) {
  return std::to_string(release_seconds * TimeoutScale());
}

// claa-server flags that stretch the deadlines between router and workers by TimeoutScale():
// empty at scale 1, so that normal runs test the defaults. The base values are claa-server's
// defaults (server/server_main.cc); every role accepts every flag, so a fixture passes them to
// all its servers, before the test's own flags (a later flag wins). The lease grows with the
// rest: tests check that caches drain well within it.
inline std::vector<std::string> ServerTimeoutFlags() {
  const double scale = TimeoutScale();
  if (scale <= 1.0) return {};
  auto scaled = [scale](int64_t value) { return std::to_string(std::llround(value * scale)); };
  return {"--health_probe_timeout_ms=" + scaled(1000), "--kv_release_timeout_ms=" + scaled(2000),
          "--abort_timeout_ms=" + scaled(5000), "--kv_fetch_wait_ms=" + scaled(5000),
          "--kv_lease_seconds=" + scaled(30)};
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_INTEGRATION_TIMEOUT_SCALE_H_
