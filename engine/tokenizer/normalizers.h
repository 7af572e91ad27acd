#ifndef CLAA_ENGINE_TOKENIZER_NORMALIZERS_H_
#define CLAA_ENGINE_TOKENIZER_NORMALIZERS_H_

// tokenizer.json "normalizer" components. Offsets are not tracked (Encode returns ids only), so
// a normalizer is simply a string -> string rewrite.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"

namespace claa::tokenizer_internal {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual absl::Status Normalize(std::string& text) const = 0;
};

// Builds a normalizer from its JSON; a JSON null gives nullptr (no normalization).
// Supported: Sequence, Prepend, Replace, Lowercase, Strip, and (when built with ICU) NFC, NFD,
// NFKC, NFKD, StripAccents.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& j);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_NORMALIZERS_H_
