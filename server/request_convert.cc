#include "server/request_convert.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace claa {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool IsPrintableAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<PruningConfig> ConvertPruningOptions(const v1::PruningOptions& p,
                                                    const PruningConfig& server_default,
                                                    int num_layers) {
  PruningOverrides o;
  switch (p.method()) {
    case v1::PruningOptions::METHOD_UNSPECIFIED: break;
    case v1::PruningOptions::FULL: o.method = PruningMethod::kFull; break;
    case v1::PruningOptions::CLAA: o.method = PruningMethod::kClaa; break;
    case v1::PruningOptions::FASTKV: o.method = PruningMethod::kFastKv; break;
    case v1::PruningOptions::GEMFILTER: o.method = PruningMethod::kGemFilter; break;
    default: return Invalid("pruning.method", absl::StrCat("unknown method ", p.method()));
  }
  if (p.has_keep_ratio()) {
    // The wire carries a float: 0.2f is 0.2000000030 and would keep ceil(40.0000006) = 41 of
    // 200 tokens. Ratios are meant to 6 digits, so round to those. NaN fails the range check.
    o.keep_ratio = std::round(double(p.keep_ratio()) * 1e6) / 1e6;
  }
  if (p.has_pruning_layer()) o.pruning_layer = p.pruning_layer();
  if (p.has_window()) o.window = p.window();
  if (p.has_aggregation_layers()) o.aggregation_layers = p.aggregation_layers();
  if (p.has_min_layer()) o.min_layer = p.min_layer();
  if (p.has_pooling_kernel()) o.pooling_kernel = p.pooling_kernel();
  return ResolvePruningConfig(server_default, o, num_layers);
}

absl::StatusOr<GenerationRequest> ConvertGenerateRequest(const v1::GenerateRequest& request,
                                                         const Tokenizer& tokenizer,
                                                         const std::string& generated_id) {
  GenerationRequest out;
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return Invalid("request_id", absl::StrCat("longer than ", kMaxRequestIdBytes, " bytes"));
  }
  if (!IsPrintableAscii(request.request_id())) {
    return Invalid("request_id", "must be printable ASCII");
  }
  out.request_id = request.request_id().empty() ? generated_id : request.request_id();

  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (request.text().size() > kMaxPromptTextBytes) {
        return Invalid("prompt.text", absl::StrCat(request.text().size(), " bytes exceed the ",
                                                   kMaxPromptTextBytes, "-byte limit"));
      }
      if (request.text().empty()) return Invalid("prompt.text", "must not be empty");
      const bool add_special = !request.has_add_special_tokens() || request.add_special_tokens();
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(request.text(), add_special);
      if (!ids.ok()) return Invalid("prompt.text", std::string(ids.status().message()));
      out.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      if (request.token_ids().ids().empty()) {
        return Invalid("prompt.token_ids", "must not be empty");
      }
      out.prompt_ids.assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      break;
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "set either text or token_ids");
  }

  const v1::SamplingParams& s = request.sampling();
  if (s.has_temperature()) out.sampling.temperature = s.temperature();
  if (s.has_top_p()) out.sampling.top_p = s.top_p();
  if (s.has_top_k()) out.sampling.top_k = s.top_k();
  if (s.has_seed()) out.sampling.seed = s.seed();
  if (s.has_max_tokens()) {
    if (s.max_tokens() == 0 || s.max_tokens() > (1u << 30)) {
      return Invalid("sampling.max_tokens",
                     absl::StrCat("must be >= 1 and fit the context, got ", s.max_tokens()));
    }
    out.max_tokens = static_cast<int>(s.max_tokens());
  } else {
    out.max_tokens = kDefaultMaxTokens;
  }
  out.stop_strings.assign(s.stop().begin(), s.stop().end());
  out.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  out.ignore_eos = s.ignore_eos();
  out.skip_special_tokens = !request.has_skip_special_tokens() || request.skip_special_tokens();
  return out;
}

absl::StatusOr<GenerationRequest> PrepareRequest(const v1::GenerateRequest& request,
                                                 const Tokenizer& tokenizer,
                                                 const ModelConfig& config,
                                                 int max_context_length,
                                                 const PruningConfig& server_default,
                                                 const std::string& generated_id) {
  CLAA_ASSIGN_OR_RETURN(GenerationRequest out,
                        ConvertGenerateRequest(request, tokenizer, generated_id));
  CLAA_ASSIGN_OR_RETURN(out.pruning, ConvertPruningOptions(request.pruning(), server_default,
                                                           config.num_layers));
  if (!request.sampling().has_max_tokens()) {
    const int room = max_context_length - static_cast<int>(out.prompt_ids.size());
    out.max_tokens = std::max(1, std::min(kDefaultMaxTokens, room));
  }
  return out;
}

v1::GenerateRequest ToWorkerRequest(const v1::GenerateRequest& original,
                                    const GenerationRequest& prepared) {
  v1::GenerateRequest out = original;
  out.set_request_id(prepared.request_id);
  out.mutable_token_ids()->mutable_ids()->Assign(prepared.prompt_ids.begin(),
                                                 prepared.prompt_ids.end());
  out.mutable_sampling()->set_max_tokens(prepared.max_tokens);
  v1::PruningOptions* p = out.mutable_pruning();
  const PruningConfig& c = prepared.pruning;
  switch (c.method) {
    case PruningMethod::kClaa: p->set_method(v1::PruningOptions::CLAA); break;
    case PruningMethod::kFastKv: p->set_method(v1::PruningOptions::FASTKV); break;
    case PruningMethod::kGemFilter: p->set_method(v1::PruningOptions::GEMFILTER); break;
    default: p->set_method(v1::PruningOptions::FULL); break;
  }
  p->set_keep_ratio(static_cast<float>(c.keep_ratio));
  p->set_pruning_layer(c.pruning_layer);
  p->set_window(c.window);
  p->set_aggregation_layers(c.aggregation_layers);
  p->set_min_layer(c.min_layer);
  p->set_pooling_kernel(c.pooling_kernel);
  return out;
}

void FillModelInfo(const LoadedModel& model, const std::string& backend, v1::ModelInfo* info) {
  const ModelConfig& c = model.config;
  info->set_model_name(model.name);
  info->set_architecture(c.architecture);
  info->set_builtin(model.builtin);
  info->set_vocab_size(c.vocab_size);
  info->set_max_context_length(model.max_context_length);
  info->set_num_layers(c.num_layers);
  info->set_hidden_size(c.hidden_size);
  info->set_num_heads(c.num_heads);
  info->set_num_kv_heads(c.num_kv_heads);
  if (model.runner != nullptr) info->set_tp_size(model.runner->tp_size());
  if (model.bos_token_id) info->set_bos_token_id(*model.bos_token_id);
  for (int32_t id : model.eos_token_ids) info->add_eos_token_ids(id);
  info->set_backend(backend);
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return v1::STOP;
    case FinishReason::kLength: return v1::LENGTH;
    case FinishReason::kEos: return v1::EOS;
    case FinishReason::kAbort: return v1::ABORT;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

}  // namespace claa
