#ifndef CLAA_TESTS_FUZZ_FUZZ_TARGETS_H_
#define CLAA_TESTS_FUZZ_FUZZ_TARGETS_H_

// Fuzz entry points over the parsers and validators that see untrusted bytes. Each one is
// compiled twice: into a libFuzzer binary (tests/fuzz/fuzz_main.cc, clang, CLAA_FUZZ=ON) and
// into the ordinary gtest suite (tests/unit/fuzz), which replays the committed corpus and every
// saved crash through the very same function, so a fixed bug stays fixed without clang.
//
// An entry point returns 0 (libFuzzer's "keep going") and reports a broken invariant through
// ReportFailure, which aborts under libFuzzer (the input is saved as a crash) and records a
// gtest failure in the replay.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"

namespace claa::fuzz {

// Defined by the driver: fuzz_main.cc aborts, the gtest replay calls ADD_FAILURE.
void ReportFailure(const char* file, int line, const std::string& message);

using EntryPoint = int (*)(const uint8_t* data, size_t size);

struct Target {
  // Directory name under tests/fuzz/corpus and tests/fuzz/regressions, and the binary's suffix.
  const char* name;
  EntryPoint entry;
  // Null, or says why the target cannot run here (its data is absent); the replay then skips.
  std::string (*unavailable)();
};

// Every target, in a fixed order.
const std::vector<Target>& AllTargets();

// safetensors: the input is a whole .safetensors file (SafetensorsArchive::OpenFile), then
// every tensor is read whole, by rows and by columns.
int FuzzSafetensors(const uint8_t* data, size_t size);
// model_config: the input is config.json text (ParseModelConfig), then what the server derives
// from a config before loading weights (KV bytes per token, default pruning per method).
int FuzzModelConfig(const uint8_t* data, size_t size);
// tokenizer_json: the input is tokenizer.json text (Tokenizer::FromJson); a tokenizer that
// loads must encode and decode sample texts consistently.
int FuzzTokenizerJson(const uint8_t* data, size_t size);
// tokenize_builtin / tokenize_smollm2: the input is text (arbitrary bytes) for Encode, and the
// same bytes read as token ids for Decode and the streaming decoder.
int FuzzTokenizeBuiltin(const uint8_t* data, size_t size);
int FuzzTokenizeSmolLM2(const uint8_t* data, size_t size);
std::string SmolLM2Unavailable();
// generate_request: the input is a serialized claa.v1.GenerateRequest; PrepareRequest as the
// server runs it, the router's ToWorkerRequest round trip, the scheduler's validation and, for
// a valid request, a generation sequence driven by pseudo-random logits.
int FuzzGenerateRequest(const uint8_t* data, size_t size);

// Strict UTF-8 (no surrogates, no overlongs, at most U+10FFFF), written independently of the
// tokenizer's validator so the two can be checked against each other.
bool IsValidUtf8(std::string_view s);

// Printable form of arbitrary bytes for failure messages (C escapes, truncated).
std::string Escape(std::string_view s, size_t max_bytes = 200);

}  // namespace claa::fuzz

// Checks an invariant inside an entry point (a function returning int): on failure reports it
// and returns 0, so the replay can go on to the next input.
#define CLAA_FUZZ_CHECK(cond, ...)                                                             \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      ::claa::fuzz::ReportFailure(__FILE__, __LINE__,                                          \
                                  ::absl::StrCat("check failed: " #cond ": ", __VA_ARGS__));   \
      return 0;                                                                                \
    }                                                                                          \
  } while (0)

#endif  // CLAA_TESTS_FUZZ_FUZZ_TARGETS_H_
