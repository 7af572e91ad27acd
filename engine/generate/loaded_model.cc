#include "engine/generate/loaded_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/model/builtin_model.h"
#include "engine/model/model_loader.h"
#include "engine/model/weights.h"
#include "engine/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace claa {
namespace {

// generation_config.json often lists more EOS ids than config.json (e.g. Llama-3 instruct's
// <|eot_id|>); a missing or unreadable file just adds nothing.
std::vector<int32_t> GenerationConfigEos(const std::filesystem::path& dir) {
  std::ifstream in(dir / "generation_config.json");
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  std::vector<int32_t> ids;
  if (j.is_discarded() || !j.is_object() || !j.contains("eos_token_id")) return ids;
  const nlohmann::json& e = j["eos_token_id"];
  if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
  if (e.is_array()) {
    for (const auto& v : e) {
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
    }
  }
  return ids;
}

}  // namespace

int64_t KvBytesPerToken(const ModelConfig& config) {
  return int64_t{2} * config.num_layers * config.num_kv_heads * config.head_dim *
         static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const ModelLoadOptions& options) {
  auto model = std::make_unique<LoadedModel>();
  std::function<absl::StatusOr<ModelWeights>(TpShard)> load_shard;
  if (options.model_dir.empty()) {
    CLAA_ASSIGN_OR_RETURN(model->tokenizer, Tokenizer::FromJson(BuiltinTokenizerJson()));
    auto bos = model->tokenizer->bos_id();
    auto eos = model->tokenizer->TokenToId("<|end_of_text|>");
    if (!bos || !eos) return absl::InternalError("built-in tokenizer lacks BOS/EOS tokens");
    model->name = std::string(kBuiltinModelName);
    model->builtin = true;
    model->config = BuiltinModelConfig(model->tokenizer->vocab_size(), *bos, *eos);
    ModelConfig config = model->config;
    load_shard = [config](TpShard shard) -> absl::StatusOr<ModelWeights> {
      CLAA_RETURN_IF_ERROR(ValidateTpShard(config, shard));
      return MakeRandomWeights(config, kBuiltinModelSeed, shard);
    };
  } else {
    const std::filesystem::path dir(options.model_dir);
    CLAA_ASSIGN_OR_RETURN(model->config, LoadModelConfig(dir));
    CLAA_ASSIGN_OR_RETURN(model->tokenizer, Tokenizer::FromFile(dir / "tokenizer.json"));
    if (model->tokenizer->vocab_size() > model->config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vocab mismatch: tokenizer.json has ", model->tokenizer->vocab_size(),
          " tokens but config.json vocab_size is ", model->config.vocab_size));
    }
    model->name = std::filesystem::weakly_canonical(dir).filename().string();
    for (int32_t id : GenerationConfigEos(dir)) model->config.eos_token_ids.push_back(id);
    load_shard = [dir](TpShard shard) { return LoadModelDir(dir, shard); };
  }
  auto& eos = model->config.eos_token_ids;
  std::sort(eos.begin(), eos.end());
  eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
  model->eos_token_ids.assign(eos.begin(), eos.end());
  if (model->config.bos_token_id) model->bos_token_id = *model->config.bos_token_id;

  const int64_t per_token = KvBytesPerToken(model->config);
  const int64_t per_block = per_token * options.block_size;
  model->num_kv_blocks = static_cast<int>(std::max<int64_t>(1, options.kv_cache_bytes / per_block));
  // The served context is what both the model and the KV cache can hold; a small budget on a
  // long-context model shortens the context rather than failing to start.
  model->max_context_length = static_cast<int>(std::min<int64_t>(
      model->config.max_position_embeddings, int64_t{model->num_kv_blocks} * options.block_size));
  if (!options.load_weights) {
    // A router holds no KV cache, so its own budget must not shorten the context: it serves the
    // model's, and each worker refuses what its cache cannot hold.
    model->max_context_length = model->config.max_position_embeddings;
    return model;
  }
  RunnerOptions runner_options;
  runner_options.num_kv_blocks = model->num_kv_blocks;
  runner_options.block_size = options.block_size;
  if (options.device != "cpu" && options.device != "cuda" && options.device != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be cpu, cuda or auto, got '", options.device, "'"));
  }
  if (options.device != "cpu") {
    // Loaded only now, with dlopen: cuBLAS must not be in the process at start-up
    // (DESIGN.md §5), and a CPU-only host needs neither the library nor a driver.
    absl::StatusOr<std::unique_ptr<gpu::GpuBackendLibrary>> lib =
        gpu::GpuBackendLibrary::Load(options.cuda_backend_path, /*require_device=*/true);
    if (lib.ok()) {
      model->gpu_library = *std::move(lib);
      runner_options.gpu_backend = &model->gpu_library->backend();
      runner_options.gpu_device = options.gpu_device;
    } else if (options.device == "cuda") {
      return absl::Status(lib.status().code(),
                          absl::StrCat("--device=cuda: ", lib.status().message()));
    } else {
      model->device_note = absl::StrCat("no GPU backend, running on the CPU (",
                                        lib.status().message(), ")");
    }
  }
  CLAA_ASSIGN_OR_RETURN(model->runner,
                        ModelRunner::Create(load_shard, options.tp_size, runner_options));
  model->device_description = model->runner->device_description();
  return model;
}

}  // namespace claa
