#ifndef CLAA_ENGINE_GPU_BACKEND_LOADER_H_
#define CLAA_ENGINE_GPU_BACKEND_LOADER_H_

// Loads the CUDA backend (libclaa_cuda_backend.so) at run time with dlopen. Built in every
// configuration, also without CUDA: the same server binary runs on CPU-only hosts and, when the
// library and a GPU are there, on the GPU. Loading late (not linking) keeps cuBLAS out of the
// process at start-up, where its static TLS breaks prometheus-cpp's exposer (DESIGN.md §5).
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/gpu/gpu_model.h"

namespace claa::gpu {

inline constexpr char kCudaBackendLibraryName[] = "libclaa_cuda_backend.so";

class GpuBackendLibrary {
 public:
  // Opens the library and creates its backend. `path` empty: $CLAA_CUDA_BACKEND if set, else
  // libclaa_cuda_backend.so next to the running executable, else the dynamic loader's search
  // path. With require_device, a host without a usable CUDA device is FailedPrecondition.
  // Errors say what was tried: NotFound (no library; built without CUDA?), FailedPrecondition
  // (no entry point, ABI mismatch, no GPU).
  static absl::StatusOr<std::unique_ptr<GpuBackendLibrary>> Load(const std::string& path,
                                                                 bool require_device);

  // The library stays mapped for the life of the process (never dlclose'd: the CUDA runtime and
  // cuBLASLt register exit handlers inside it); destroying this object only frees the backend.
  // Every GpuModel it created must be destroyed first.
  ~GpuBackendLibrary();
  GpuBackendLibrary(const GpuBackendLibrary&) = delete;
  GpuBackendLibrary& operator=(const GpuBackendLibrary&) = delete;

  GpuBackend& backend() { return *backend_; }
  const std::string& path() const { return path_; }

 private:
  GpuBackendLibrary(std::string path, std::unique_ptr<GpuBackend> backend)
      : path_(std::move(path)), backend_(std::move(backend)) {}

  std::string path_;
  std::unique_ptr<GpuBackend> backend_;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_BACKEND_LOADER_H_
