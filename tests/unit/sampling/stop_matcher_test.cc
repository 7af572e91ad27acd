#include "engine/sampling/stop_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace claa {
namespace {

// Pushes each delta, collecting everything emitted; Flush()es when no stop string matched.
struct Streamed {
  std::string text;
  bool stopped = false;
  std::string matched;
};

Streamed Stream(StopStringMatcher& m, const std::vector<std::string>& deltas) {
  Streamed out;
  for (const std::string& d : deltas) {
    StopStringMatcher::Result r = m.Push(d);
    out.text += r.emit;
    if (r.stopped) {
      out.stopped = true;
      out.matched = r.matched;
      break;
    }
  }
  if (!out.stopped) out.text += m.Flush();
  return out;
}

// Brute force over the whole text: the first stop string to complete wins; at equal end the
// longest (earliest start) wins.
Streamed Reference(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    const std::string* best = nullptr;
    for (const std::string& s : stops) {
      if (s.empty() || s.size() > end) continue;
      if (text.compare(end - s.size(), s.size(), s) == 0 && (!best || s.size() > best->size())) {
        best = &s;
      }
    }
    if (best) return {text.substr(0, end - best->size()), true, *best};
  }
  return {text, false, ""};
}

TEST(StopStringMatcherTest, NoStopStringsEmitsImmediately) {
  StopStringMatcher m({});
  StopStringMatcher::Result r = m.Push("hello");
  EXPECT_EQ(r.emit, "hello");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringMatcherTest, TextThatCannotStartAStopIsNotHeld) {
  StopStringMatcher m({"STOP"});
  EXPECT_EQ(m.Push("hello world").emit, "hello world");
  EXPECT_EQ(m.held_back(), 0u);
  EXPECT_EQ(m.Push("abc ST").emit, "abc ");
  EXPECT_EQ(m.held_back(), 2u);
}

TEST(StopStringMatcherTest, StopSplitAcrossDeltas) {
  StopStringMatcher m({"</end>"});
  StopStringMatcher::Result r = m.Push("answer is 42</");
  EXPECT_EQ(r.emit, "answer is 42");
  EXPECT_FALSE(r.stopped);
  r = m.Push("en");
  EXPECT_EQ(r.emit, "");
  EXPECT_FALSE(r.stopped);
  r = m.Push("d> trailing");
  EXPECT_EQ(r.emit, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.matched, "</end>");
  // Nothing after a stop is emitted, ever.
  r = m.Push("more");
  EXPECT_EQ(r.emit, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringMatcherTest, PartialPrefixThatFailsIsReleased) {
  StopStringMatcher m({"STOP"});
  EXPECT_EQ(m.Push("go ST").emit, "go ");
  StopStringMatcher::Result r = m.Push("OR");  // "STOR" is not "STOP".
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.emit, "STOR");
  EXPECT_EQ(m.held_back(), 0u);
  // A failed prefix whose tail starts a new candidate keeps only that tail.
  StopStringMatcher m2({"abab"});
  EXPECT_EQ(m2.Push("xaba").emit, "x");
  EXPECT_EQ(m2.Push("a").emit, "aba");  // "abaa": only the last "a" can still start "abab".
  EXPECT_EQ(m2.held_back(), 1u);
  EXPECT_EQ(m2.Push("bab").emit, "");
  EXPECT_TRUE(m2.stopped());
}

TEST(StopStringMatcherTest, MultipleStopStrings) {
  StopStringMatcher m({"\n\n", "User:", "###"});
  Streamed s = Stream(m, {"Sure", ". Us", "e", "r:", " hi"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.matched, "User:");
  EXPECT_EQ(s.text, "Sure. ");

  StopStringMatcher m2({"\n\n", "User:", "###"});
  s = Stream(m2, {"a\n", "b#", "##c"});
  EXPECT_EQ(s.matched, "###");
  EXPECT_EQ(s.text, "a\nb");
}

TEST(StopStringMatcherTest, OverlappingPrefixes) {
  // "ab" completes before "abc" could, so it wins even though "abc" is listed first.
  StopStringMatcher m({"abc", "ab"});
  Streamed s = Stream(m, {"xa", "bc"});
  EXPECT_EQ(s.matched, "ab");
  EXPECT_EQ(s.text, "x");
  // At the same end position the longer (earlier-starting) string wins.
  StopStringMatcher m2({"bc", "abc"});
  s = Stream(m2, {"za", "bc"});
  EXPECT_EQ(s.matched, "abc");
  EXPECT_EQ(s.text, "z");
  // A shorter stop inside a longer one's prefix.
  StopStringMatcher m3({"hello world", "lo w"});
  s = Stream(m3, {"hel", "lo", " wor", "ld"});
  EXPECT_EQ(s.matched, "lo w");
  EXPECT_EQ(s.text, "hel");
}

TEST(StopStringMatcherTest, StopAtVeryStart) {
  StopStringMatcher m({"<|im_end|>"});
  StopStringMatcher::Result r = m.Push("<|im_end|>rest");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  StopStringMatcher m2({"<|im_end|>"});
  EXPECT_EQ(m2.Push("<|im").emit, "");
  r = m2.Push("_end|>");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
}

TEST(StopStringMatcherTest, FlushReleasesHeldBackText) {
  StopStringMatcher m({"STOP", "\n\n"});
  EXPECT_EQ(m.Push("end ST").emit, "end ");
  EXPECT_EQ(m.Flush(), "ST");
  EXPECT_EQ(m.Flush(), "");
  EXPECT_EQ(m.Push("\n").emit, "");
  EXPECT_EQ(m.Flush(), "\n");
}

TEST(StopStringMatcherTest, EmptyDeltaAndEmptyStopStringsAreHarmless) {
  StopStringMatcher m({"", "x"});
  EXPECT_EQ(m.Push("").emit, "");
  EXPECT_EQ(m.Push("ab").emit, "ab");
  EXPECT_TRUE(m.Push("x").stopped);
}

TEST(StopStringMatcherTest, MultiByteUtf8) {
  StopStringMatcher m({"。\n"});
  Streamed s = Stream(m, {"你好", "\xE3\x80", "\x82", "\n再见"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.text, "你好");
}

// Any split of the same text gives the same result as matching the whole text at once.
TEST(StopStringMatcherTest, RandomSplitsMatchReference) {
  std::mt19937_64 rng(2024);
  auto rand_str = [&rng](size_t max_len) {
    std::string s(1 + rng() % max_len, 'a');
    for (char& c : s) c = static_cast<char>('a' + rng() % 3);  // Small alphabet: many overlaps.
    return s;
  };
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::string> stops;
    const int n_stops = static_cast<int>(rng() % 5);
    for (int i = 0; i < n_stops; ++i) stops.push_back(rand_str(6));
    const std::string text = rand_str(40);
    std::vector<std::string> deltas;
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = std::min(text.size() - pos, static_cast<size_t>(rng() % 5));
      deltas.push_back(text.substr(pos, len));  // Includes empty deltas.
      pos += len;
    }
    StopStringMatcher m(stops);
    const Streamed got = Stream(m, deltas);
    const Streamed want = Reference(text, stops);
    ASSERT_EQ(got.stopped, want.stopped) << text;
    ASSERT_EQ(got.text, want.text) << text;
    ASSERT_EQ(got.matched, want.matched) << text;
  }
}

TEST(StopStringMatcherTest, ManyLongStopStrings) {
  std::vector<std::string> stops;
  for (int i = 0; i < 64; ++i)
    stops.push_back(std::string(250, 'a') + "#" + std::to_string(i) + "#");
  StopStringMatcher m(stops);
  const std::string text(100000, 'a');
  StopStringMatcher::Result r = m.Push(text);
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.held_back(), 250u);  // Only the live prefix "a"*250 is held.
  EXPECT_EQ(r.emit.size() + m.held_back(), text.size());
  r = m.Push("#4");
  EXPECT_FALSE(r.stopped);
  r = m.Push("2#");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  EXPECT_EQ(r.matched, stops[42]);
}

}  // namespace
}  // namespace claa
