// libFuzzer driver: one binary per entry point, chosen at compile time by CLAA_FUZZ_ENTRY.
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {

// A broken invariant is a crash to libFuzzer: it saves the input and stops.
void ReportFailure(const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "%s:%d: %s\n", file, line, message.c_str());
  std::abort();
}

}  // namespace claa::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return claa::fuzz::CLAA_FUZZ_ENTRY(data, size);
}
