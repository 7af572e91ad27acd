#include "engine/eval/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace claa::eval {

ProgressPrinter::ProgressPrinter(int64_t total, Options options)
    : total_(total), options_(std::move(options)) {
  tty_ = options_.tty.has_value()
             ? *options_.tty
             : (options_.out != nullptr && isatty(fileno(options_.out)) == 1);
  start_s_ = Now();
}

ProgressPrinter::~ProgressPrinter() { Finish(); }

double ProgressPrinter::Now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ProgressPrinter::SetLabel(std::string_view label) { options_.label = std::string(label); }

void ProgressPrinter::Update(int64_t done) {
  if (finished_) return;
  done_ = done;
  const double now = Now();
  const double interval = tty_ ? options_.tty_interval_s : options_.log_interval_s;
  const bool complete = total_ > 0 && done_ >= total_;
  // The first update prints at once so a slow first item still shows the run has started.
  if (complete || !printed_any_ || now - last_print_s_ >= interval) Print();
}

void ProgressPrinter::Finish() {
  if (finished_) return;
  if (done_ != printed_done_) Print();
  if (tty_ && printed_any_ && options_.out != nullptr) {
    std::fputc('\n', options_.out);
    std::fflush(options_.out);
  }
  finished_ = true;
}

void ProgressPrinter::Print() {
  const double now = Now();
  last_print_s_ = now;
  printed_any_ = true;
  printed_done_ = done_;
  if (options_.out == nullptr) return;
  const std::string line = FormatLine(options_.label, done_, total_, now - start_s_);
  if (tty_) {
    // Spaces, not an ANSI erase, so it also works on dumb terminals.
    const size_t pad = last_line_length_ > line.size() ? last_line_length_ - line.size() : 0;
    std::fprintf(options_.out, "\r%s%s", line.c_str(), std::string(pad, ' ').c_str());
  } else {
    std::fprintf(options_.out, "%s\n", line.c_str());
  }
  last_line_length_ = line.size();
  std::fflush(options_.out);
}

std::string ProgressPrinter::FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string ProgressPrinter::FormatLine(std::string_view label, int64_t done, int64_t total,
                                        double elapsed_s) {
  std::string line;
  if (!label.empty()) absl::StrAppend(&line, "[", std::string(label), "] ");
  if (total > 0) {
    const double fraction = std::clamp(static_cast<double>(done) / total, 0.0, 1.0);
    const double eta =
        done > 0 && elapsed_s > 0 ? elapsed_s / done * std::max<int64_t>(0, total - done) : -1.0;
    absl::StrAppend(&line, done, "/", total, absl::StrFormat(" (%.1f%%)", 100.0 * fraction),
                    " elapsed ", FormatDuration(elapsed_s), " ETA ", FormatDuration(eta));
  } else {
    absl::StrAppend(&line, done, " done, elapsed ", FormatDuration(elapsed_s));
  }
  return line;
}

}  // namespace claa::eval
