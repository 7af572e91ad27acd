#ifndef CLAA_ENGINE_GPU_CUDA_UTIL_H_
#define CLAA_ENGINE_GPU_CUDA_UTIL_H_

// CUDA runtime helpers of the GPU model: error -> absl::Status, and owning device / pinned
// buffers that grow on demand (growth happens between forwards, never inside the layer loop).
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace claa::gpu {

inline absl::Status CudaCheck(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("%s: CUDA error %d (%s)", what, int(err), cudaGetErrorString(err)));
}

// CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(...)): the call's text names the failure.
#define CLAA_CUDA_RETURN_IF_ERROR(expr)                                         \
  do {                                                                          \
    if (absl::Status cuda_status_ = ::claa::gpu::CudaCheck((expr), #expr);      \
        !cuda_status_.ok()) {                                                   \
      return cuda_status_;                                                      \
    }                                                                           \
  } while (0)

// Device memory, freed on destruction. Reserve keeps the contents only when it need not grow.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Release();
      p_ = o.p_;
      bytes_ = o.bytes_;
      o.p_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }

  absl::Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return absl::OkStatus();
    Release();
    void* p = nullptr;
    if (cudaError_t err = cudaMalloc(&p, bytes); err != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cudaMalloc of %.2f MiB failed: %s", double(bytes) / (1 << 20),
          cudaGetErrorString(err)));
    }
    p_ = p;
    bytes_ = bytes;
    return absl::OkStatus();
  }
  void Release() {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
  }

  template <typename T = void>
  T* get(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (asynchronous copies need it).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (p_ != nullptr) cudaFreeHost(p_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  absl::Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return absl::OkStatus();
    if (p_ != nullptr) cudaFreeHost(p_);
    p_ = nullptr;
    bytes_ = 0;
    if (cudaError_t err = cudaMallocHost(&p_, bytes); err != cudaSuccess) {
      cudaGetLastError();
      p_ = nullptr;
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cudaMallocHost of %.2f MiB failed: %s", double(bytes) / (1 << 20),
          cudaGetErrorString(err)));
    }
    bytes_ = bytes;
    return absl::OkStatus();
  }
  template <typename T = void>
  T* get(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_CUDA_UTIL_H_
