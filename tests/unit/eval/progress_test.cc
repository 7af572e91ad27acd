#include "engine/eval/progress.h"

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace claa::eval {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A FILE* backed by a temporary file whose contents the test can read back.
class CapturedFile {
 public:
  CapturedFile() : f_(std::tmpfile()) {}
  ~CapturedFile() { std::fclose(f_); }
  FILE* get() const { return f_; }
  std::string Contents() const {
    std::fflush(f_);
    std::rewind(f_);
    std::string out;
    char buf[256];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f_)) > 0) out.append(buf, n);
    std::fseek(f_, 0, SEEK_END);
    return out;
  }

 private:
  FILE* f_;
};

TEST(ProgressFormatTest, Durations) {
  EXPECT_EQ(ProgressPrinter::FormatDuration(0), "0s");
  EXPECT_EQ(ProgressPrinter::FormatDuration(59.4), "59s");
  EXPECT_EQ(ProgressPrinter::FormatDuration(65), "1m05s");
  EXPECT_EQ(ProgressPrinter::FormatDuration(3600 + 180 + 59), "1h03m");
  EXPECT_EQ(ProgressPrinter::FormatDuration(-1), "--");
}

TEST(ProgressFormatTest, Line) {
  // ETA = 65 / 12 * 28 = 151.7 s.
  EXPECT_EQ(ProgressPrinter::FormatLine("spearman", 12, 40, 65),
            "[spearman] 12/40 (30.0%) elapsed 1m05s ETA 2m32s");
  EXPECT_EQ(ProgressPrinter::FormatLine("", 0, 10, 3), "0/10 (0.0%) elapsed 3s ETA --");
  EXPECT_EQ(ProgressPrinter::FormatLine("", 1, 10, 0), "1/10 (10.0%) elapsed 0s ETA --");
  EXPECT_EQ(ProgressPrinter::FormatLine("", 10, 10, 20), "10/10 (100.0%) elapsed 20s ETA 0s");
  EXPECT_EQ(ProgressPrinter::FormatLine("tasks", 5, 0, 2), "[tasks] 5 done, elapsed 2s");
}

TEST(ProgressPrinterTest, PlainLinesAreThrottled) {
  CapturedFile file;
  double now = 100.0;
  ProgressPrinter::Options opts;
  opts.out = file.get();
  opts.tty = false;
  opts.log_interval_s = 10.0;
  opts.clock = [&] { return now; };
  ProgressPrinter p(10, opts);
  p.Update(1);  // First update prints at once.
  now = 101.0;
  p.Update(2);  // Throttled.
  now = 111.0;
  p.Update(3);  // 10 s since the last line.
  now = 112.0;
  p.Update(10);  // Completion always prints.
  p.Finish();    // Already shown: nothing more.
  EXPECT_EQ(file.Contents(),
            "1/10 (10.0%) elapsed 0s ETA --\n"
            "3/10 (30.0%) elapsed 11s ETA 26s\n"
            "10/10 (100.0%) elapsed 12s ETA 0s\n");
}

TEST(ProgressPrinterTest, FinishShowsTheLastStateOnce) {
  CapturedFile file;
  double now = 0.0;
  ProgressPrinter::Options opts;
  opts.out = file.get();
  opts.tty = false;
  opts.label = "eval";
  opts.clock = [&] { return now; };
  {
    ProgressPrinter p(0, opts);  // Unknown total.
    p.Update(1);
    now = 1.0;
    p.Increment(2);  // Throttled.
    EXPECT_EQ(p.done(), 3);
  }  // The destructor finishes.
  EXPECT_EQ(file.Contents(), "[eval] 1 done, elapsed 0s\n[eval] 3 done, elapsed 1s\n");
}

TEST(ProgressPrinterTest, TerminalRedrawsInPlace) {
  CapturedFile file;
  double now = 0.0;
  ProgressPrinter::Options opts;
  opts.out = file.get();
  opts.tty = true;
  opts.label = "long label";
  opts.clock = [&] { return now; };
  ProgressPrinter p(4, opts);
  p.Update(1);
  now = 1.0;
  p.SetLabel("s");
  p.Update(2);
  const std::string mid = file.Contents();
  EXPECT_THAT(mid, StartsWith("\r[long label] 1/4 (25.0%) elapsed 0s ETA --"));
  EXPECT_EQ(mid.find('\n'), std::string::npos);
  // The shorter second line is padded so no tail of the first remains visible.
  const std::string first = "[long label] 1/4 (25.0%) elapsed 0s ETA --";
  const std::string second = "[s] 2/4 (50.0%) elapsed 1s ETA 1s";
  EXPECT_EQ(mid, "\r" + first + "\r" + second + std::string(first.size() - second.size(), ' '));
  now = 2.0;
  p.Update(4);
  p.Finish();
  EXPECT_THAT(file.Contents(), HasSubstr("\r[s] 4/4 (100.0%) elapsed 2s ETA 0s"));
  EXPECT_THAT(file.Contents(), EndsWith("ETA 0s\n"));
}

TEST(ProgressPrinterTest, NullStreamIsSilent) {
  ProgressPrinter::Options opts;
  opts.out = nullptr;
  ProgressPrinter p(3, opts);
  p.Update(3);
  p.Finish();
  EXPECT_EQ(p.done(), 3);
}

}  // namespace
}  // namespace claa::eval
