#ifndef CLAA_ENGINE_TOKENIZER_PRE_TOKENIZERS_H_
#define CLAA_ENGINE_TOKENIZER_PRE_TOKENIZERS_H_

// tokenizer.json "pre_tokenizer" components: they cut normalized text into the words the model
// tokenizes independently (and ByteLevel also maps bytes into the GPT-2 alphabet).
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/split.h"

namespace claa::tokenizer_internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites `pieces` (all ordinary text; added-token pieces are never passed in).
  virtual void PreTokenize(std::vector<Piece>& pieces) const = 0;
};

// Builds a pre-tokenizer from its JSON; JSON null gives nullptr. Supported: ByteLevel, Split,
// Digits, Metaspace, Whitespace, WhitespaceSplit, CharDelimiterSplit, Punctuation,
// BertPreTokenizer, Sequence.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& j);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_PRE_TOKENIZERS_H_
