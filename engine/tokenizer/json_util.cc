#include "engine/tokenizer/json_util.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/utf8.h"

namespace claa::tokenizer_internal {

const Json* FindField(const Json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> GetString(const Json& j, std::string_view key) {
  const Json* v = FindField(j, key);
  if (v == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("missing field '", AsAbsl(key), "'"));
  if (!v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", AsAbsl(key), "' is not a string"));
  }
  return v->get_ref<const std::string&>();
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& j, std::string_view key) {
  const Json* v = FindField(j, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", AsAbsl(key), "' is not a string"));
  }
  return std::optional<std::string>(v->get_ref<const std::string&>());
}

absl::StatusOr<bool> GetBool(const Json& j, std::string_view key, bool default_value) {
  const Json* v = FindField(j, key);
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", AsAbsl(key), "' is not a boolean"));
  }
  return v->get<bool>();
}

absl::StatusOr<int64_t> GetInt(const Json& j, std::string_view key, int64_t default_value) {
  const Json* v = FindField(j, key);
  if (v == nullptr) return default_value;
  if (!v->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", AsAbsl(key), "' is not an integer"));
  }
  return v->get<int64_t>();
}

absl::StatusOr<std::string> GetType(const Json& j, std::string_view what) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(what), " is not a JSON object"));
  }
  auto type = GetString(j, "type");
  if (!type.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(what), ": ", type.status().message()));
  }
  return type;
}

absl::StatusOr<std::shared_ptr<const Regex>> GetPattern(const Json& j, std::string_view key) {
  const Json* v = FindField(j, key);
  if (v == nullptr || !v->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", AsAbsl(key), "' is not a pattern object"));
  }
  if (const Json* s = FindField(*v, "String"); s != nullptr && s->is_string()) {
    return Regex::Compile(s->get_ref<const std::string&>(), /*literal=*/true);
  }
  if (const Json* r = FindField(*v, "Regex"); r != nullptr && r->is_string()) {
    return Regex::Compile(r->get_ref<const std::string&>(), /*literal=*/false);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("field '", AsAbsl(key), "' must be {\"String\": ...} or {\"Regex\": ...}"));
}

absl::StatusOr<std::string> GetChar(const Json& j, std::string_view key,
                                    std::string_view default_value) {
  const Json* v = FindField(j, key);
  if (v == nullptr) return std::string(default_value);
  if (!v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", AsAbsl(key), "' is not a string"));
  }
  const std::string& s = v->get_ref<const std::string&>();
  if (s.empty() || CharLength(s, 0) != s.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", AsAbsl(key), "' must be one character"));
  }
  return s;
}

}  // namespace claa::tokenizer_internal
