// GpuBackend on the CUDA runtime, and the C entry point of libclaa_cuda_backend.so.
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/gpu_model.h"
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
