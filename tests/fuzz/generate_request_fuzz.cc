// Fuzzes request validation: a serialized claa.v1.GenerateRequest goes through what the server
// does before scheduling it (PrepareRequest over two server defaults), what a router forwards
// to its workers (ToWorkerRequest, re-prepared with a decode worker's defaults: it must reach the
// same decision), the scheduler's own check (ValidateGenerationRequest) and, when that passes,
// a GenerationSequence -- sampler, stop conditions, stop strings, streaming detokenization --
// driven by pseudo-random logits instead of a model.
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "claa/v1/claa.pb.h"
#include "engine/generate/loaded_model.h"
#include "engine/generate/sequence.h"
#include "google/protobuf/stubs/logging.h"
#include "server/request_convert.h"
#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {
namespace {

// The built-in model as the server loads it (config, tokenizer, context length), no weights.
const LoadedModel& Model() {
  static const LoadedModel* const model = [] {
    // Protobuf logs every string field with invalid UTF-8 it refuses to parse; that is expected
    // here and would only flood the fuzzer's output.
    google::protobuf::SetLogHandler(nullptr);
    ModelLoadOptions options;
    options.load_weights = false;
    return LoadModel(options)->release();
  }();
  return *model;
}

bool SamePruning(const PruningConfig& a, const PruningConfig& b) {
  return a.method == b.method && a.keep_ratio == b.keep_ratio &&
         a.pruning_layer == b.pruning_layer && a.window == b.window &&
         a.aggregation_layers == b.aggregation_layers && a.min_layer == b.min_layer &&
         a.pooling_kernel == b.pooling_kernel;
}

bool SameSampling(const SamplingParams& a, const SamplingParams& b) {
  // Bitwise, so that NaN (which validation refuses later) compares equal to itself.
  return std::memcmp(&a.temperature, &b.temperature, sizeof(float)) == 0 &&
         std::memcmp(&a.top_p, &b.top_p, sizeof(float)) == 0 && a.top_k == b.top_k &&
         a.seed == b.seed;
}

// Generates from a validated request with logits drawn from `rng`, checking that the streamed
// text is exactly what the tokens decode to, cut before the stop string that ended it.
int RunSequence(const LoadedModel& model, const GenerationRequest& request, uint64_t seed) {
  GenerationSequence seq(request, model.tokenizer.get(), model.eos_token_ids,
                         model.max_context_length, model.config.num_layers, /*default_seed=*/1);
  std::mt19937_64 rng(seed);
  std::vector<float> logits(static_cast<size_t>(model.config.vocab_size));
  std::string emitted;
  std::string stop_reason;
  FinishReason finish = FinishReason::kNone;
  for (int step = 0; step < 48 && !seq.finished(); ++step) {
    seq.MarkFed();
    for (float& l : logits) l = static_cast<float>(static_cast<int64_t>(rng() % 2001) - 1000) / 100;
    absl::StatusOr<TokenOutput> out = seq.OnLogits(logits);
    CLAA_FUZZ_CHECK(out.ok(), out.status().ToString());
    CLAA_FUZZ_CHECK(out->token >= 0 && out->token < model.config.vocab_size, out->token);
    emitted += out->text;
    finish = out->finish;
    stop_reason = out->stop_reason;
  }
  if (!seq.finished()) emitted += seq.Finish(FinishReason::kAbort);
  CLAA_FUZZ_CHECK(static_cast<int>(seq.generated().size()) <= request.max_tokens,
                  seq.generated().size(), " tokens > max_tokens ", request.max_tokens);

  auto full = model.tokenizer->Decode(seq.generated(), request.skip_special_tokens);
  CLAA_FUZZ_CHECK(full.ok(), full.status().ToString());
  CLAA_FUZZ_CHECK(full->compare(0, emitted.size(), emitted) == 0, "streamed \"", Escape(emitted),
                  "\" is not a prefix of the decoded \"", Escape(*full), "\"");
  if (emitted.size() != full->size()) {
    // Only a stop string cuts the text, and the cut is right before it.
    CLAA_FUZZ_CHECK(finish == FinishReason::kStop, "text cut without a stop");
    bool is_stop_string = false;
    for (const std::string& s : request.stop_strings) is_stop_string |= s == stop_reason;
    CLAA_FUZZ_CHECK(is_stop_string, "cut by \"", Escape(stop_reason), "\", not a stop string");
    CLAA_FUZZ_CHECK(full->compare(emitted.size(), stop_reason.size(), stop_reason) == 0,
                    "the text after the cut does not start with the stop string");
  }
  // The first stop string to complete wins, so none lies wholly inside the emitted text.
  for (const std::string& s : request.stop_strings) {
    CLAA_FUZZ_CHECK(s.empty() || emitted.find(s) == std::string::npos, "stop string \"",
                    Escape(s), "\" was streamed in \"", Escape(emitted), "\"");
  }
  return 0;
}

}  // namespace

int FuzzGenerateRequest(const uint8_t* data, size_t size) {
  const LoadedModel& model = Model();
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const int layers = model.config.num_layers;
  const int context = model.max_context_length;

  for (PruningMethod server_method : {PruningMethod::kFull, PruningMethod::kClaa}) {
    const PruningConfig server_default = DefaultPruningConfig(server_method, layers, 0.2);
    absl::StatusOr<GenerationRequest> prepared = PrepareRequest(
        request, *model.tokenizer, model.config, context, server_default, "fuzz-generated");
    if (!prepared.ok()) {
      CLAA_FUZZ_CHECK(prepared.status().code() == absl::StatusCode::kInvalidArgument,
                      prepared.status().ToString());
      CLAA_FUZZ_CHECK(!prepared.status().message().empty(), "an error without a message");
      continue;
    }
    CLAA_FUZZ_CHECK(!prepared->prompt_ids.empty(), "empty prompt accepted");
    CLAA_FUZZ_CHECK(!prepared->request_id.empty(), "empty request id");
    CLAA_FUZZ_CHECK(prepared->max_tokens >= 1, prepared->max_tokens);
    const absl::Status pruning_ok = ValidatePruningConfig(prepared->pruning, layers);
    CLAA_FUZZ_CHECK(pruning_ok.ok(), pruning_ok.ToString());

    // The router forwards ToWorkerRequest(...); the decode worker prepares it again with its
    // own (full) default and must arrive at exactly the router's request.
    const v1::GenerateRequest forwarded = ToWorkerRequest(request, *prepared);
    absl::StatusOr<GenerationRequest> again = PrepareRequest(
        forwarded, *model.tokenizer, model.config, context, PruningConfig(), "decode");
    CLAA_FUZZ_CHECK(again.ok(), "the router accepted what a worker refuses: ",
                    again.status().ToString());
    CLAA_FUZZ_CHECK(again->request_id == prepared->request_id, again->request_id);
    CLAA_FUZZ_CHECK(again->prompt_ids == prepared->prompt_ids, "prompt ids changed");
    CLAA_FUZZ_CHECK(again->max_tokens == prepared->max_tokens, again->max_tokens, " vs ",
                    prepared->max_tokens);
    CLAA_FUZZ_CHECK(SamePruning(again->pruning, prepared->pruning), "pruning changed: ",
                    again->pruning.DebugString(), " vs ", prepared->pruning.DebugString());
    CLAA_FUZZ_CHECK(SameSampling(again->sampling, prepared->sampling), "sampling changed");
    CLAA_FUZZ_CHECK(again->stop_strings == prepared->stop_strings, "stop strings changed");
    CLAA_FUZZ_CHECK(again->stop_token_ids == prepared->stop_token_ids, "stop ids changed");
    CLAA_FUZZ_CHECK(again->ignore_eos == prepared->ignore_eos, "ignore_eos changed");
    CLAA_FUZZ_CHECK(again->skip_special_tokens == prepared->skip_special_tokens,
                    "skip_special_tokens changed");

    const absl::Status valid = ValidateGenerationRequest(*prepared, model.config.vocab_size,
                                                         context, layers);
    if (!valid.ok()) {
      CLAA_FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
      continue;
    }
    // Seeded by the input so that a saved crash replays identically.
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 0x100000001B3ull;
    if (RunSequence(model, *prepared, seed) != 0) return 0;
  }
  return 0;
}

}  // namespace claa::fuzz
