#ifndef CLAA_ENGINE_TOKENIZER_ADDED_TOKENS_H_
#define CLAA_ENGINE_TOKENIZER_ADDED_TOKENS_H_

// The "added_tokens" of tokenizer.json (special and user-added tokens). The input is cut on them
// before the normalizer and pre-tokenizer run, so they are never split by BPE. Matching is
// leftmost-longest over a byte trie.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/normalizers.h"
#include "engine/tokenizer/split.h"

namespace claa::tokenizer_internal {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

class AddedTokens {
 public:
  // `list` is the "added_tokens" array (or null). `normalizer` (may be null) is applied to the
  // content of tokens with normalized=true, which are matched against normalized text.
  static absl::StatusOr<AddedTokens> FromJson(const Json& list, const Normalizer* normalizer);

  // Cuts ordinary pieces on the tokens matched in raw text (normalized=false).
  void SplitRaw(std::vector<Piece>& pieces) const { Split(raw_, pieces); }
  // Cuts ordinary pieces on the tokens matched in normalized text (normalized=true).
  void SplitNormalized(std::vector<Piece>& pieces) const { Split(normalized_, pieces); }

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // Byte trie over pattern strings; a node's `token` indexes tokens_ or is -1.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;
      int32_t token = -1;
    };
    std::vector<Node> nodes{Node{}};
    void Insert(std::string_view pattern, int32_t token);
    // Longest pattern starting at text[pos]: (length, token index), or length 0.
    std::pair<size_t, int32_t> LongestAt(std::string_view text, size_t pos) const;
    bool empty() const { return nodes.size() == 1; }
  };
  void Split(const Trie& trie, std::vector<Piece>& pieces) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  Trie raw_;
  Trie normalized_;
};

}  // namespace claa::tokenizer_internal

#endif  // CLAA_ENGINE_TOKENIZER_ADDED_TOKENS_H_
