#include "engine/sampling/stop_matcher.h"

#include <deque>
#include <utility>

namespace claa {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)) {
  // Trie of all stop strings.
  nodes_.emplace_back();
  for (size_t s = 0; s < stop_strings_.size(); ++s) {
    const std::string& str = stop_strings_[s];
    if (str.empty()) continue;  // Would match everywhere; validation rejects it.
    int32_t node = 0;
    for (char ch : str) {
      const auto c = static_cast<unsigned char>(ch);
      int32_t next = Child(node, c);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        Node child;
        child.depth = nodes_[node].depth + 1;
        nodes_.push_back(std::move(child));
        nodes_[node].children.emplace_back(c, next);
      }
      node = next;
    }
    // Duplicates keep the first index so `matched` is stable.
    if (nodes_[node].match < 0) nodes_[node].match = static_cast<int32_t>(s);
  }
  // Failure links in BFS order. A node's own string is its longest suffix, so it keeps its own
  // match; otherwise it inherits the longest shorter suffix match through its failure link.
  std::deque<int32_t> queue;
  for (const auto& [c, child] : nodes_[0].children) {
    nodes_[child].fail = 0;
    queue.push_back(child);
  }
  while (!queue.empty()) {
    const int32_t node = queue.front();
    queue.pop_front();
    if (nodes_[node].match < 0) nodes_[node].match = nodes_[nodes_[node].fail].match;
    for (const auto& [c, child] : nodes_[node].children) {
      nodes_[child].fail = Step(nodes_[node].fail, c);
      queue.push_back(child);
    }
  }
}

int32_t StopStringMatcher::Child(int32_t node, unsigned char c) const {
  for (const auto& [cc, child] : nodes_[node].children) {
    if (cc == c) return child;
  }
  return -1;
}

int32_t StopStringMatcher::Step(int32_t node, unsigned char c) const {
  while (true) {
    const int32_t next = Child(node, c);
    if (next >= 0) return next;
    if (node == 0) return 0;
    node = nodes_[node].fail;
  }
}

StopStringMatcher::Result StopStringMatcher::Push(std::string_view text_delta) {
  Result result;
  if (stopped_) {
    result.stopped = true;
    result.matched = matched_;
    return result;
  }
  // Invariant: pending_ is exactly the string of state_, i.e. the longest suffix of all text so
  // far that could still grow into a stop string; everything before it was already emitted.
  std::string work = std::move(pending_);
  const size_t old_size = work.size();
  work.append(text_delta);
  int32_t state = state_;
  for (size_t i = old_size; i < work.size(); ++i) {
    state = Step(state, static_cast<unsigned char>(work[i]));
    const int32_t m = nodes_[state].match;
    if (m >= 0) {
      // The match lies inside the held-back + new text, since pending_ covered every live prefix.
      const size_t start = i + 1 - stop_strings_[m].size();
      work.resize(start);
      result.emit = std::move(work);
      result.stopped = true;
      result.matched = stop_strings_[m];
      stopped_ = true;
      matched_ = result.matched;
      pending_.clear();
      state_ = 0;
      return result;
    }
  }
  const size_t hold = static_cast<size_t>(nodes_[state].depth);
  pending_.assign(work, work.size() - hold, hold);
  work.resize(work.size() - hold);
  result.emit = std::move(work);
  state_ = state;
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string out = std::move(pending_);
  pending_.clear();
  state_ = 0;
  return out;
}

}  // namespace claa
