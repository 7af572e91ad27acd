#ifndef CLAA_ENGINE_SAMPLING_STOP_MATCHER_H_
#define CLAA_ENGINE_SAMPLING_STOP_MATCHER_H_

// Stop strings over streamed (detokenized) text, vLLM semantics: text that might be the start of
// a stop string is held back until it can be decided; the stop string itself and anything after
// it are never emitted.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace claa {

// Matching is on bytes with an Aho-Corasick automaton, so Push costs O(delta bytes) regardless of
// how many stop strings there are, and only the longest suffix of the text that is a proper
// prefix of some stop string is held back (never more than longest stop - 1 bytes).
//
// The first stop string to *complete* wins (earliest end position; at the same end, the longest,
// i.e. earliest start). This makes the result independent of how the text is split into deltas.
// Empty stop strings are ignored (ValidateStopConditions rejects them).
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Result {
    std::string emit;      // Text now safe to stream to the client.
    bool stopped = false;  // A stop string completed; later Push calls emit nothing.
    std::string matched;   // The stop string that completed (when stopped).
  };
  Result Push(std::string_view text_delta);

  // Releases the held-back text when generation ends for another reason (EOS, length, ...).
  // Returns "" after a stop (nothing after a stop string is ever emitted).
  std::string Flush();

  bool stopped() const { return stopped_; }
  // Bytes currently held back.
  size_t held_back() const { return pending_.size(); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // Sparse: few per node in practice.
    int32_t fail = 0;
    int32_t depth = 0;
    // Longest stop string that is a suffix of this node's string; -1 if none.
    int32_t match = -1;
  };

  int32_t Child(int32_t node, unsigned char c) const;
  int32_t Step(int32_t node, unsigned char c) const;

  std::vector<std::string> stop_strings_;
  std::vector<Node> nodes_;  // nodes_[0] is the root.
  int32_t state_ = 0;        // Node whose string == pending_.
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace claa

#endif  // CLAA_ENGINE_SAMPLING_STOP_MATCHER_H_
