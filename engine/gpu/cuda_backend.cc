// GpuBackend on the CUDA runtime, and the C entry point of libclaa_cuda_backend.so.
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/gpu_model.h"
#include "engine/gpu/nccl_group.h"
#include "engine/gpu/tp_group_model.h"
#include "engine/util/status_macros.h"
#include "kernels/kernels.h"

namespace claa::gpu {
namespace {

class CudaBackend final : public GpuBackend {
 public:
  int DeviceCount() const override { return CudaDeviceCount(); }

  std::string DeviceDescription(int device) const override {
    int count = 0;
    if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
      cudaGetLastError();
      return absl::StrFormat("no CUDA device: %s", cudaGetErrorString(err));
    }
    if (device < 0 || device >= count) {
      return absl::StrFormat("no CUDA device %d (%d visible)", device, count);
    }
    cudaDeviceProp prop;
    if (cudaError_t err = cudaGetDeviceProperties(&prop, device); err != cudaSuccess) {
      cudaGetLastError();
      return absl::StrFormat("device %d: %s", device, cudaGetErrorString(err));
    }
    return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                           prop.multiProcessorCount,
                           double(prop.totalGlobalMem) / (1024.0 * 1024 * 1024));
  }

  absl::StatusOr<std::unique_ptr<GpuModel>> CreateModel(
      const ModelWeights& weights, const GpuModelOptions& options) override {
    CLAA_RETURN_IF_ERROR(CudaLlamaModel::CheckConfig(weights.config));
    CLAA_ASSIGN_OR_RETURN(cudaStream_t stream, Prepare(options));
    absl::StatusOr<DeviceWeights> w = UploadWeights(weights, stream);
    return Finish(weights.config, std::move(w), options, stream);
  }

  absl::StatusOr<std::unique_ptr<GpuModel>> CreateRandomModel(
      const ModelConfig& config, uint64_t seed, float init_std,
      const GpuModelOptions& options) override {
    CLAA_RETURN_IF_ERROR(CudaLlamaModel::CheckConfig(config));
    CLAA_ASSIGN_OR_RETURN(cudaStream_t stream, Prepare(options));
    absl::StatusOr<DeviceWeights> w = RandomDeviceWeights(config, seed, init_std, stream);
    return Finish(config, std::move(w), options, stream);
  }

  absl::StatusOr<std::unique_ptr<GpuModel>> CreateTpModel(
      absl::Span<const ModelWeights> shards, const GpuModelOptions& options) override {
    const int tp = int(shards.size());
    if (tp == 0) return absl::InvalidArgumentError("CreateTpModel: no shards");
    const ModelConfig& config = shards[0].config;
    CLAA_RETURN_IF_ERROR(CudaLlamaModel::CheckConfig(config));
    for (int r = 0; r < tp; ++r) {
      if (shards[r].shard.rank != r || shards[r].shard.size != tp) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "CreateTpModel: shards[%d] is shard %d of %d, expected %d of %d", r,
            shards[r].shard.rank, shards[r].shard.size, r, tp));
      }
    }
    return CreateGroup(config, tp, options, [&](int r, cudaStream_t stream) {
      return UploadWeights(shards[r], stream);
    });
  }

  absl::StatusOr<std::unique_ptr<GpuModel>> CreateRandomTpModel(
      const ModelConfig& config, int tp, uint64_t seed, float init_std,
      const GpuModelOptions& options) override {
    CLAA_RETURN_IF_ERROR(CudaLlamaModel::CheckConfig(config));
    CLAA_RETURN_IF_ERROR(ValidateTpShard(config, TpShard{0, tp}));
    const ModelConfig local = LocalTpConfig(config, tp);
    return CreateGroup(config, tp, options, [&](int r, cudaStream_t stream) {
      // Replicated tensors (embedding, norms, LM head) are drawn alike on every rank; the
      // rank salts the seeds of its slices.
      return RandomDeviceWeights(local, seed, init_std, stream, /*layer_seed_salt=*/uint64_t(r));
    });
  }

 private:
  absl::StatusOr<cudaStream_t> Prepare(const GpuModelOptions& options) const {
    if (DeviceCount() == 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("no CUDA device (%s)", DeviceDescription(0)));
    }
    CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
    cudaStream_t stream = nullptr;
    CLAA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    return stream;
  }

  // The NCCL group of devices options.device .. + tp - 1, then rank r's weights from
  // make_weights(r, stream) on device options.device + r; one rank is a plain model.
  template <typename MakeWeights>
  absl::StatusOr<std::unique_ptr<GpuModel>> CreateGroup(const ModelConfig& config, int tp,
                                                        const GpuModelOptions& options,
                                                        MakeWeights make_weights) {
    if (DeviceCount() == 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("no CUDA device (%s)", DeviceDescription(0)));
    }
    std::shared_ptr<NcclGroup> group;
    if (tp > 1) {
      CLAA_ASSIGN_OR_RETURN(group, NcclGroup::Create(options.device, tp));
    }
    std::vector<std::unique_ptr<CudaLlamaModel>> ranks;
    for (int r = 0; r < tp; ++r) {
      GpuModelOptions rank_options = options;
      rank_options.device = options.device + r;
      CLAA_ASSIGN_OR_RETURN(cudaStream_t stream, Prepare(rank_options));
      absl::StatusOr<DeviceWeights> w = make_weights(r, stream);
      if (!w.ok()) {
        cudaStreamDestroy(stream);
        return w.status();
      }
      CLAA_ASSIGN_OR_RETURN(std::unique_ptr<CudaLlamaModel> model,
                            CudaLlamaModel::Create(config, std::move(*w), rank_options, stream,
                                                   TpRank{r, tp, group}));
      ranks.push_back(std::move(model));
    }
    if (tp == 1) return std::unique_ptr<GpuModel>(std::move(ranks[0]));
    return std::unique_ptr<GpuModel>(std::make_unique<TpGroupModel>(std::move(ranks)));
  }

  absl::StatusOr<std::unique_ptr<GpuModel>> Finish(const ModelConfig& config,
                                                   absl::StatusOr<DeviceWeights> weights,
                                                   const GpuModelOptions& options,
                                                   cudaStream_t stream) {
    if (!weights.ok()) {
      cudaStreamDestroy(stream);
      return weights.status();
    }
    absl::StatusOr<std::unique_ptr<CudaLlamaModel>> model =
        CudaLlamaModel::Create(config, std::move(*weights), options, stream);
    if (!model.ok()) return model.status();  // the model owned the stream and destroyed it
    return std::unique_ptr<GpuModel>(std::move(*model));
  }
};

}  // namespace
}  // namespace claa::gpu

// The only symbol the library exports (see CMakeLists.txt: everything linked in is hidden).
extern "C" __attribute__((visibility("default"))) claa::gpu::GpuBackend*
claa_cuda_backend_create(const claa::gpu::GpuBackendAbi* caller_abi) {
  if (caller_abi == nullptr || !(*caller_abi == claa::gpu::GpuBackendAbi{})) return nullptr;
  return new claa::gpu::CudaBackend();
}
