#ifndef CLAA_ENGINE_TOKENIZER_DECODERS_H_
#define CLAA_ENGINE_TOKENIZER_DECODERS_H_

// tokenizer.json "decoder" components. As in the reference library each decoder rewrites the
// list of token strings ("decode chain") and the final text is their concatenation; several
// decoders act per token, so the list form matters.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"

namespace claa::tokenizer_internal {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void DecodeChain(std::vector<std::string>& tokens) const = 0;
  // Whether "<0xNN>" tokens are turned into raw bytes (streaming must then hold byte runs).
  virtual bool HasByteFallback() const { return false; }
};

// Builds a decoder from its JSON; JSON null gives nullptr (tokens joined with spaces).
// Supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence.
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& j);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_DECODERS_H_
