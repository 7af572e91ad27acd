#include "server/prefill_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/attncache/siamese_mlp.h"
#include "server/raw_request.h"

namespace claa {
namespace {

using attncache::CacheMode;
using attncache::CacheOutcome;

constexpr size_t kMaxTextBytes = 4 << 20;
// Continuations / labels per request: each may need its own forward pass.
constexpr int kMaxCandidates = 1024;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::Status Invalid(const std::string& field, const std::string& what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat(field, ": ", what));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

grpc::Status CheckIds(const v1::TokenIds& ids, const std::string& field, int vocab,
                      std::vector<int32_t>* out) {
  if (ids.ids().empty()) return Invalid(field, "must not be empty");
  for (int i = 0; i < ids.ids_size(); ++i) {
    if (ids.ids(i) < 0 || ids.ids(i) >= vocab) {
      return Invalid(absl::StrCat(field, "[", i, "]"),
                     absl::StrCat("token id ", ids.ids(i), " is out of range [0, ", vocab, ")"));
    }
  }
  out->assign(ids.ids().begin(), ids.ids().end());
  return grpc::Status::OK;
}

grpc::Status EncodeText(const Tokenizer& tokenizer, const std::string& text, bool add_special,
                        const std::string& field, std::vector<int32_t>* out) {
  if (text.empty()) return Invalid(field, "must not be empty");
  if (text.size() > kMaxTextBytes) {
    return Invalid(field,
                   absl::StrCat(text.size(), " bytes exceed the ", kMaxTextBytes, "-byte limit"));
  }
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_special);
  if (!ids.ok()) return Invalid(field, std::string(ids.status().message()));
  if (ids->empty()) return Invalid(field, "tokenizes to no tokens");
  *out = *std::move(ids);
  return grpc::Status::OK;
}

// The prompt oneof of any of the three requests.
template <typename Request>
grpc::Status ConvertPrompt(const Request& r, const Tokenizer& tokenizer, int vocab,
                           std::vector<int32_t>* out) {
  switch (r.prompt_case()) {
    case Request::kText:
      return EncodeText(tokenizer, r.text(), !r.has_add_special_tokens() || r.add_special_tokens(),
                        "prompt.text", out);
    case Request::kTokenIds:
      return CheckIds(r.token_ids(), "prompt.token_ids", vocab, out);
    default:
      return Invalid("prompt", "set either text or token_ids");
  }
}

grpc::Status ConvertMode(int value, CacheMode* mode) {
  switch (value) {
    case v1::ATTN_CACHE_OFF:
      *mode = CacheMode::kOff;
      return grpc::Status::OK;
    case v1::ATTN_CACHE_LOOKUP:
      *mode = CacheMode::kLookup;
      return grpc::Status::OK;
    case v1::ATTN_CACHE_LOOKUP_AND_INSERT:
      *mode = CacheMode::kLookupAndInsert;
      return grpc::Status::OK;
  }
  return Invalid("attn_cache", absl::StrCat("unknown mode ", value));
}

// prompt + the longest candidate minus one token must fit one prefill.
grpc::Status CheckLength(size_t prompt, size_t longest, int limit) {
  if (prompt + longest - 1 > size_t(limit)) {
    return Invalid("prompt", absl::StrCat(prompt, " prompt tokens + ", longest - 1,
                                          " continuation tokens exceed the ", limit,
                                          "-token limit of a prefill"));
  }
  return grpc::Status::OK;
}

// Scores the candidates (Score's continuations, Classify's labels) after the prompt in one
// prefill, once prompt + the longest of them fits.
grpc::Status ScoreCandidates(attncache::PrefillEngine& engine, const std::vector<int32_t>& prompt,
                             const std::vector<std::vector<int32_t>>& candidates, CacheMode mode,
                             attncache::ScoreResult* result) {
  size_t longest = 0;
  for (const auto& c : candidates) longest = std::max(longest, c.size());
  if (grpc::Status s = CheckLength(prompt.size(), longest, engine.max_sequence_tokens());
      !s.ok()) {
    return s;
  }
  absl::StatusOr<attncache::ScoreResult> scored = engine.Score(prompt, candidates, mode);
  if (!scored.ok()) return ToGrpc(scored.status());
  *result = *std::move(scored);
  return grpc::Status::OK;
}

std::string OutcomeLabel(const v1::AttnCacheResult& r) {
  switch (r.outcome()) {
    case v1::AttnCacheResult::HIT:
      return "hit";
    case v1::AttnCacheResult::MISS:
      return "miss";
    case v1::AttnCacheResult::PARTIAL:
      return "partial";
    default:
      return "off";
  }
}

void FillCache(const std::vector<const CacheOutcome*>& outcomes, v1::AttnCacheResult* out) {
  uint32_t lookups = 0, hits = 0, inserted = 0;
  double similarity = std::numeric_limits<double>::infinity();
  for (const CacheOutcome* o : outcomes) {
    if (!o->consulted) continue;
    ++lookups;
    hits += o->hit ? 1 : 0;
    inserted += o->inserted ? 1 : 0;
    similarity = std::min(similarity, o->similarity);
  }
  out->set_lookups(lookups);
  out->set_hits(hits);
  out->set_inserted(inserted);
  out->set_similarity(lookups > 0 ? similarity : 0.0);
  if (lookups == 0) {
    out->set_outcome(v1::AttnCacheResult::DISABLED);
  } else if (hits == lookups) {
    out->set_outcome(v1::AttnCacheResult::HIT);
  } else if (hits == 0) {
    out->set_outcome(v1::AttnCacheResult::MISS);
  } else {
    out->set_outcome(v1::AttnCacheResult::PARTIAL);
  }
}

std::vector<const CacheOutcome*> Sequences(const attncache::ScoreResult& r) {
  std::vector<const CacheOutcome*> out;
  for (const CacheOutcome& o : r.sequences) out.push_back(&o);
  return out;
}

}  // namespace

PrefillService::PrefillService(const Tokenizer* tokenizer, attncache::PrefillEngine* engine,
                               AttnCacheMetrics* metrics)
    : tokenizer_(tokenizer), engine_(engine), metrics_(metrics) {
  // Each RPC parses its own request, so that invalid UTF-8 (a text, label or continuation) gets
  // INVALID_ARGUMENT naming the field (raw_request.h explains why).
  const std::string name = v1::Prefill::service_full_name();
  MarkMethodStreamed(MethodIndex(name, "Score"),
                     ParsingUnaryHandler<v1::ScoreRequest, v1::ScoreResponse>(
                         [this](grpc::ServerContext* c, const v1::ScoreRequest* r,
                                v1::ScoreResponse* out) { return Score(c, r, out); }));
  MarkMethodStreamed(MethodIndex(name, "Classify"),
                     ParsingUnaryHandler<v1::ClassifyRequest, v1::ClassifyResponse>(
                         [this](grpc::ServerContext* c, const v1::ClassifyRequest* r,
                                v1::ClassifyResponse* out) { return Classify(c, r, out); }));
  MarkMethodStreamed(MethodIndex(name, "Embed"),
                     ParsingUnaryHandler<v1::EmbedRequest, v1::EmbedResponse>(
                         [this](grpc::ServerContext* c, const v1::EmbedRequest* r,
                                v1::EmbedResponse* out) { return Embed(c, r, out); }));
}

grpc::Status PrefillService::Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                                   v1::ScoreResponse* response) {
  const auto start = std::chrono::steady_clock::now();
  const int vocab = engine_->config().vocab_size;
  std::vector<int32_t> prompt;
  if (grpc::Status s = ConvertPrompt(*request, *tokenizer_, vocab, &prompt); !s.ok()) return s;
  CacheMode mode;
  if (grpc::Status s = ConvertMode(request->attn_cache(), &mode); !s.ok()) return s;
  if (request->continuations().empty()) {
    return Invalid("continuations", "at least one is required");
  }
  if (request->continuations_size() > kMaxCandidates) {
    return Invalid("continuations", absl::StrCat("at most ", kMaxCandidates, " per request"));
  }
  std::vector<std::vector<int32_t>> conts(request->continuations_size());
  for (int i = 0; i < request->continuations_size(); ++i) {
    const v1::Continuation& c = request->continuations(i);
    const std::string field = absl::StrCat("continuations[", i, "]");
    grpc::Status s;
    switch (c.value_case()) {
      case v1::Continuation::kText:
        s = EncodeText(*tokenizer_, c.text(), false, field + ".text", &conts[i]);
        break;
      case v1::Continuation::kTokenIds:
        s = CheckIds(c.token_ids(), field + ".token_ids", vocab, &conts[i]);
        break;
      default:
        s = Invalid(field, "set either text or token_ids");
    }
    if (!s.ok()) return s;
  }
  attncache::ScoreResult result;
  if (grpc::Status s = ScoreCandidates(*engine_, prompt, conts, mode, &result); !s.ok()) return s;
  for (size_t i = 0; i < conts.size(); ++i) {
    const attncache::ContinuationScore& cs = result.continuations[i];
    v1::ContinuationScore* out = response->add_scores();
    out->set_logprob(cs.logprob);
    out->mutable_token_logprobs()->Add(cs.token_logprobs.begin(), cs.token_logprobs.end());
    out->mutable_token_ids()->Add(conts[i].begin(), conts[i].end());
    FillCache({&cs.cache}, out->mutable_attn_cache());
  }
  response->set_prompt_tokens(uint32_t(prompt.size()));
  FillCache(Sequences(result), response->mutable_attn_cache());
  response->set_seconds(SecondsSince(start));
  if (metrics_)
    metrics_->OnRequest("score", OutcomeLabel(response->attn_cache()), response->seconds());
  return grpc::Status::OK;
}

grpc::Status PrefillService::Classify(grpc::ServerContext* context,
                                      const v1::ClassifyRequest* request,
                                      v1::ClassifyResponse* response) {
  const auto start = std::chrono::steady_clock::now();
  const int vocab = engine_->config().vocab_size;
  std::vector<int32_t> prompt;
  if (grpc::Status s = ConvertPrompt(*request, *tokenizer_, vocab, &prompt); !s.ok()) return s;
  CacheMode mode;
  if (grpc::Status s = ConvertMode(request->attn_cache(), &mode); !s.ok()) return s;
  const bool by_text = !request->labels().empty();
  const bool by_ids = !request->label_token_ids().empty();
  if (by_text == by_ids) {
    return Invalid("labels", by_text ? "give labels or label_token_ids, not both"
                                     : "give labels (texts) or label_token_ids");
  }
  const int count = by_text ? request->labels_size() : request->label_token_ids_size();
  const std::string list = by_text ? "labels" : "label_token_ids";
  if (count < 2) return Invalid(list, "at least two labels are required");
  if (count > kMaxCandidates) {
    return Invalid(list, absl::StrCat("at most ", kMaxCandidates, " per request"));
  }
  if (request->normalization() != v1::ClassifyRequest::SUM &&
      request->normalization() != v1::ClassifyRequest::MEAN) {
    return Invalid("normalization", absl::StrCat("unknown value ", request->normalization()));
  }
  std::vector<std::vector<int32_t>> conts(count);
  std::vector<std::string> names(count);
  for (int i = 0; i < count; ++i) {
    const std::string field = absl::StrCat(list, "[", i, "]");
    grpc::Status s;
    if (by_text) {
      names[i] = request->labels(i);
      s = EncodeText(*tokenizer_, request->labels(i), false, field, &conts[i]);
    } else {
      s = CheckIds(request->label_token_ids(i), field, vocab, &conts[i]);
      names[i] = absl::StrJoin(conts[i], " ");
    }
    if (!s.ok()) return s;
  }
  attncache::ScoreResult result;
  if (grpc::Status s = ScoreCandidates(*engine_, prompt, conts, mode, &result); !s.ok()) return s;

  std::vector<double> scores(count);
  for (int i = 0; i < count; ++i) {
    scores[i] = result.continuations[i].logprob;
    if (request->normalization() == v1::ClassifyRequest::MEAN) scores[i] /= double(conts[i].size());
  }
  const int best = int(std::max_element(scores.begin(), scores.end()) - scores.begin());
  double z = 0.0;
  for (double s : scores) z += std::exp(s - scores[best]);
  for (int i = 0; i < count; ++i) {
    v1::LabelScore* ls = response->add_scores();
    ls->set_label(names[i]);
    ls->set_logprob(scores[i]);
    ls->set_probability(std::exp(scores[i] - scores[best]) / z);
  }
  response->set_index(best);
  response->set_label(names[best]);
  response->set_prompt_tokens(uint32_t(prompt.size()));
  FillCache(Sequences(result), response->mutable_attn_cache());
  response->set_seconds(SecondsSince(start));
  if (metrics_) {
    metrics_->OnRequest("classify", OutcomeLabel(response->attn_cache()), response->seconds());
  }
  return grpc::Status::OK;
}

grpc::Status PrefillService::Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                                   v1::EmbedResponse* response) {
  const auto start = std::chrono::steady_clock::now();
  const int vocab = engine_->config().vocab_size;
  std::vector<int32_t> prompt;
  if (grpc::Status s = ConvertPrompt(*request, *tokenizer_, vocab, &prompt); !s.ok()) return s;
  CacheMode mode;
  if (grpc::Status s = ConvertMode(request->attn_cache(), &mode); !s.ok()) return s;
  attncache::Pooling pooling;
  switch (request->pooling()) {
    case v1::EmbedRequest::MEAN:
      pooling = attncache::Pooling::kMean;
      break;
    case v1::EmbedRequest::LAST:
      pooling = attncache::Pooling::kLast;
      break;
    default:
      return Invalid("pooling", absl::StrCat("unknown value ", request->pooling()));
  }
  if (grpc::Status s = CheckLength(prompt.size(), 1, engine_->max_sequence_tokens()); !s.ok()) {
    return s;
  }
  absl::StatusOr<attncache::EmbedResult> result =
      engine_->Embed(prompt, pooling, request->normalize(), mode);
  if (!result.ok()) return ToGrpc(result.status());
  response->mutable_embedding()->Add(result->embedding.begin(), result->embedding.end());
  response->set_prompt_tokens(uint32_t(prompt.size()));
  FillCache({&result->cache}, response->mutable_attn_cache());
  response->set_seconds(SecondsSince(start));
  if (metrics_)
    metrics_->OnRequest("embed", OutcomeLabel(response->attn_cache()), response->seconds());
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<PrefillServing>> PrefillServing::Create(
    const LoadedModel& model, const PrefillServingOptions& options,
    prometheus::Registry* registry) {
  auto serving = std::make_unique<PrefillServing>();
  const ModelRunner& served = *model.runner;
  RunnerOptions runner_options = RunnerOptions::FromMemoryBudget(
      model.config, served.tp_size(), size_t(options.kv_cache_bytes / served.tp_size()),
      served.block_size());
  if (runner_options.num_kv_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--prefill_kv_cache_mb: ", options.kv_cache_bytes >> 20,
                     " MiB do not hold one KV block of this model"));
  }
  if (served.on_gpu()) {
    if (model.gpu_library == nullptr) {
      return absl::InternalError("the served model runs on GPUs without a loaded GPU backend");
    }
    runner_options.gpu_backend = &model.gpu_library->backend();
    runner_options.gpu_device = served.gpu_device();
    runner_options.gpu_attention_map_bytes = size_t(options.gpu_map_bytes);
  }
  auto copy_shard = [&served](TpShard shard) -> absl::StatusOr<ModelWeights> {
    return served.weights(shard.rank);
  };
  absl::StatusOr<std::unique_ptr<ModelRunner>> runner =
      ModelRunner::Create(copy_shard, served.tp_size(), runner_options);
  if (!runner.ok()) return runner.status();
  serving->runner = *std::move(runner);
  if (registry != nullptr) {
    serving->metrics = std::make_unique<AttnCacheMetrics>(*registry, model.name);
  }
  if (!options.cache_dir.empty()) {
    attncache::AttnCacheOptions cache_options;
    cache_options.dir = options.cache_dir;
    cache_options.max_bytes = options.cache_max_bytes;
    cache_options.threshold = options.cache_threshold;
    absl::StatusOr<std::unique_ptr<attncache::AttnCache>> cache = attncache::AttnCache::Open(
        cache_options, serving->runner->weights(0), serving->metrics.get(), &serving->refused);
    if (!cache.ok()) return cache.status();
    serving->cache = *std::move(cache);
    if (!options.cache_projector.empty()) {
      absl::StatusOr<std::unique_ptr<attncache::SiameseMlp>> mlp =
          attncache::SiameseMlp::Load(options.cache_projector);
      if (!mlp.ok()) return mlp.status();
      if (absl::Status s = serving->cache->SetProjector(*std::move(mlp)); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--attn_cache_projector ", options.cache_projector, ": ", s.message()));
      }
    }
  }
  serving->engine =
      std::make_unique<attncache::PrefillEngine>(serving->runner.get(), serving->cache.get());
  serving->service = std::make_unique<PrefillService>(model.tokenizer.get(), serving->engine.get(),
                                                      serving->metrics.get());
  return serving;
}

}  // namespace claa
