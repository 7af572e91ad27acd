// AttnCache benchmark (DESIGN.md §3, issue 7) on the CPU.
//  speed    -- a synthetic Llama shape with random weights (timings do not depend on the weights):
//              per prompt length, the attention work a hit replaces (Q/K projections, RoPE, K/V
//              cache writes, QK^T, softmax, PV) against what it does instead (unpack the fp16 map,
//              A @ V), for one layer; and end to end through PrefillEngine: a request with the
//              cache off, a miss that inserts, and a hit (lookup included).
//  accuracy -- stories260K (a real trained model) on a repeated-template task set: few-shot-
//              style story prompts that differ in the character's name and object; Classify
//              picks the character's name among 8. Accuracy without the cache, then, per
//              similarity threshold, a fresh cache fed the shuffled stream with
//              LOOKUP_AND_INSERT: hit rate, accuracy, agreement with the uncached answers.
//  mlp      -- trains the paper's Siamese MLP (siamese_mlp.h) on stories260K: pairs of
//              TinyStories-like prompts (slot changes, a replaced or swapped sentence, unrelated
//              prompts) whose target is the maps' total variation + length penalty; compares it
//              with the training-free random projection on held-out pairs (other prompts of the
//              corpus, and the accuracy task set, whose templates it never saw); then reruns the
//              accuracy sweep with the MLP as the lookup feature.
// Prints tables and one JSON line ("JSON {...}").
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/attncache/attention_reuse.h"
#include "engine/attncache/map_distance.h"
#include "engine/attncache/prefill_engine.h"
#include "engine/attncache/siamese_mlp.h"
#include "engine/generate/loaded_model.h"
#include "engine/model/weights.h"
#include "engine/runtime/attention.h"
#include "engine/runtime/cpu_ops.h"

ABSL_FLAG(std::string, mode, "speed,accuracy", "comma-separated subset of speed, accuracy");
ABSL_FLAG(std::string, lengths, "512,1024,2048", "speed: prompt lengths");
ABSL_FLAG(int, runs, 5, "speed: timed runs per measurement (median reported)");
ABSL_FLAG(int, hidden, 2048, "speed: synthetic hidden size");
ABSL_FLAG(int, layers, 8, "speed: synthetic layers");
ABSL_FLAG(int, heads, 32, "speed: synthetic attention heads");
ABSL_FLAG(int, kv_heads, 8, "speed: synthetic KV heads");
ABSL_FLAG(int, ffn, 5632, "speed: synthetic intermediate size");
ABSL_FLAG(int, vocab, 32000, "speed: synthetic vocabulary");
ABSL_FLAG(int, blas_threads, 0, "OpenBLAS threads (0: library default)");
ABSL_FLAG(std::string, model_dir, std::string(CLAA_SOURCE_DIR) + "/../shared/models/stories260K",
          "accuracy: model directory");
ABSL_FLAG(std::string, device, "cpu",
          "accuracy: where the model runs, cpu or cuda (the GPU backend library from "
          "$CLAA_CUDA_BACKEND, else next to this binary, else the loader's search path)");
ABSL_FLAG(std::string, thresholds, "0.995,0.99,0.98,0.95,0.9", "accuracy: thresholds to sweep");
ABSL_FLAG(bool, allow_longer, false, "accuracy: also reuse longer entries (paper's padding)");
ABSL_FLAG(int, repeats, 2, "accuracy: times each prompt of the task set occurs in the stream");
ABSL_FLAG(std::string, work_dir, "/tmp/claa_attn_cache_bench", "scratch directory for caches");
ABSL_FLAG(std::string, projector, "", "accuracy: a trained Siamese MLP file (default: random)");
ABSL_FLAG(std::string, mlp_thresholds, "0.995,0.99,0.98,0.97,0.95",
          "mlp: thresholds of the accuracy sweep with the trained MLP");
ABSL_FLAG(int, mlp_epochs, 150, "mlp: training epochs");
ABSL_FLAG(double, length_penalty, 1.0, "mlp: target = TV + length_penalty * |dL| / max L");

namespace claa::attncache {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Medians of several functions timed in interleaved rounds (after one warm-up round), so that a
// load change on a shared machine affects all of them alike and their ratios stay meaningful.
std::vector<double> TimeInterleaved(int runs, const std::vector<std::function<void()>>& fs) {
  std::vector<std::vector<double>> t(fs.size());
  for (const auto& f : fs) f();
  for (int r = 0; r < runs; ++r) {
    for (size_t i = 0; i < fs.size(); ++i) {
      const auto a = Clock::now();
      fs[i]();
      t[i].push_back(Seconds(a, Clock::now()));
    }
  }
  std::vector<double> out;
  for (auto& v : t) out.push_back(Median(v));
  return out;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = int32_t(rng() % uint64_t(vocab));
  return t;
}

ModelConfig SyntheticConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = absl::GetFlag(FLAGS_vocab);
  c.hidden_size = absl::GetFlag(FLAGS_hidden);
  c.intermediate_size = absl::GetFlag(FLAGS_ffn);
  c.num_layers = absl::GetFlag(FLAGS_layers);
  c.num_heads = absl::GetFlag(FLAGS_heads);
  c.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  c.head_dim = c.hidden_size / c.num_heads;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = false;
  return c;
}

std::vector<std::string> json;

// ---------------------------------------------------------------------------------------------
void SpeedBench() {
  const ModelConfig c = SyntheticConfig();
  std::vector<int> lengths;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    lengths.push_back(std::stoi(std::string(s)));
  }
  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  const int runs = absl::GetFlag(FLAGS_runs);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows in a log file as it happens
  std::printf(
      "\n== speed: synthetic shape hidden %d, %d layers, %d heads / %d KV heads (d=%d), "
      "FFN %d, vocab %d, random weights ==\n",
      c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size,
      c.vocab_size);
  auto runner = ModelRunner::Create(
      [c](TpShard s) -> absl::StatusOr<ModelWeights> { return MakeRandomWeights(c, 1, s); }, 1,
      RunnerOptions{(max_len + 15) / 16 + 1, 16});
  if (!runner.ok()) {
    std::printf("cannot build the model: %s\n", runner.status().ToString().c_str());
    return;
  }
  const ModelWeights& w = (*runner)->weights(0);
  const LayerWeights& lw = w.layers[0];
  const int d = c.head_dim, q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d;
  std::printf("%6s | %12s %12s %7s | %11s %11s %7s | %10s %10s %10s %7s | %9s\n", "tokens",
              "attn blk ms", "hit blk ms", "x", "core ms", "A@V ms", "x", "off ms", "miss+ins",
              "hit ms", "x e2e", "entry MB");
  for (int n : lengths) {
    // --- one layer's attention, as the forward pass runs it and as a hit replaces it ---
    const std::vector<int32_t> tokens = RandomTokens(n, c.vocab_size, n);
    std::vector<float> x(size_t(n) * c.hidden_size), q(size_t(n) * q_dim), k(size_t(n) * kv_dim),
        v(size_t(n) * kv_dim), out(size_t(n) * q_dim);
    for (int t = 0; t < n; ++t) {
      RmsNorm(&w.embed_tokens[size_t(tokens[t]) * c.hidden_size], 1, c.hidden_size,
              lw.input_norm.data(), 1e-5f, &x[size_t(t) * c.hidden_size]);
    }
    RotaryEmbedding rope(c);
    std::vector<int32_t> pos(n);
    for (int t = 0; t < n; ++t) pos[t] = t;
    PagedKvCache cache(1, (n + 15) / 16, 16, c.num_kv_heads, d);
    std::vector<int> blocks(cache.num_blocks());
    for (int b = 0; b < cache.num_blocks(); ++b) blocks[b] = b;
    AttentionScratch scratch;
    Gemm(x.data(), n, c.hidden_size, lw.v_proj.data(), kv_dim, v.data());
    auto core = [&] {
      PagedCausalAttention(cache, 0, blocks, 0, q.data(), q_dim, n, c.num_heads, out.data(), q_dim,
                           &scratch);
    };
    auto block = [&] {
      Gemm(x.data(), n, c.hidden_size, lw.q_proj.data(), q_dim, q.data());
      Gemm(x.data(), n, c.hidden_size, lw.k_proj.data(), kv_dim, k.data());
      rope.Apply(q.data(), n, c.num_heads, q_dim, pos.data());
      rope.Apply(k.data(), n, c.num_kv_heads, kv_dim, pos.data());
      for (int t = 0; t < n; ++t) {
        std::copy_n(&k[size_t(t) * kv_dim], kv_dim, cache.k_slot(0, blocks, t));
        std::copy_n(&v[size_t(t) * kv_dim], kv_dim, cache.v_slot(0, blocks, t));
      }
      core();
    };
    block();
    const MapsShape shape{1, c.num_heads, n};
    std::vector<uint16_t> maps(shape.values());
    ComputeMaps(PromptQk{q.data(), q_dim, k.data(), kv_dim, n, c.num_heads, c.num_kv_heads, d}, 0,
                0, shape, maps.data());
    auto hit = [&] {
      ApplyCachedMaps(MapsView{maps.data(), shape}, 0, 0, c.num_heads, c.num_kv_heads, d, v.data(),
                      kv_dim, n, out.data(), q_dim);
    };
    const std::vector<double> op = TimeInterleaved(std::max(runs, 9), {block, core, hit});
    const double t_block = op[0], t_core = op[1], t_hit = op[2];

    // --- end to end through the engine (Embed, last-token pooling) ---
    const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_work_dir), "/speed_", n);
    std::filesystem::remove_all(dir);
    AttnCacheOptions o;
    o.dir = dir;
    o.max_bytes = int64_t{8} << 30;
    auto attn = AttnCache::Open(o, w, nullptr, nullptr);
    if (!attn.ok()) {
      std::printf("cache: %s\n", attn.status().ToString().c_str());
      return;
    }
    PrefillEngine engine(runner->get(), attn->get());
    auto embed = [&](const std::vector<int32_t>& t, CacheMode m) {
      auto r = engine.Embed(t, Pooling::kLast, false, m);
      if (!r.ok()) std::printf("embed: %s\n", r.status().ToString().c_str());
      return r.ok() ? r->cache : CacheOutcome{};
    };
    std::vector<double> miss_times;
    for (int r = 0; r < std::max(1, runs / 2); ++r) {
      const std::vector<int32_t> fresh = RandomTokens(n, c.vocab_size, 1000 + r);
      const auto a = Clock::now();
      const CacheOutcome oc = embed(fresh, CacheMode::kLookupAndInsert);
      miss_times.push_back(Seconds(a, Clock::now()));
      if (oc.hit || !oc.inserted) std::printf("warning: expected an inserting miss\n");
    }
    embed(tokens, CacheMode::kLookupAndInsert);
    bool all_hit = true;
    const std::vector<double> e2e = TimeInterleaved(
        runs, {[&] { embed(tokens, CacheMode::kOff); },
               [&] { all_hit = all_hit && embed(tokens, CacheMode::kLookup).hit; }});
    const double t_off = e2e[0], t_hit_e2e = e2e[1];
    if (!all_hit) std::printf("warning: expected hits\n");
    const double entry_mb =
        double(MapStore::EntryFileBytes({c.num_layers, c.num_heads, n})) / (1 << 20);
    std::printf(
        "%6d | %12.2f %12.2f %6.2fx | %11.2f %11.2f %6.2fx | %10.1f %10.1f %10.1f %6.2fx | %9.1f\n",
        n, t_block * 1e3, t_hit * 1e3, t_block / t_hit, t_core * 1e3, t_hit * 1e3, t_core / t_hit,
        t_off * 1e3, Median(miss_times) * 1e3, t_hit_e2e * 1e3, t_off / t_hit_e2e, entry_mb);
    json.push_back(absl::StrFormat(
        "{\"tokens\":%d,\"attn_block_ms\":%.3f,\"attn_core_ms\":%.3f,\"hit_attn_ms\":%.3f,"
        "\"attn_block_speedup\":%.3f,\"attn_core_speedup\":%.3f,\"e2e_off_ms\":%.2f,"
        "\"e2e_miss_insert_ms\":%.2f,\"e2e_hit_ms\":%.2f,\"e2e_speedup\":%.3f,\"entry_mb\":%.2f}",
        n, t_block * 1e3, t_core * 1e3, t_hit * 1e3, t_block / t_hit, t_core / t_hit, t_off * 1e3,
        Median(miss_times) * 1e3, t_hit_e2e * 1e3, t_off / t_hit_e2e, entry_mb));
    std::filesystem::remove_all(dir);
  }
  std::printf(
      "attn blk: Q/K projections + RoPE + K/V cache writes + attention core of one layer "
      "(all a hit skips); core: QK^T + softmax + PV; hit: fp16 unpack + A @ V.\n"
      "off / miss+ins / hit: whole Embed request (lookup, forward, insert).\n");
}

// ---------------------------------------------------------------------------------------------
struct Task {
  std::string prompt;
  int gold = 0;  // index into kNames
  int tmpl = 0;
};

const std::vector<std::string> kNames = {"Lily", "Tim", "Ben", "Sue", "Max", "Anna", "Tom", "Mia"};
const std::vector<std::string> kObjects = {"ball", "doll", "kite", "car", "teddy bear", "book"};
// Repeated templates: the same story skeletons, differing in the name and the object; the
// question is who the story is about.
const std::vector<std::string> kTemplates = {
    "Once upon a time, there was a little girl named {N}. {N} had a red {O}. She loved her {O} "
    "very much. Every day, {N} played with the {O} in the park. One day, {N} lost her {O}. She "
    "was very sad. Her mom helped her look for it. They found the {O} under a big tree. {N} "
    "was very happy. She said thank you to her mom. From that day on,",
    "One day, a boy named {N} went to the park with his mom. {N} saw a big {O} on the grass. "
    "He wanted to play with it. {N} ran to the {O} and picked it up. A little dog came and "
    "barked at him. {N} was scared, but the dog was friendly. They played with the {O} all day. "
    "When the sun went down, {N} went home. That night,",
    "There was a kind girl named {N}. {N} liked to share. One day, her friend was sad because "
    "he did not have a {O}. {N} gave him her {O}. Her friend smiled and said thank you. They "
    "played together with the {O}. {N} felt happy inside. Sharing made her feel good. The "
    "next day,",
    "Once upon a time, in a small house, lived a boy named {N}. {N} had a new {O}. He showed "
    "the {O} to his friends. They all wanted to play with it. {N} said, \"We can take turns.\" "
    "Everyone was happy. They played with the {O} until it was time to eat. After lunch,",
};

std::vector<Task> MakeTasks() {
  std::vector<Task> tasks;
  for (int t = 0; t < int(kTemplates.size()); ++t) {
    for (int n = 0; n < int(kNames.size()); ++n) {
      for (const std::string& o : kObjects) {
        Task task;
        task.prompt = absl::StrReplaceAll(kTemplates[t], {{"{N}", kNames[n]}, {"{O}", o}});
        task.gold = n;
        task.tmpl = t;
        tasks.push_back(task);
      }
    }
  }
  return tasks;
}

int Argmax(const ScoreResult& r) {
  int best = 0;
  for (int i = 1; i < int(r.continuations.size()); ++i) {
    if (r.continuations[i].logprob > r.continuations[best].logprob) best = i;
  }
  return best;
}

void AccuracyBench(const std::string& thresholds, const std::string& projector_path) {
  ModelLoadOptions load;
  load.model_dir = absl::GetFlag(FLAGS_model_dir);
  load.kv_cache_bytes = int64_t{64} << 20;
  load.device = absl::GetFlag(FLAGS_device);
  if (!std::filesystem::exists(load.model_dir)) {
    std::printf("\naccuracy: %s not found, skipped\n", load.model_dir.c_str());
    return;
  }
  auto model = LoadModel(load);
  if (!model.ok()) {
    std::printf("accuracy: %s\n", model.status().ToString().c_str());
    return;
  }
  std::printf("\naccuracy: model on %s\n", (*model)->device_description.c_str());
  const Tokenizer& tok = *(*model)->tokenizer;
  std::vector<std::vector<int32_t>> labels;
  for (const std::string& name : kNames) labels.push_back(*tok.Encode(" " + name, false));
  const std::vector<Task> tasks = MakeTasks();
  std::vector<std::vector<int32_t>> prompts;
  std::map<int, int> length_count;
  for (const Task& t : tasks) {
    prompts.push_back(*tok.Encode(t.prompt, true));
    ++length_count[int(prompts.back().size())];
  }
  int min_len = 1 << 30, max_len = 0;
  for (const auto& p : prompts) {
    min_len = std::min(min_len, int(p.size()));
    max_len = std::max(max_len, int(p.size()));
  }
  std::printf(
      "\n== accuracy: %s, %zu prompts (%zu templates x %zu names x %zu objects), "
      "%d-%d tokens, %zu distinct lengths; Classify among %zu names ==\n",
      (*model)->name.c_str(), tasks.size(), kTemplates.size(), kNames.size(), kObjects.size(),
      min_len, max_len, length_count.size(), kNames.size());

  PrefillEngine plain((*model)->runner.get(), nullptr);
  std::vector<int> base_pred(tasks.size());
  int base_correct = 0;
  double base_seconds = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto a = Clock::now();
    auto r = plain.Score(prompts[i], labels, CacheMode::kOff);
    base_seconds += Seconds(a, Clock::now());
    if (!r.ok()) {
      std::printf("score: %s\n", r.status().ToString().c_str());
      return;
    }
    base_pred[i] = Argmax(*r);
    base_correct += base_pred[i] == tasks[i].gold;
  }
  const double base_acc = 100.0 * base_correct / tasks.size();
  std::printf("without cache: accuracy %.1f%% (%d / %zu)\n", base_acc, base_correct, tasks.size());

  // The request stream: every prompt `repeats` times, shuffled (deterministically).
  std::vector<int> stream;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    for (size_t i = 0; i < tasks.size(); ++i) stream.push_back(int(i));
  }
  std::mt19937_64 rng(42);
  std::shuffle(stream.begin(), stream.end(), rng);

  std::printf("%9s | %8s %8s %9s %9s %10s | %8s %11s %11s\n", "threshold", "hit rate", "accuracy",
              "delta pts", "agree", "hit acc", "entries", "same-tmpl", "near-dup");
  std::shared_ptr<const Projector> projector;
  if (!projector_path.empty()) {
    auto mlp = SiameseMlp::Load(projector_path);
    if (!mlp.ok()) {
      std::printf("projector: %s\n", mlp.status().ToString().c_str());
      return;
    }
    projector = *std::move(mlp);
  }
  std::printf("lookup feature: %s\n", projector ? ("Siamese MLP " + projector_path).c_str()
                                                : "training-free random projection");
  for (absl::string_view ts : absl::StrSplit(thresholds, ',')) {
    const double threshold = std::stod(std::string(ts));
    const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_work_dir), "/acc_", ts);
    std::filesystem::remove_all(dir);
    AttnCacheOptions o;
    o.dir = dir;
    o.threshold = threshold;
    o.allow_longer_entries = absl::GetFlag(FLAGS_allow_longer);
    auto cache = AttnCache::Open(o, (*model)->runner->weights(0), nullptr, nullptr);
    if (!cache.ok()) {
      std::printf("cache: %s\n", cache.status().ToString().c_str());
      return;
    }
    if (projector) {
      if (absl::Status s = (*cache)->SetProjector(projector); !s.ok()) {
        std::printf("projector: %s\n", s.ToString().c_str());
        return;
      }
    }
    PrefillEngine engine((*model)->runner.get(), cache->get());
    int lookups = 0, hits = 0, correct = 0, agree = 0, hit_correct = 0, hit_items = 0;
    for (int i : stream) {
      auto r = engine.Score(prompts[i], labels, CacheMode::kLookupAndInsert);
      if (!r.ok()) {
        std::printf("score: %s\n", r.status().ToString().c_str());
        return;
      }
      bool item_hit = true;
      for (const CacheOutcome& oc : r->sequences) {
        ++lookups;
        hits += oc.hit;
        item_hit = item_hit && oc.hit;
      }
      const int pred = Argmax(*r);
      correct += pred == tasks[i].gold;
      agree += pred == base_pred[i];
      if (item_hit) {
        ++hit_items;
        hit_correct += pred == tasks[i].gold;
      }
    }
    const double acc = 100.0 * correct / stream.size();
    const double base_stream_acc = [&] {
      int c = 0;
      for (int i : stream) c += base_pred[i] == tasks[i].gold;
      return 100.0 * c / stream.size();
    }();
    // Nearest-neighbour similarity between different prompts: same template (near-duplicates)
    // vs other templates, over the prompts' features (what the threshold is compared against).
    std::vector<std::vector<float>> feats;
    for (const auto& p : prompts) feats.push_back((*cache)->Feature(p));
    double same_sum = 0, other_max = -1;
    int same_n = 0;
    for (size_t a = 0; a < tasks.size(); ++a) {
      double best_same = -1;
      for (size_t b = 0; b < tasks.size(); ++b) {
        if (a == b) continue;
        const double s = FeatureSimilarity(feats[a], feats[b]);
        if (tasks[a].tmpl == tasks[b].tmpl) {
          best_same = std::max(best_same, s);
        } else {
          other_max = std::max(other_max, s);
        }
      }
      same_sum += best_same;
      ++same_n;
    }
    std::printf(
        "%9s | %7.1f%% %7.1f%% %+8.1f %8.1f%% %9s | %8lld %11.4f %11.4f\n", std::string(ts).c_str(),
        100.0 * hits / lookups, acc, acc - base_stream_acc, 100.0 * agree / stream.size(),
        hit_items ? absl::StrFormat("%.1f%%", 100.0 * hit_correct / hit_items).c_str() : "-",
        (long long)(*cache)->entries(), same_sum / same_n, other_max);
    json.push_back(absl::StrFormat(
        "{\"feature\":\"%s\",\"threshold\":%s,\"hit_rate\":%.4f,\"accuracy\":%.2f,\"accuracy_no_"
        "cache\":%.2f,"
        "\"agreement\":%.2f,\"entries\":%lld}",
        projector ? "mlp" : "random", std::string(ts), double(hits) / lookups, acc, base_stream_acc,
        100.0 * agree / stream.size(), (long long)(*cache)->entries()));
    std::filesystem::remove_all(dir);
  }
  std::printf(
      "hit rate: lookups that reused maps (one per forwarded sequence: prompt + all but "
      "the last token of each name); accuracy over the %zu-request stream; agree: same "
      "answer as without the cache; same-tmpl: mean similarity of each prompt's nearest "
      "same-template neighbour; near-dup column: highest cross-template similarity.\n",
      stream.size());
}

// ---------------------------------------------------------------------------------------------
// Training corpus for the Siamese MLP: TinyStories-like sentences (none from the task templates).
const std::vector<std::string> kSentences = {
    "Once upon a time, there was a {A} named {N}.",
    "{N} lived in a small house near the {P}.",
    "Every morning, {N} went to the {P} to play.",
    "{N} had a {O} that was very old.",
    "One day, {N} met a big {A}.",
    "The {A} was hungry and sad.",
    "{N} gave the {A} some food.",
    "They became best friends.",
    "The sun was shining and the birds were singing.",
    "{N} found a shiny {O} in the grass.",
    "Mom said, \"Be careful, {N}!\"",
    "{N} ran fast to the {P}.",
    "It started to rain, so they went inside.",
    "The {A} liked to jump and run.",
    "{N} was scared of the dark.",
    "Dad gave {N} a warm hug.",
    "They played with the {O} all day long.",
    "At night, {N} looked at the stars.",
    "The {O} fell into the water.",
    "{N} cried, but then she smiled.",
    "A little {A} came to say hello.",
    "Everyone was happy in the {P}.",
    "{N} wanted to share the {O} with a friend.",
    "The friend said thank you.",
    "They ate cake and drank milk.",
    "The {A} went back to its home.",
    "{N} learned to be kind.",
    "The end of the day came.",
};
const std::vector<std::string> kCorpusNames = {"Lily", "Tim", "Ben", "Sue", "Max",
                                               "Anna", "Tom", "Mia", "Sam", "Jack"};
const std::vector<std::string> kCorpusObjects = {"ball", "hat", "toy", "cup", "box", "kite"};
const std::vector<std::string> kPlaces = {"park", "forest", "garden", "beach", "river"};
const std::vector<std::string> kAnimals = {"cat", "dog", "bird", "bunny", "frog", "fox"};

struct Fill {
  std::string n, o, p, a;
};

std::string Compose(const std::vector<int>& sentences, const Fill& f) {
  std::string out;
  for (int s : sentences) {
    if (!out.empty()) out += " ";
    out += absl::StrReplaceAll(kSentences[s],
                               {{"{N}", f.n}, {"{O}", f.o}, {"{P}", f.p}, {"{A}", f.a}});
  }
  return out;
}

double Spearman(const std::vector<double>& x, const std::vector<double>& y) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<int> idx(v.size());
    for (size_t i = 0; i < v.size(); ++i) idx[i] = int(i);
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
      size_t j = i;
      while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j);
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> rx = ranks(x), ry = ranks(y);
  double mx = 0, my = 0;
  for (size_t i = 0; i < rx.size(); ++i) mx += rx[i], my += ry[i];
  mx /= rx.size(), my /= ry.size();
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < rx.size(); ++i) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - my) * (ry[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= x.size(), my /= y.size();
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

void MlpBench() {
  ModelLoadOptions load;
  load.model_dir = absl::GetFlag(FLAGS_model_dir);
  load.kv_cache_bytes = int64_t{64} << 20;
  load.device = absl::GetFlag(FLAGS_device);
  if (!std::filesystem::exists(load.model_dir)) {
    std::printf("\nmlp: %s not found, skipped\n", load.model_dir.c_str());
    return;
  }
  auto model = LoadModel(load);
  if (!model.ok()) {
    std::printf("mlp: %s\n", model.status().ToString().c_str());
    return;
  }
  ModelRunner& runner = *(*model)->runner;
  const ModelConfig& c = runner.config();
  const Tokenizer& tok = *(*model)->tokenizer;
  FeatureExtractor random_features(runner.weights(0), FeatureConfig());

  // Examples: token ids, pooled feature, maps; `group` ties the variants of one base prompt.
  struct Example {
    std::vector<int32_t> tokens;
    std::vector<float> pooled;
    std::unique_ptr<AttentionCapture> maps;
    int group = 0;
    bool task = false;  // from the accuracy task set (held out)
    int tmpl = -1;
  };
  std::vector<Example> ex;
  auto add = [&](const std::string& text, int group, bool task, int tmpl) {
    Example e;
    e.tokens = *tok.Encode(text, true);
    e.pooled = random_features.Pooled(e.tokens);
    e.maps = std::make_unique<AttentionCapture>(c.num_layers, c.num_heads, int(e.tokens.size()));
    SequenceKv kv(c.num_layers);
    (void)ReserveTokens(runner.block_manager(), &kv, int(e.tokens.size()));
    ForwardItem item;
    item.kv = &kv;
    item.tokens = e.tokens;
    item.attention_reuse = e.maps.get();
    std::vector<float> logits;
    absl::Status s = runner.Forward({&item, 1}, &logits);
    ReleaseSequence(runner.block_manager(), &kv);
    if (!s.ok()) std::printf("forward: %s\n", s.ToString().c_str());
    e.group = group;
    e.task = task;
    e.tmpl = tmpl;
    ex.push_back(std::move(e));
  };
  std::mt19937_64 rng(7);
  auto pick = [&rng](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  auto random_fill = [&] {
    return Fill{pick(kCorpusNames), pick(kCorpusObjects), pick(kPlaces), pick(kAnimals)};
  };
  const int groups = 160;
  for (int g = 0; g < groups; ++g) {
    std::vector<int> sentences;
    const int k = 4 + int(rng() % 7);
    for (int i = 0; i < k; ++i) sentences.push_back(int(rng() % kSentences.size()));
    const Fill base = random_fill();
    add(Compose(sentences, base), g, false, -1);
    Fill other = base;  // one slot changed
    switch (rng() % 4) {
      case 0:
        other.n = pick(kCorpusNames);
        break;
      case 1:
        other.o = pick(kCorpusObjects);
        break;
      case 2:
        other.p = pick(kPlaces);
        break;
      default:
        other.a = pick(kAnimals);
    }
    add(Compose(sentences, other), g, false, -1);
    add(Compose(sentences, random_fill()), g, false, -1);  // all slots redrawn
    std::vector<int> edited = sentences;                   // one sentence replaced
    edited[rng() % edited.size()] = int(rng() % kSentences.size());
    add(Compose(edited, base), g, false, -1);
    std::vector<int> swapped = sentences;  // two sentences swapped
    std::swap(swapped[rng() % swapped.size()], swapped[rng() % swapped.size()]);
    add(Compose(swapped, base), g, false, -1);
  }
  const size_t corpus = ex.size();
  for (const Task& t : MakeTasks()) add(t.prompt, -1, true, t.tmpl);

  // Pairs: within a group (near-duplicates) and across groups (unrelated); held out: the last
  // 20% of the groups, and the task set (same-template pairs and cross-template pairs).
  const double lambda = absl::GetFlag(FLAGS_length_penalty);
  auto target = [&](int a, int b) {
    return MapsDistanceTarget(ex[a].maps->view(), ex[b].maps->view(), lambda);
  };
  std::vector<SiamesePair> train, validation, test_corpus, test_task;
  const int train_groups = groups * 4 / 5;
  const int fit_groups = groups * 7 / 10;  // groups [fit, train): validation (early stopping)
  for (size_t i = 0; i < corpus; ++i) {
    for (size_t j = i + 1; j < corpus; ++j) {
      const bool same = ex[i].group == ex[j].group;
      const bool held = ex[i].group >= train_groups || ex[j].group >= train_groups;
      const bool both_held = ex[i].group >= train_groups && ex[j].group >= train_groups;
      if (!same && rng() % 40 != 0) continue;  // ~1 in 40 unrelated pairs
      if (!held) {
        const bool val = ex[i].group >= fit_groups || ex[j].group >= fit_groups;
        const bool both_val = ex[i].group >= fit_groups && ex[j].group >= fit_groups;
        if (!val) {
          train.push_back({int(i), int(j), target(int(i), int(j))});
        } else if (both_val) {
          validation.push_back({int(i), int(j), target(int(i), int(j))});
        }
      } else if (both_held) {
        test_corpus.push_back({int(i), int(j), target(int(i), int(j))});
      }
    }
  }
  for (size_t i = corpus; i < ex.size(); ++i) {
    for (size_t j = i + 1; j < ex.size(); ++j) {
      if (ex[i].tmpl != ex[j].tmpl && rng() % 8 != 0) continue;
      if (ex[i].tmpl == ex[j].tmpl && rng() % 4 != 0) continue;
      test_task.push_back({int(i), int(j), target(int(i), int(j))});
    }
  }
  std::printf(
      "\n== mlp: Siamese MLP vs random projection on %s: %zu corpus prompts, %zu train "
      "pairs, %zu held-out corpus pairs, %zu task-set pairs (templates unseen in "
      "training); target = TV + %.2f * |dL| / max L ==\n",
      (*model)->name.c_str(), corpus, train.size(), test_corpus.size(), test_task.size(), lambda);

  std::vector<std::vector<float>> pooled;
  std::vector<int> lengths;
  for (const Example& e : ex) {
    pooled.push_back(e.pooled);
    lengths.push_back(int(e.tokens.size()));
  }
  SiameseShape shape;
  shape.input_dim = random_features.pooled_dim();
  shape.dim = FeatureConfig().dim;
  shape.feature_length = FeatureConfig().length;
  auto mlp = std::make_shared<SiameseMlp>(shape);
  SiameseTrainOptions to;
  to.epochs = absl::GetFlag(FLAGS_mlp_epochs);
  to.validation = &validation;
  const auto t0 = Clock::now();
  const std::vector<double> curve = mlp->Train(pooled, lengths, train, to);
  const double train_s = Seconds(t0, Clock::now());
  const size_t best_epoch = std::min_element(curve.begin(), curve.end()) - curve.begin();
  std::printf(
      "training: %zu epochs in %.1f s (%zu validation pairs), validation MSE %.5f -> "
      "best %.5f at epoch %zu\n",
      curve.size(), train_s, validation.size(), curve.front(), curve[best_epoch], best_epoch + 1);

  FeatureExtractor mlp_features(runner.weights(0), FeatureConfig());
  mlp_features.SetProjector(mlp);
  std::printf("%-22s | %-13s | %8s %8s %9s | %14s\n", "pairs", "feature", "spearman", "pearson",
              "MAE", "target range");
  auto evaluate = [&](const char* name, const std::vector<SiamesePair>& pairs) {
    std::vector<double> truth, d_rand, d_mlp;
    for (const SiamesePair& p : pairs) {
      truth.push_back(p.target);
      d_rand.push_back(FeatureDistance(random_features.Finish(pooled[p.a], lengths[p.a]),
                                       random_features.Finish(pooled[p.b], lengths[p.b])));
      d_mlp.push_back(FeatureDistance(mlp_features.Finish(pooled[p.a], lengths[p.a]),
                                      mlp_features.Finish(pooled[p.b], lengths[p.b])));
    }
    double mae = 0, lo = 1e9, hi = 0;
    for (size_t i = 0; i < truth.size(); ++i) {
      mae += std::abs(d_mlp[i] - truth[i]);
      lo = std::min(lo, truth[i]);
      hi = std::max(hi, truth[i]);
    }
    mae /= truth.size();
    const double sr = Spearman(d_rand, truth), pr = Pearson(d_rand, truth);
    const double sm = Spearman(d_mlp, truth), pm = Pearson(d_mlp, truth);
    std::printf("%-22s | %-13s | %8.3f %8.3f %9s | %6.3f - %5.3f\n", name, "random proj.", sr, pr,
                "-", lo, hi);
    std::printf("%-22s | %-13s | %8.3f %8.3f %9.4f |\n", "", "Siamese MLP", sm, pm, mae);
    json.push_back(absl::StrFormat(
        "{\"pairs\":\"%s\",\"n\":%zu,\"spearman_random\":%.4f,\"pearson_random\":%.4f,"
        "\"spearman_mlp\":%.4f,\"pearson_mlp\":%.4f,\"mae_mlp\":%.4f}",
        name, pairs.size(), sr, pr, sm, pm, mae));
  };
  evaluate("train", train);
  evaluate("held-out corpus", test_corpus);
  evaluate("task set (unseen)", test_task);

  const std::string path = absl::GetFlag(FLAGS_work_dir) + "/siamese_mlp.bin";
  if (absl::GetFlag(FLAGS_mlp_thresholds).empty()) return;
  std::filesystem::create_directories(absl::GetFlag(FLAGS_work_dir));
  if (absl::Status s = mlp->Save(path); !s.ok()) {
    std::printf("save: %s\n", s.ToString().c_str());
    return;
  }
  std::printf("saved %s\n", path.c_str());
  AccuracyBench(absl::GetFlag(FLAGS_mlp_thresholds), path);
}

}  // namespace
}  // namespace claa::attncache

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_blas_threads) > 0)
    openblas_set_num_threads(absl::GetFlag(FLAGS_blas_threads));
  std::printf("BLAS: %s | %d threads\n", openblas_get_config(), openblas_get_num_threads());
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode.find("speed") != std::string::npos) claa::attncache::SpeedBench();
  if (mode.find("accuracy") != std::string::npos) {
    claa::attncache::AccuracyBench(absl::GetFlag(FLAGS_thresholds), absl::GetFlag(FLAGS_projector));
  }
  if (mode.find("mlp") != std::string::npos) claa::attncache::MlpBench();
  std::printf("JSON {\"attn_cache\":[%s]}\n", absl::StrJoin(claa::attncache::json, ",").c_str());
  return 0;
}
