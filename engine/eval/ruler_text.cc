#include "engine/eval/ruler_text.h"

#include <cmath>

namespace claa::eval::ruler_internal {
namespace {

// Frequent, unambiguous English words. The list is part of the data-set definition: changing
// it changes every word-salad example and every needle key, so only ever append.
constexpr std::string_view kCommonWords[] = {
    "time",    "year",    "people",  "way",     "day",     "man",     "thing",   "woman",
    "life",    "child",   "world",   "school",  "state",   "family",  "student", "group",
    "country", "problem", "hand",    "part",    "place",   "case",    "week",    "company",
    "system",  "program", "question", "work",   "government", "night", "point",  "home",
    "water",   "room",    "mother",  "area",    "money",   "story",   "fact",    "month",
    "lot",     "right",   "study",   "book",    "eye",     "job",     "word",    "business",
    "issue",   "side",    "kind",    "head",    "house",   "service", "friend",  "father",
    "power",   "hour",    "game",    "line",    "end",     "member",  "law",     "car",
    "city",    "name",    "team",    "minute",  "idea",    "kid",     "body",    "back",
    "parent",  "face",    "others",  "level",   "office",  "door",    "health",  "person",
    "art",     "war",     "history", "party",   "result",  "change",  "morning", "reason",
    "research", "girl",   "guy",     "moment",  "air",     "teacher", "force",   "education",
    "foot",    "boy",     "age",     "policy",  "music",   "market",  "sense",   "nation",
    "plan",    "college", "interest", "death",  "rate",    "field",   "river",   "garden",
    "forest",  "mountain", "ocean",  "island",  "valley",  "bridge",  "road",    "train",
    "window",  "table",   "chair",   "paper",   "letter",  "picture", "color",   "stone",
    "apple",   "orange",  "lemon",   "bread",   "cheese",  "coffee",  "tea",     "sugar",
    "salt",    "horse",   "bird",    "fish",    "tiger",   "rabbit",  "mouse",   "eagle",
    "quiet",   "happy",   "bright",  "dark",    "cold",    "warm",    "small",   "large",
    "early",   "late",    "young",   "old",     "new",     "good",    "high",    "low",
    "long",    "short",   "great",   "little",  "own",     "other",   "big",     "public",
    "able",    "real",    "strong",  "simple",  "clear",   "full",    "special", "easy",
    "free",    "sure",    "whole",   "ready",   "human",   "local",   "open",    "green",
    "blue",    "red",     "yellow",  "white",   "black",   "brown",   "silver",  "golden",
    "gentle",  "brave",   "calm",    "eager",   "fancy",   "proud",   "silly",   "wise",
    "run",     "walk",    "talk",    "read",    "write",   "sing",    "play",    "move",
    "live",    "believe", "hold",    "bring",   "happen",  "stand",   "lose",    "pay",
    "meet",    "include", "continue", "learn",  "lead",    "understand", "watch", "follow",
    "stop",    "create",  "speak",   "spend",   "grow",    "offer",   "remember", "love",
    "consider", "appear", "buy",     "wait",    "serve",   "die",     "send",    "expect",
    "build",   "stay",    "fall",    "cut",     "reach",   "kill",    "remain",  "suggest",
    "raise",   "pass",    "sell",    "require", "report",  "decide",  "pull",    "return",
    "explain", "hope",    "develop", "carry",   "break",   "receive", "agree",   "support",
    "hit",     "produce", "eat",     "cover",   "catch",   "draw",    "choose",  "cause",
    "always",  "never",   "often",   "again",   "still",   "also",    "very",    "really",
    "almost",  "together", "already", "soon",   "maybe",   "perhaps", "quite",   "rather",
    "before",  "after",   "under",   "over",    "between", "through", "during",  "without",
    "about",   "against", "among",   "around",  "behind",  "beyond",  "inside",  "outside",
};

// RULER's repeated-noise haystack.
constexpr std::string_view kNoiseWords[] = {
    "The", "grass", "is",   "green.", "The",   "sky", "is",    "blue.",  "The",
    "sun", "is",    "yellow.", "Here", "we",  "go.", "There", "and",    "back", "again.",
};

}  // namespace

absl::Span<const std::string_view> CommonWords() { return kCommonWords; }

absl::Span<const std::string_view> HaystackStream::Prefix(size_t n) {
  const size_t noise_len = std::size(kNoiseWords);
  while (words_.size() < n) {
    if (kind_ == HaystackKind::kNoise) {
      words_.push_back(kNoiseWords[words_.size() % noise_len]);
    } else {
      words_.push_back(kCommonWords[random_.Below(std::size(kCommonWords))]);
    }
  }
  return absl::MakeConstSpan(words_.data(), n);
}

bool HaystackStream::IsBoundary(absl::Span<const std::string_view> words, size_t i) const {
  if (i == 0 || i >= words.size()) return true;
  if (kind_ == HaystackKind::kWordSalad) return true;
  return words[i - 1].ends_with('.');
}

size_t SnapToBoundary(const HaystackStream& stream, absl::Span<const std::string_view> words,
                      double fraction) {
  const size_t n = words.size();
  const auto target = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  for (size_t d = 0; d <= n; ++d) {
    if (d <= target && stream.IsBoundary(words, target - d)) return target - d;
    if (target + d <= n && stream.IsBoundary(words, target + d)) return target + d;
  }
  return n;
}

}  // namespace claa::eval::ruler_internal
