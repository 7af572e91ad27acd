#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"

namespace claa {
namespace {

using tokenizer_internal::BytesToAlphabet;
using tokenizer_internal::ByteToUnicodeUtf8;

constexpr int kNumMergedTokens = 254;  // 256 bytes + 254 merges + 2 specials = 512 ids
constexpr int kBosId = 510;
constexpr int kEosId = 511;

// Fixed material for the merges: frequent English fragments first, then frequent words with
// their leading space. The merges are whatever it takes to build each entry left to right, in
// this order, until the budget is used; the list never changes, so neither do the ids.
constexpr std::string_view kMergeSources[] = {
    "th",     "he",     "in",     "er",      "an",     "re",     "on",     "at",      "en",
    "nd",     "ti",     "es",     "or",      "te",     "of",     "ed",     "is",      "it",
    "al",     "ar",     "st",     "to",      "nt",     "ng",     "se",     "ha",      "as",
    "ou",     "io",     "le",     "ve",      "co",     "me",     "de",     "hi",      "ri",
    "ro",     "ic",     "ne",     "ea",      "ra",     "ce",     "li",     "ch",      "ll",
    "be",     "ma",     "si",     "om",      "ur",     "ing",    "ion",    "ent",     "ati",
    "for",    "her",    "ter",    "hat",     "tha",    "ere",    "ate",    "his",     "con",
    "res",    "ver",    "all",    "ons",     "nce",    "men",    "ith",    "ted",     "ers",
    " the",   " a",     " and",   " to",     " of",    " in",    " is",    " it",     " that",
    " was",   " for",   " on",    " with",   " he",    " she",   " as",    " you",    " at",
    " be",    " this",  " have",  " from",   " or",    " one",   " had",   " by",     " word",
    " but",   " not",   " what",  " all",    " were",  " we",    " when",  " your",   " can",
    " said",  " there", " use",   " an",     " each",  " which", " do",    " how",    " their",
    " if",    " will",  " up",    " other",  " about", " out",   " many",  " then",   " them",
    " these", " so",    " some",  " her",    " would", " make",  " like",  " him",    " into",
    " time",  " has",   " look",  " two",    " more",  " write", " go",    " see",    " number",
    " no",    " way",   " could", " people", " my",    " than",  " first", " water",  " been",
    " call",  " who",   " its",   " now",    " find",  " long",  " down",  " day",    " did",
    " get",   " come",  " made",  " may",    " part",  " once",  " upon",  " little", " girl",
    " boy",   " named", " happy", " play",   " went",  " saw",   " big",   " very",   " friend",
    " mom",   " dog",   " cat",   " tree",   "\n\n",   "  ",     "    ",   ".\n",     ", ",
    ". ",
};

// Plain BPE on one word: repeatedly merge the leftmost adjacent pair of lowest rank.
std::vector<std::string> ApplyMerges(
    const std::string& word, const std::map<std::pair<std::string, std::string>, int>& ranks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < word.size();) {
    const unsigned char lead = word[i];
    const size_t len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    parts.push_back(word.substr(i, len));
    i += len;
  }
  while (parts.size() > 1) {
    int best_rank = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = ranks.find({parts[i], parts[i + 1]});
      if (it != ranks.end() && (best_rank < 0 || it->second < best_rank)) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank < 0) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + best + 1);
  }
  return parts;
}

}  // namespace

std::string BuiltinTokenizerJson() {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  absl::flat_hash_map<std::string, int> ids;
  for (int b = 0; b < 256; ++b) {
    vocab[ByteToUnicodeUtf8(static_cast<unsigned char>(b))] = b;
    ids[ByteToUnicodeUtf8(static_cast<unsigned char>(b))] = b;
  }
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  std::map<std::pair<std::string, std::string>, int> ranks;
  int next_id = 256;
  auto add_merge = [&](const std::string& left, const std::string& right) {
    ranks[{left, right}] = static_cast<int>(ranks.size());
    merges.push_back(nlohmann::ordered_json::array({left, right}));
    // A result may already exist via another merge path; BPE allows several merges per token.
    if (!ids.contains(left + right)) {
      vocab[left + right] = next_id;
      ids[left + right] = next_id++;
    }
  };
  for (std::string_view source : kMergeSources) {
    // Add merges until BPE with the merges so far turns the whole entry into one token. New
    // merges rank after all existing ones, so each addition extends the previous segmentation.
    const std::string mapped = BytesToAlphabet(source);
    while (next_id < 256 + kNumMergedTokens) {
      std::vector<std::string> parts = ApplyMerges(mapped, ranks);
      if (parts.size() <= 1) break;
      add_merge(parts[0], parts[1]);
    }
  }
  // Fill any unused budget with byte pairs so the vocabulary size is always exactly 512.
  for (int a = 'a'; a <= 'z' && next_id < 256 + kNumMergedTokens; ++a) {
    for (int b = 'a'; b <= 'z' && next_id < 256 + kNumMergedTokens; ++b) {
      const std::string left(1, static_cast<char>(a)), right(1, static_cast<char>(b));
      if (ids.contains(left + right)) continue;
      add_merge(left, right);
    }
  }

  auto added = [](int id, const char* content) {
    return nlohmann::ordered_json{{"id", id},        {"content", content}, {"single_word", false},
                                  {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                                  {"special", true}};
  };
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = {added(kBosId, "<|begin_of_text|>"), added(kEosId, "<|end_of_text|>")};
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>",
         {{"id", "<|begin_of_text|>"}, {"ids", {kBosId}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}};
  return j.dump(2);
}

}  // namespace claa
