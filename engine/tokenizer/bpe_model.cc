#include "engine/tokenizer/bpe_model.h"

#include <mutex>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/absl_compat.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace claa::tokenizer_internal {
namespace {

// Ids above this are rejected: the reverse table is a dense vector.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const Json& m) {
  if (m.is_string()) {
    // Legacy "a b" form: split at the first space (tokens themselves never contain one).
    const std::string& s = m.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("merge '", s, "' is not of the form 'a b'"));
    }
    return std::make_pair(s.substr(0, space), s.substr(space + 1));
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return absl::InvalidArgumentError("a merge must be \"a b\" or [\"a\", \"b\"]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("'model' is not a JSON object");
  std::string type = "BPE";
  if (FindField(j, "type") != nullptr) {
    CLAA_ASSIGN_OR_RETURN(type, GetString(j, "type"));
  }
  if (type != "BPE") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported model type '", type, "'"));
  }
  auto model = std::unique_ptr<BpeModel>(new BpeModel());

  const Json* vocab = FindField(j, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return absl::InvalidArgumentError("BPE model needs a 'vocab' object");
  }
  model->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > kMaxTokenId) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab entry '", it.key(), "' has an invalid id"));
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    model->vocab_[it.key()] = id;
    if (static_cast<size_t>(id) >= model->id_to_token_.size()) {
      model->id_to_token_.resize(id + 1);
      model->has_id_.resize(id + 1, false);
    }
    model->id_to_token_[id] = it.key();
    model->has_id_[id] = true;
  }

  CLAA_ASSIGN_OR_RETURN(auto unk, GetOptionalString(j, "unk_token"));
  if (unk.has_value()) {
    // Like the reference, a missing unk token only matters when it is actually needed; we
    // resolve it eagerly and ignore it when absent from the vocabulary.
    if (auto it = model->vocab_.find(*unk); it != model->vocab_.end()) model->unk_id_ = it->second;
  }
  CLAA_ASSIGN_OR_RETURN(model->fuse_unk_, GetBool(j, "fuse_unk", false));
  CLAA_ASSIGN_OR_RETURN(model->byte_fallback_, GetBool(j, "byte_fallback", false));
  CLAA_ASSIGN_OR_RETURN(model->ignore_merges_, GetBool(j, "ignore_merges", false));
  CLAA_ASSIGN_OR_RETURN(auto prefix, GetOptionalString(j, "continuing_subword_prefix"));
  CLAA_ASSIGN_OR_RETURN(auto suffix, GetOptionalString(j, "end_of_word_suffix"));
  model->continuing_subword_prefix_ = prefix.value_or("");
  model->end_of_word_suffix_ = suffix.value_or("");
  if (const Json* dropout = FindField(j, "dropout");
      dropout != nullptr && dropout->is_number() && dropout->get<double>() > 0.0) {
    return absl::InvalidArgumentError("BPE dropout is not supported (non-deterministic)");
  }

  for (int b = 0; b < 256; ++b) {
    auto it = model->vocab_.find(absl::StrFormat("<0x%02X>", b));
    model->byte_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
  }

  const Json* merges = FindField(j, "merges");
  if (merges != nullptr) {
    if (!merges->is_array()) return absl::InvalidArgumentError("BPE 'merges' is not an array");
    model->merges_.reserve(merges->size());
    const size_t prefix_len = model->continuing_subword_prefix_.size();
    int32_t rank = 0;
    for (const Json& m : *merges) {
      CLAA_ASSIGN_OR_RETURN(auto pair, ParseMerge(m));
      auto a = model->vocab_.find(pair.first);
      auto b = model->vocab_.find(pair.second);
      if (a == model->vocab_.end() || b == model->vocab_.end()) {
        return absl::InvalidArgumentError(absl::StrCat("merge '", pair.first, " ", pair.second,
                                                       "' uses a token missing from the vocab"));
      }
      const std::string merged =
          pair.first + (pair.second.size() >= prefix_len ? pair.second.substr(prefix_len) : "");
      auto n = model->vocab_.find(merged);
      if (n == model->vocab_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("merge result '", merged, "' is missing from the vocab"));
      }
      // Later duplicates overwrite earlier ones, as in the reference's hash map.
      model->merges_[PairKey(a->second, b->second)] = MergeInfo{rank, n->second};
      ++rank;
    }
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AsAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(AsAbsl(word)); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    if (auto it = cache_.find(AsAbsl(word)); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> result = TokenizeUncached(word);
  ids.insert(ids.end(), result.begin(), result.end());
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(result));
  }
}

std::vector<int32_t> BpeModel::TokenizeUncached(std::string_view word) const {
  // Initial symbols: one per character (with prefix/suffix decorations), falling back to byte
  // tokens, then to the (optionally fused) unknown token; characters with no fallback at all
  // are dropped, as the reference does.
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  int32_t pending_unk = -1;  // unk id waiting to be emitted (fused with following unknowns)
  std::string scratch;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t len = CharLength(word, pos);
    const bool is_first = pos == 0;
    const bool is_last = pos + len >= word.size();
    std::string_view piece = word.substr(pos, len);
    pos += len;
    if ((!is_first && !continuing_subword_prefix_.empty()) ||
        (is_last && !end_of_word_suffix_.empty())) {
      scratch.clear();
      if (!is_first) scratch += continuing_subword_prefix_;
      scratch += piece;
      if (is_last) scratch += end_of_word_suffix_;
      piece = scratch;
    }
    if (auto it = vocab_.find(AsAbsl(piece)); it != vocab_.end()) {
      if (pending_unk >= 0) {
        symbols.push_back(pending_unk);
        pending_unk = -1;
      }
      symbols.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (unsigned char b : piece) all_bytes &= byte_ids_[b] >= 0;
      if (all_bytes) {
        // The reference does not flush a pending unk here; keep its order of outputs.
        for (unsigned char b : piece) symbols.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
  MergeAll(symbols);
  return symbols;
}

void BpeModel::MergeAll(std::vector<int32_t>& symbols) const {
  if (symbols.size() < 2 || merges_.empty()) return;
  const int n = static_cast<int>(symbols.size());
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
  };
  // Lowest rank first, then leftmost position.
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
  auto push_pair = [&](int left) {
    const int right = next[left];
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left], symbols[right]));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int right = next[top.pos];
    // Skip stale entries: the pair at this position changed since it was queued.
    auto it = merges_.find(PairKey(symbols[top.pos], symbols[right]));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    symbols[top.pos] = top.new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) push_pair(prev[top.pos]);
    push_pair(top.pos);
  }
  int out = 0;
  for (int i = 0; i < n; ++i) {
    if (alive[i]) symbols[out++] = symbols[i];
  }
  symbols.resize(out);
}

}  // namespace claa::tokenizer_internal
