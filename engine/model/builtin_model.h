#ifndef CLAA_ENGINE_MODEL_BUILTIN_MODEL_H_
#define CLAA_ENGINE_MODEL_BUILTIN_MODEL_H_

// The built-in demo model that `claa-server` serves when no --model is given: a small Llama
// shape with deterministic random weights, run by the same engine code as real models. Its
// output is not meaningful text; it exists so the server starts anywhere and answers real
// requests end to end.
#include <cstdint>
#include <string_view>

#include "engine/model/config.h"

namespace claa {

inline constexpr std::string_view kBuiltinModelName = "builtin-tiny-random";
inline constexpr uint64_t kBuiltinModelSeed = 0xC1AA2026ULL;

// Llama shape: 4 layers, hidden 256, 8 heads / 4 KV heads (head_dim 32), FFN 768, 2048 context.
// vocab_size comes from the built-in tokenizer.
ModelConfig BuiltinModelConfig(int vocab_size, int bos_token_id, int eos_token_id);

}  // namespace claa

#endif  // CLAA_ENGINE_MODEL_BUILTIN_MODEL_H_
