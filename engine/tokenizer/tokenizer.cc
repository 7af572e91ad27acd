#include "engine/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoders.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/normalizers.h"
#include "engine/tokenizer/post_processors.h"
#include "engine/tokenizer/pre_tokenizers.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace claa {

using tokenizer_internal::AddedToken;
using tokenizer_internal::AddedTokens;
using tokenizer_internal::BpeModel;
using tokenizer_internal::Decoder;
using tokenizer_internal::Json;
using tokenizer_internal::Normalizer;
using tokenizer_internal::Piece;
using tokenizer_internal::PostProcessor;
using tokenizer_internal::PreTokenizer;

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;  // may be null
  std::unique_ptr<Decoder> decoder;               // may be null
  AddedTokens added_tokens;
  int32_t vocab_size = 0;
  std::optional<int32_t> stream_anchor;

  // Token string of an id: added tokens take precedence over the model vocabulary.
  const std::string* TokenOf(int32_t id) const {
    if (const AddedToken* t = added_tokens.FindById(id)) return &t->content;
    return model->IdToToken(id);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path.string()));
  auto tokenizer = FromJson(buffer.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path.string(), ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text) {
  // Parse without exceptions: malformed input yields a discarded value instead of a throw.
  const Json root = Json::parse(json_text.begin(), json_text.end(), nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("tokenizer.json is not valid JSON");
  if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json is not a JSON object");

  auto impl = std::make_unique<Impl>();
  static const Json kNull;
  auto field = [&](std::string_view key) -> const Json& {
    const Json* v = tokenizer_internal::FindField(root, key);
    return v != nullptr ? *v : kNull;
  };
  const Json& model_json = field("model");
  if (model_json.is_null()) return absl::InvalidArgumentError("tokenizer.json has no 'model'");
  CLAA_ASSIGN_OR_RETURN(impl->normalizer, tokenizer_internal::ParseNormalizer(field("normalizer")));
  CLAA_ASSIGN_OR_RETURN(impl->pre_tokenizer,
                        tokenizer_internal::ParsePreTokenizer(field("pre_tokenizer")));
  CLAA_ASSIGN_OR_RETURN(impl->model, BpeModel::FromJson(model_json));
  CLAA_ASSIGN_OR_RETURN(impl->added_tokens,
                        AddedTokens::FromJson(field("added_tokens"), impl->normalizer.get()));
  CLAA_ASSIGN_OR_RETURN(impl->decoder, tokenizer_internal::ParseDecoder(field("decoder")));
  const Impl* raw = impl.get();
  CLAA_ASSIGN_OR_RETURN(
      impl->post_processor,
      tokenizer_internal::ParsePostProcessor(
          field("post_processor"), [raw](std::string_view token) -> std::optional<int32_t> {
            if (const AddedToken* t = raw->added_tokens.FindByContent(token)) return t->id;
            return raw->model->TokenToId(token);
          }));

  int32_t max_id = impl->model->max_id();
  for (const AddedToken& t : impl->added_tokens.tokens()) max_id = std::max(max_id, t.id);
  impl->vocab_size = max_id + 1;
  // Post-processor ids are taken from the file as written (Roberta/Bert [token, id] pairs, a
  // template's "special_tokens" table). One that names no token would make Encode emit ids that
  // Decode, the scheduler and the model all refuse, so refuse the file here, naming the id.
  if (impl->post_processor != nullptr) {
    std::vector<int32_t> special_ids;
    impl->post_processor->Process(special_ids);
    for (int32_t id : special_ids) {
      if (impl->TokenOf(id) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "post_processor: special token id ", id, " is not in the vocabulary"));
      }
    }
  }

  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  // Pick the streaming anchor: a non-special token whose text is one ASCII letter and renders
  // the same wherever it appears.
  for (char c = 'a'; c <= 'z' && !tokenizer->impl_->stream_anchor; ++c) {
    const std::string letter(1, c);
    auto id = tokenizer->TokenToId(letter);
    if (!id || tokenizer->IsSpecial(*id)) continue;
    const std::vector<int32_t> one = {*id};
    const std::vector<int32_t> three = {*id, *id, *id};
    auto a = tokenizer->Decode(one, false);
    auto b = tokenizer->Decode(three, false);
    if (a.ok() && b.ok() && *a == letter && *b == letter + letter + letter) {
      tokenizer->impl_->stream_anchor = *id;
    }
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (!tokenizer_internal::IsValidUtf8(text)) {
    return absl::InvalidArgumentError("Encode: input is not valid UTF-8");
  }
  const Impl& impl = *impl_;
  std::vector<Piece> pieces;
  if (!text.empty()) pieces.push_back(Piece{std::string(text), /*at_start=*/true, -1});

  // Added tokens are cut out before normalization (raw ones) and right after it (normalized
  // ones), so that they are never split; ordinary text is normalized piece by piece.
  impl.added_tokens.SplitRaw(pieces);
  if (impl.normalizer != nullptr) {
    std::vector<Piece> normalized;
    normalized.reserve(pieces.size());
    for (Piece& p : pieces) {
      if (p.added_id < 0) {
        CLAA_RETURN_IF_ERROR(impl.normalizer->Normalize(p.text));
        if (p.text.empty()) continue;
      }
      normalized.push_back(std::move(p));
    }
    pieces = std::move(normalized);
  }
  impl.added_tokens.SplitNormalized(pieces);

  std::vector<int32_t> ids;
  ids.reserve(text.size() / 2 + 4);
  std::vector<Piece> words;
  for (Piece& p : pieces) {
    if (p.added_id >= 0) {
      ids.push_back(p.added_id);
      continue;
    }
    words.clear();
    words.push_back(std::move(p));
    if (impl.pre_tokenizer != nullptr) impl.pre_tokenizer->PreTokenize(words);
    for (const Piece& w : words) impl.model->Tokenize(w.text, ids);
  }
  if (add_special_tokens && impl.post_processor != nullptr) impl.post_processor->Process(ids);
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= impl.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("Decode: id ", id, " out of range [0, ", impl.vocab_size, ")"));
    }
    const std::string* token = impl.TokenOf(id);
    if (token == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("Decode: id ", id, " has no token"));
    if (skip_special_tokens && IsSpecial(id)) continue;
    tokens.push_back(*token);
  }
  if (impl.decoder == nullptr) return absl::StrJoin(tokens, " ");
  impl.decoder->DecodeChain(tokens);
  return absl::StrJoin(tokens, "");
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const AddedToken* t = impl_->added_tokens.FindByContent(token)) return t->id;
  return impl_->model->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = impl_->TokenOf(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const AddedToken* t = impl_->added_tokens.FindById(id);
  return t != nullptr && t->special;
}

std::optional<int32_t> Tokenizer::bos_id() const {
  if (impl_->post_processor == nullptr) return std::nullopt;
  return impl_->post_processor->bos_id();
}

bool Tokenizer::IsByteFallbackToken(int32_t id) const {
  if (impl_->decoder == nullptr || !impl_->decoder->HasByteFallback()) return false;
  if (impl_->added_tokens.FindById(id) != nullptr) return false;
  const std::string* token = impl_->model->IdToToken(id);
  return token != nullptr && token->size() == 6 && token->compare(0, 3, "<0x") == 0 &&
         (*token)[5] == '>';
}

std::optional<int32_t> Tokenizer::stream_anchor_id() const { return impl_->stream_anchor; }

}  // namespace claa
