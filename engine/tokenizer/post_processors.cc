#include "engine/tokenizer/post_processors.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/util/status_macros.h"

namespace claa::tokenizer_internal {
namespace {

// A single-sequence template flattened to: ids before the sequence, ids after it.
class AffixPostProcessor : public PostProcessor {
 public:
  AffixPostProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void Process(std::vector<int32_t>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }
  std::optional<int32_t> bos_id() const override {
    if (prefix_.empty()) return std::nullopt;
    return prefix_.front();
  }

 private:
  std::vector<int32_t> prefix_;
  std::vector<int32_t> suffix_;
};

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void Process(std::vector<int32_t>& ids) const override {
    for (const auto& p : parts_) p->Process(ids);
  }
  std::optional<int32_t> bos_id() const override {
    // Later processors wrap the output of earlier ones, so the last BOS ends up first.
    std::optional<int32_t> bos;
    for (const auto& p : parts_) {
      if (auto b = p->bos_id()) bos = b;
    }
    return bos;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

// Ids of a template special token: the "special_tokens" table first, then the vocabulary.
absl::StatusOr<std::vector<int32_t>> SpecialTokenIds(const Json& j, const std::string& name,
                                                     const TokenResolver& resolve) {
  if (const Json* table = FindField(j, "special_tokens")) {
    if (const Json* entry = FindField(*table, name)) {
      const Json* ids = FindField(*entry, "ids");
      if (ids == nullptr || !ids->is_array()) {
        return absl::InvalidArgumentError(absl::StrCat("special token '", name, "' has no ids"));
      }
      std::vector<int32_t> out;
      for (const Json& id : *ids) {
        if (!id.is_number_integer()) {
          return absl::InvalidArgumentError(
              absl::StrCat("special token '", name, "' has a bad id"));
        }
        out.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
      return out;
    }
  }
  if (auto id = resolve(name)) return std::vector<int32_t>{*id};
  return absl::InvalidArgumentError(absl::StrCat("template special token '", name, "' is unknown"));
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParseTemplate(const Json& j,
                                                             const TokenResolver& resolve) {
  const Json* single = FindField(j, "single");
  if (single == nullptr) return absl::InvalidArgumentError("TemplateProcessing needs 'single'");
  // The single template may also be written as one string "[CLS] $A [SEP]".
  Json pieces = *single;
  if (single->is_string()) {
    pieces = Json::array();
    for (absl::string_view part :
         absl::StrSplit(single->get_ref<const std::string&>(), ' ', absl::SkipEmpty())) {
      pieces.push_back(std::string(part));
    }
  }
  if (!pieces.is_array())
    return absl::InvalidArgumentError("TemplateProcessing 'single' is not a list");
  std::vector<int32_t> prefix, suffix;
  bool seen_sequence = false;
  for (const Json& piece : pieces) {
    std::optional<std::string> special;
    if (piece.is_string()) {
      // String form: "$A", "$0", "$B:1" are sequences; anything else (optionally ":type") is a
      // token.
      std::string s = piece.get<std::string>();
      if (const size_t colon = s.rfind(':'); colon != std::string::npos && colon > 0) {
        s = s.substr(0, colon);
      }
      if (s.empty() || s[0] != '$') special = s;
    } else if (const Json* tok = FindField(piece, "SpecialToken")) {
      CLAA_ASSIGN_OR_RETURN(std::string id, GetString(*tok, "id"));
      special = id;
    } else if (FindField(piece, "Sequence") == nullptr) {
      return absl::InvalidArgumentError(
          "TemplateProcessing piece is neither SpecialToken nor Sequence");
    }
    if (!special.has_value()) {
      seen_sequence = true;
      continue;
    }
    CLAA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, SpecialTokenIds(j, *special, resolve));
    auto& target = seen_sequence ? suffix : prefix;
    target.insert(target.end(), ids.begin(), ids.end());
  }
  return std::unique_ptr<PostProcessor>(
      new AffixPostProcessor(std::move(prefix), std::move(suffix)));
}

// Roberta/Bert store tokens as ["<s>", 0] pairs.
absl::StatusOr<int32_t> TokenPairId(const Json& j, std::string_view key) {
  const Json* pair = FindField(j, key);
  if (pair == nullptr || !pair->is_array() || pair->size() != 2 ||
      !(*pair)[1].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("post_processor field '", AsAbsl(key), "' must be [token, id]"));
  }
  return static_cast<int32_t>((*pair)[1].get<int64_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& j,
                                                                  const TokenResolver& resolve) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  CLAA_ASSIGN_OR_RETURN(std::string type, GetType(j, "post_processor"));
  if (type == "TemplateProcessing") return ParseTemplate(j, resolve);
  if (type == "ByteLevel") {
    // Only adjusts offsets, which we do not produce.
    return std::unique_ptr<PostProcessor>(new AffixPostProcessor({}, {}));
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    CLAA_ASSIGN_OR_RETURN(int32_t cls, TokenPairId(j, "cls"));
    CLAA_ASSIGN_OR_RETURN(int32_t sep, TokenPairId(j, "sep"));
    return std::unique_ptr<PostProcessor>(new AffixPostProcessor({cls}, {sep}));
  }
  if (type == "Sequence") {
    const Json* list = FindField(j, "processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence post_processor needs a 'processors' array");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const Json& item : *list) {
      CLAA_ASSIGN_OR_RETURN(auto part, ParsePostProcessor(item, resolve));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PostProcessor>(new SequencePostProcessor(std::move(parts)));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported post_processor type '", type, "'"));
}

}  // namespace claa::tokenizer_internal
