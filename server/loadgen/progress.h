#ifndef CLAA_SERVER_LOADGEN_PROGRESS_H_
#define CLAA_SERVER_LOADGEN_PROGRESS_H_

// The --progress line on stderr: done/total, failures, completion rate and elapsed time,
// redrawn in place (carriage return) on a terminal, one line per update otherwise (so logs
// of CI runs stay readable).
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/loadgen/runner.h"

namespace claa::loadgen {

class ProgressPrinter {
 public:
  // Starts printing every `interval_s` seconds until Stop() or destruction.
  ProgressPrinter(const RunProgress* progress, int total, double interval_s = 0.5);
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;
  ~ProgressPrinter() { Stop(); }

  // Prints a last update and ends the line.
  void Stop();

 private:
  void Print(bool final);

  const RunProgress* progress_;
  const int total_;
  const double interval_s_;
  const bool tty_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_PROGRESS_H_
