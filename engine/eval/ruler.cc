#include "engine/eval/ruler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/eval/det_random.h"
#include "engine/eval/ruler_text.h"
#include "nlohmann/json.hpp"

namespace claa::eval {
namespace {

using ruler_internal::CommonWords;
using ruler_internal::HaystackStream;
using ruler_internal::SnapToBoundary;

// Sub-stream ids for MixSeed: the haystack and the kv filler draw from their own generators so
// that their text does not depend on how many draws the task's plan made, and vice versa.
constexpr uint64_t kHaystackStream = 1;
constexpr uint64_t kKvFillerStream = 2;
constexpr int kMaxTargetTokens = 1 << 20;

// A sentence placed between haystack words at `fraction` of the haystack. Inserts are laid out
// in (fraction, order) order; snapping to boundaries is monotone, so that is also text order.
struct Insert {
  double fraction = 0.0;
  int order = 0;
  std::string text;
};

// Everything about an example that is drawn before its length is known.
struct Plan {
  std::string header;    // instructions before the haystack, ends with "\n"
  std::vector<Insert> inserts;
  std::string question;  // after the haystack; ends with the answer cue
  std::string answer;
  std::vector<std::string> answers;
};

// std::string_view joiner: Debian's Abseil has its own string_view, which StrJoin needs.
std::string Join(absl::Span<const std::string_view> parts, std::string_view separator) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) s += separator;
    s += parts[i];
  }
  return s;
}

std::string RandomNumber(DetRandom& random, int digits) {
  int64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(random.Between(lo, lo * 10 - 1));  // no leading zero
}

std::string RandomKey(DetRandom& random) {
  auto words = CommonWords();
  std::string key(words[random.Below(words.size())]);
  key += '-';
  key += words[random.Below(words.size())];
  return key;
}

std::string RandomHex(DetRandom& random, int length) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < length; ++i) s.push_back(kHex[random.Below(16)]);
  return s;
}

std::string RandomVarName(DetRandom& random) {
  std::string s;
  for (int i = 0; i < 5; ++i) s.push_back(static_cast<char>('A' + random.Below(26)));
  return s;
}

// Draws until `make` gives a string not yet in `used`; keeps keys, values and names distinct
// so that every answer occurs in the prompt exactly where it was put.
std::string Distinct(absl::flat_hash_set<std::string>& used, const std::function<std::string()>& make) {
  for (;;) {
    std::string s = make();
    if (used.insert(s).second) return s;
  }
}

std::string Needle(const std::string& key, const std::string& value) {
  return absl::StrCat("One of the special magic numbers for ", key, " is: ", value, ".");
}

Plan PlanNiah(const RulerOptions& o, double depth, DetRandom& random) {
  Plan plan;
  absl::flat_hash_set<std::string> used;
  const std::string key = Distinct(used, [&] { return RandomKey(random); });
  const char* question_tail = "?\nAnswer: ";
  if (o.task == RulerTask::kNiahMultivalue) {
    plan.header =
        "Special magic numbers are hidden in the following text. Memorize them.\n";
    for (int i = 0; i < o.num_values; ++i) {
      const double fraction = i == 0 ? depth : random.Unit();
      plan.inserts.push_back(
          {fraction, i, Needle(key, Distinct(used, [&] { return RandomNumber(random, 7); }))});
    }
    // The answer lists the values in the order they appear.
    std::vector<Insert> ordered = plan.inserts;
    std::sort(ordered.begin(), ordered.end(), [](const Insert& a, const Insert& b) {
      return std::pair(a.fraction, a.order) < std::pair(b.fraction, b.order);
    });
    for (const Insert& insert : ordered) {
      const size_t colon = insert.text.rfind(": ");
      plan.answers.push_back(insert.text.substr(colon + 2, insert.text.size() - colon - 3));
    }
    plan.answer = absl::StrJoin(plan.answers, ", ");
    plan.question = absl::StrCat("\nQuestion: What are all the special magic numbers for ", key,
                                 question_tail);
    return plan;
  }
  const std::string value = Distinct(used, [&] { return RandomNumber(random, 7); });
  plan.inserts.push_back({depth, 0, Needle(key, value)});
  if (o.task == RulerTask::kNiahMultikey) {
    plan.header =
        "Special magic numbers are hidden in the following text. Memorize them.\n";
    for (int i = 1; i < o.num_needles; ++i) {
      const std::string k = Distinct(used, [&] { return RandomKey(random); });
      const std::string v = Distinct(used, [&] { return RandomNumber(random, 7); });
      plan.inserts.push_back({random.Unit(), i, Needle(k, v)});
    }
  } else {
    plan.header =
        "A special magic number is hidden in the following text. Memorize it.\n";
  }
  plan.answer = value;
  plan.answers = {value};
  plan.question =
      absl::StrCat("\nQuestion: What is the special magic number for ", key, question_tail);
  return plan;
}

Plan PlanVariableTracking(const RulerOptions& o, double depth, DetRandom& random) {
  Plan plan;
  plan.header = "Track the chains of variable assignments hidden in the following text.\n";
  absl::flat_hash_set<std::string> used_names, used_values;
  int order = 0;
  std::string queried_value;
  for (int chain = 0; chain < o.vt_chains; ++chain) {
    const std::string value = Distinct(used_values, [&] { return RandomNumber(random, 5); });
    std::vector<double> fractions;
    for (int hop = 0; hop <= o.vt_hops; ++hop) {
      // The queried chain starts at `depth` and continues after it; distractors lie anywhere.
      const double u = random.Unit();
      fractions.push_back(chain == 0 ? (hop == 0 ? depth : depth + (1.0 - depth) * u) : u);
    }
    std::sort(fractions.begin() + (chain == 0 ? 1 : 0), fractions.end());
    std::string previous;
    for (int hop = 0; hop <= o.vt_hops; ++hop) {
      const std::string name = Distinct(used_names, [&] { return RandomVarName(random); });
      const std::string rhs = hop == 0 ? value : absl::StrCat("VAR ", previous);
      plan.inserts.push_back({fractions[hop], order++, absl::StrCat("VAR ", name, " = ", rhs, ".")});
      if (chain == 0) plan.answers.push_back(name);
      previous = name;
    }
    if (chain == 0) queried_value = value;
  }
  plan.answer = absl::StrJoin(plan.answers, " ");
  plan.question = absl::StrCat("\nQuestion: Which variables are assigned the value ",
                               queried_value, "?\nAnswer: ");
  return plan;
}

// Largest n in [0, max_n] with count(n) <= target, for a count that grows with n by about
// `per_unit` tokens a unit. Probes are guided by that estimate and kept inside the bracket
// (lo fits, hi does not), so the search ends after a few full tokenizations.
// `base` is count(0), which the caller has checked fits.
absl::StatusOr<size_t> FitLength(const std::function<absl::StatusOr<int>(size_t)>& count,
                                 int base, int target, double per_unit, size_t max_n) {
  size_t lo = 0;
  size_t hi = max_n + 1;  // exclusive bound: hi is known not to fit (or past the limit)
  int t = base;
  size_t n = 0;
  while (hi - lo > 1) {
    const double step = (target - t) / std::max(per_unit, 0.25);
    long long guess = static_cast<long long>(n) + std::llround(step);
    guess = std::clamp<long long>(guess, static_cast<long long>(lo) + 1,
                                  static_cast<long long>(hi) - 1);
    n = static_cast<size_t>(guess);
    absl::StatusOr<int> c = count(n);
    if (!c.ok()) return c.status();
    t = *c;
    if (t <= target) {
      lo = n;
    } else {
      hi = n;
    }
  }
  return lo;
}

absl::StatusOr<int> CountTokens(const Tokenizer& tokenizer, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, /*add_special_tokens=*/true);
  if (!ids.ok()) return ids.status();
  return static_cast<int>(ids->size());
}

absl::Status Validate(const RulerOptions& o) {
  if (o.target_tokens < 1 || o.target_tokens > kMaxTargetTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("target_tokens must be in [1, ", kMaxTargetTokens, "], got ", o.target_tokens));
  }
  if (o.depth.has_value() && !(*o.depth >= 0.0 && *o.depth <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("depth must be in [0, 1], got ", *o.depth));
  }
  if (o.num_needles < 2 || o.num_needles > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_needles must be in [2, 100], got ", o.num_needles));
  }
  if (o.num_values < 1 || o.num_values > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_values must be in [1, 100], got ", o.num_values));
  }
  if (o.vt_hops < 0 || o.vt_hops > 50) {
    return absl::InvalidArgumentError(absl::StrCat("vt_hops must be in [0, 50], got ", o.vt_hops));
  }
  if (o.vt_chains < 1 || o.vt_chains > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("vt_chains must be in [1, 20], got ", o.vt_chains));
  }
  return absl::OkStatus();
}

absl::Status TooShort(const RulerOptions& o, int base_tokens) {
  return absl::InvalidArgumentError(absl::StrCat(
      "target_tokens=", o.target_tokens, " cannot hold the fixed text of ", std::string(RulerTaskName(o.task)),
      " (", base_tokens, " tokens with an empty haystack)"));
}

// The haystack tasks: plan, then the longest haystack that fits.
absl::StatusOr<RulerExample> GenerateInHaystack(const Tokenizer& tokenizer,
                                                const RulerOptions& o, double depth,
                                                const Plan& plan) {
  HaystackStream stream(o.haystack, MixSeed(o.seed, kHaystackStream));
  std::vector<const Insert*> ordered;
  for (const Insert& insert : plan.inserts) ordered.push_back(&insert);
  std::sort(ordered.begin(), ordered.end(), [](const Insert* a, const Insert* b) {
    return std::pair(a->fraction, a->order) < std::pair(b->fraction, b->order);
  });
  auto assemble = [&](size_t n) {
    absl::Span<const std::string_view> words = stream.Prefix(n);
    std::vector<std::string_view> parts;
    size_t next = 0;
    for (const Insert* insert : ordered) {
      const size_t at = SnapToBoundary(stream, words, insert->fraction);
      for (; next < at; ++next) parts.push_back(words[next]);
      parts.push_back(insert->text);
    }
    for (; next < n; ++next) parts.push_back(words[next]);
    return absl::StrCat(plan.header, Join(parts, " "), plan.question);
  };
  auto count = [&](size_t n) { return CountTokens(tokenizer, assemble(n)); };

  absl::StatusOr<int> base = count(0);
  if (!base.ok()) return base.status();
  if (*base > o.target_tokens) return TooShort(o, *base);
  // Tokens per haystack word, measured on the stream itself.
  constexpr size_t kSample = 64;
  absl::StatusOr<int> sample = CountTokens(tokenizer, Join(stream.Prefix(kSample), " "));
  if (!sample.ok()) return sample.status();
  const double per_word = static_cast<double>(*sample - 1) / kSample;  // minus the BOS
  const size_t max_n = static_cast<size_t>(o.target_tokens) + 1;  // a word is >= 1 token
  absl::StatusOr<size_t> n = FitLength(count, *base, o.target_tokens, per_word, max_n);
  if (!n.ok()) return n.status();

  RulerExample ex;
  ex.haystack = std::string(HaystackName(o.haystack));
  ex.prompt = assemble(*n);
  ex.answer = plan.answer;
  ex.answers = plan.answers;
  return ex;
}

// kv_retrieval: a JSON object of random 8-hex-digit pairs; the filler is more pairs.
absl::StatusOr<RulerExample> GenerateKv(const Tokenizer& tokenizer, const RulerOptions& o,
                                        double depth, DetRandom& random) {
  absl::flat_hash_set<std::string> used;
  const std::string key = Distinct(used, [&] { return RandomHex(random, 8); });
  const std::string value = Distinct(used, [&] { return RandomHex(random, 8); });
  DetRandom filler_random(MixSeed(o.seed, kKvFillerStream));
  std::vector<std::string> fillers;  // grown lazily; a prefix never changes
  auto grow_to = [&](size_t n) {
    while (fillers.size() < n) {
      const std::string k = Distinct(used, [&] { return RandomHex(filler_random, 8); });
      const std::string v = Distinct(used, [&] { return RandomHex(filler_random, 8); });
      fillers.push_back(absl::StrCat("\"", k, "\": \"", v, "\""));
    }
  };
  const std::string header =
      "Extract the value of the specified key from the JSON object below.\n{";
  const std::string question = absl::StrCat(
      "}\nQuestion: What is the value of key \"", key, "\"?\nAnswer: ");
  const std::string queried = absl::StrCat("\"", key, "\": \"", value, "\"");
  auto assemble = [&](size_t n) {
    grow_to(n);  // before taking views: growing may reallocate
    const auto at = static_cast<size_t>(std::llround(depth * static_cast<double>(n)));
    std::vector<std::string_view> pairs;
    for (size_t i = 0; i <= n; ++i) {
      if (i == at) pairs.push_back(queried);
      if (i < n) pairs.push_back(fillers[i]);
    }
    return absl::StrCat(header, Join(pairs, ", "), question);
  };
  auto count = [&](size_t n) { return CountTokens(tokenizer, assemble(n)); };
  absl::StatusOr<int> base = count(0);
  if (!base.ok()) return base.status();
  if (*base > o.target_tokens) return TooShort(o, *base);
  grow_to(1);
  absl::StatusOr<int> one = CountTokens(tokenizer, fillers[0] + ", ");
  if (!one.ok()) return one.status();
  const size_t max_n = static_cast<size_t>(o.target_tokens) / 4 + 1;  // a pair is >= 4 tokens
  absl::StatusOr<size_t> n = FitLength(count, *base, o.target_tokens, *one - 1, max_n);
  if (!n.ok()) return n.status();

  RulerExample ex;
  ex.haystack = "kv_pairs";
  ex.prompt = assemble(*n);
  ex.answer = value;
  ex.answers = {value};
  return ex;
}

}  // namespace

std::string_view RulerTaskName(RulerTask task) {
  switch (task) {
    case RulerTask::kNiahSingle: return "niah_single";
    case RulerTask::kNiahMultikey: return "niah_multikey";
    case RulerTask::kNiahMultivalue: return "niah_multivalue";
    case RulerTask::kKvRetrieval: return "kv_retrieval";
    case RulerTask::kVariableTracking: return "variable_tracking";
  }
  return "unknown";
}

std::string_view HaystackName(HaystackKind haystack) {
  return haystack == HaystackKind::kNoise ? "noise" : "salad";
}

absl::StatusOr<RulerTask> ParseRulerTask(std::string_view name) {
  for (RulerTask task : kAllRulerTasks) {
    if (RulerTaskName(task) == name) return task;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown task '", std::string(name),
      "' (niah_single, niah_multikey, niah_multivalue, kv_retrieval, variable_tracking)"));
}

absl::StatusOr<HaystackKind> ParseHaystack(std::string_view name) {
  if (name == "noise" || name == "repeat") return HaystackKind::kNoise;
  if (name == "salad" || name == "word_salad") return HaystackKind::kWordSalad;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown haystack '", std::string(name), "' (noise, salad)"));
}

absl::StatusOr<RulerExample> RulerGenerator::Generate(const RulerOptions& o) const {
  if (absl::Status s = Validate(o); !s.ok()) return s;
  DetRandom random(o.seed);
  const double depth = o.depth.has_value() ? *o.depth : random.Unit();
  absl::StatusOr<RulerExample> ex;
  switch (o.task) {
    case RulerTask::kKvRetrieval:
      ex = GenerateKv(tokenizer_, o, depth, random);
      break;
    case RulerTask::kVariableTracking:
      ex = GenerateInHaystack(tokenizer_, o, depth, PlanVariableTracking(o, depth, random));
      break;
    default:
      ex = GenerateInHaystack(tokenizer_, o, depth, PlanNiah(o, depth, random));
      break;
  }
  if (!ex.ok()) return ex.status();
  absl::StatusOr<std::vector<int32_t>> prompt_ids = tokenizer_.Encode(ex->prompt, true);
  if (!prompt_ids.ok()) return prompt_ids.status();
  absl::StatusOr<std::vector<int32_t>> answer_ids = tokenizer_.Encode(ex->answer, false);
  if (!answer_ids.ok()) return answer_ids.status();
  ex->prompt_ids = *std::move(prompt_ids);
  ex->answer_ids = *std::move(answer_ids);
  ex->prompt_tokens = static_cast<int>(ex->prompt_ids.size());
  ex->task = std::string(RulerTaskName(o.task));
  ex->depth = depth;
  ex->seed = o.seed;
  return ex;
}

uint64_t RulerExampleSeed(uint64_t suite_seed, RulerTask task, HaystackKind haystack,
                          int target_tokens, int index) {
  uint64_t s = MixSeed(suite_seed, static_cast<uint64_t>(task));
  s = MixSeed(s, static_cast<uint64_t>(haystack));
  s = MixSeed(s, static_cast<uint64_t>(target_tokens));
  s = MixSeed(s, static_cast<uint64_t>(index));
  return s & ((uint64_t{1} << 53) - 1);
}

std::string RulerExampleToJson(const RulerExample& ex, bool with_ids) {
  nlohmann::ordered_json j;
  j["task"] = ex.task;
  j["haystack"] = ex.haystack;
  j["prompt"] = ex.prompt;
  j["answer"] = ex.answer;
  j["answers"] = ex.answers;
  j["prompt_tokens"] = ex.prompt_tokens;
  j["depth"] = ex.depth;
  j["seed"] = ex.seed;
  if (with_ids) {
    j["prompt_ids"] = ex.prompt_ids;
    j["answer_ids"] = ex.answer_ids;
  }
  // Replace rather than throw on invalid UTF-8: the text comes from our own word lists, but a
  // throwing dump must not be the way an odd tokenizer reports itself.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace claa::eval
