#ifndef CLAA_ENGINE_TOKENIZER_BPE_MODEL_H_
#define CLAA_ENGINE_TOKENIZER_BPE_MODEL_H_

// The BPE "model" of tokenizer.json: vocabulary, ranked merges, byte fallback and unknown-token
// handling. Tokenizes one pre-tokenized word at a time with a merge-rank priority queue and
// caches the result per word, since natural text repeats words constantly.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"

namespace claa::tokenizer_internal {

class BpeModel {
 public:
  // `j` is the "model" object. Only type "BPE" is accepted.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& j);

  // Appends the ids of one word (one pre-tokenizer piece).
  void Tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when no vocabulary entry has this id.
  const std::string* IdToToken(int32_t id) const;
  // Largest id in the vocabulary, -1 when empty.
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> TokenizeUncached(std::string_view word) const;
  void MergeAll(std::vector<int32_t>& symbols) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xNN>" or -1

  // Word cache, bounded so that adversarial input cannot grow it without limit.
  static constexpr size_t kCacheCapacity = 20000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::shared_mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_BPE_MODEL_H_
