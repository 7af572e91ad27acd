#ifndef CLAA_ENGINE_TOKENIZER_JSON_UTIL_H_
#define CLAA_ENGINE_TOKENIZER_JSON_UTIL_H_

// Exception-free accessors over nlohmann::json. nlohmann throws on type mismatches and missing
// keys; every accessor here checks first and turns problems into InvalidArgument naming the
// field, so no exception can leave the tokenizer.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tokenizer/regex.h"

namespace claa::tokenizer_internal {

using Json = nlohmann::json;

// The member `key` of object `j`, or nullptr when absent, null, or `j` is not an object.
const Json* FindField(const Json& j, std::string_view key);

absl::StatusOr<std::string> GetString(const Json& j, std::string_view key);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& j, std::string_view key);
absl::StatusOr<bool> GetBool(const Json& j, std::string_view key, bool default_value);
absl::StatusOr<int64_t> GetInt(const Json& j, std::string_view key, int64_t default_value);
// The "type" field of a component object.
absl::StatusOr<std::string> GetType(const Json& j, std::string_view what);

// A tokenizer.json pattern: {"String": "..."} (literal) or {"Regex": "..."}.
absl::StatusOr<std::shared_ptr<const Regex>> GetPattern(const Json& j, std::string_view key);

// A single-character string field (Metaspace replacement, Strip content).
absl::StatusOr<std::string> GetChar(const Json& j, std::string_view key,
                                    std::string_view default_value);

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_JSON_UTIL_H_
