#ifndef CLAA_ENGINE_EVAL_PROGRESS_H_
#define CLAA_ENGINE_EVAL_PROGRESS_H_

// A progress line for long CLI work (`claa-cli eval` runs every method on every task):
//   "[spearman] 12/40 (30.0%) elapsed 1m05s ETA 2m32s"
// On a terminal the line is redrawn in place with '\r'; when the stream is a file or a pipe
// (CI logs) it prints plain lines, at most one per `log_interval_s`, so logs stay short.
// Not thread-safe: call it from the thread that owns the loop.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace claa::eval {

class ProgressPrinter {
 public:
  struct Options {
    FILE* out = stderr;  // Not owned; nullptr disables output.
    std::string label;   // Printed as "[label] " in front; empty for none.
    // Unset: decide with isatty(fileno(out)). Tests force it.
    std::optional<bool> tty;
    double tty_interval_s = 0.1;   // Redraw throttle on a terminal.
    double log_interval_s = 10.0;  // Minimum gap between lines otherwise.
    // Monotonic seconds; unset uses std::chrono::steady_clock. Tests inject a fake clock.
    std::function<double()> clock;
  };

  // total <= 0 means unknown: the line shows the count and elapsed time, no percent or ETA.
  ProgressPrinter(int64_t total, Options options);
  ~ProgressPrinter();  // Calls Finish() if it was not called.

  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  // Records progress and prints if the throttle allows; reaching total always prints.
  void Update(int64_t done);
  void Increment(int64_t n = 1) { Update(done_ + n); }
  // Changes the label shown from the next line on (e.g. the current method).
  void SetLabel(std::string_view label);
  // Prints the final state (if not already shown) and, on a terminal, ends the line.
  void Finish();

  int64_t done() const { return done_; }

  // The line without '\r' or '\n'. ETA = elapsed / done * (total - done); "--" while there is no
  // rate yet (nothing done, or no time elapsed).
  static std::string FormatLine(std::string_view label, int64_t done, int64_t total,
                                double elapsed_s);
  // "45s", "1m05s", "2h03m" (whole seconds; negative or non-finite prints "--").
  static std::string FormatDuration(double seconds);

 private:
  double Now() const;
  void Print();

  int64_t total_;
  Options options_;
  bool tty_;
  double start_s_;
  double last_print_s_ = 0.0;
  bool printed_any_ = false;
  int64_t done_ = 0;
  int64_t printed_done_ = -1;    // The `done` of the last printed line.
  size_t last_line_length_ = 0;  // To blank out leftovers of a longer previous line.
  bool finished_ = false;
};

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_PROGRESS_H_
