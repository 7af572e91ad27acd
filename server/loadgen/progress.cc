#include "server/loadgen/progress.h"

#include <unistd.h>

#include <cstdio>

namespace claa::loadgen {

ProgressPrinter::ProgressPrinter(const RunProgress* progress, int total, double interval_s)
    : progress_(progress),
      total_(total),
      interval_s_(interval_s),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (
        !cv_.wait_for(lock, std::chrono::duration<double>(interval_s_), [this] { return stop_; })) {
      Print(/*final=*/false);
    }
  });
}

void ProgressPrinter::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Print(/*final=*/true);
}

void ProgressPrinter::Print(bool final) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int done = progress_->done.load();
  const int in_flight = progress_->started.load() - done;
  std::fprintf(stderr, "%s[claa-loadgen] %d/%d done, %d failed, %d in flight, %.1f req/s, %.1f s%s",
               tty_ ? "\r" : "", done, total_, progress_->failed.load(), in_flight,
               elapsed > 0 ? done / elapsed : 0.0, elapsed,
               !tty_   ? "\n"
               : final ? "\033[K\n"
                       : "\033[K");
  std::fflush(stderr);
}

}  // namespace claa::loadgen
