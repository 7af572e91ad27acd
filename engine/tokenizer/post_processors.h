#ifndef CLAA_ENGINE_TOKENIZER_POST_PROCESSORS_H_
#define CLAA_ENGINE_TOKENIZER_POST_PROCESSORS_H_

// tokenizer.json "post_processor" components, applied to a single sequence when the caller asks
// for special tokens (BOS/EOS/CLS/SEP). Pair templates are not needed for generation.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"

namespace claa::tokenizer_internal {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>& ids) const = 0;
  // The id placed first in front of the sequence, if any (the BOS).
  virtual std::optional<int32_t> bos_id() const = 0;
};

// Resolves a token string to an id (Roberta/Bert processors name tokens with ids, templates may
// name them only).
using TokenResolver = std::function<std::optional<int32_t>(std::string_view)>;

// Builds a post-processor from its JSON; JSON null gives nullptr. Supported:
// TemplateProcessing, ByteLevel (no-op on ids), RobertaProcessing, BertProcessing, Sequence.
absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& j,
                                                                  const TokenResolver& resolve);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_POST_PROCESSORS_H_
