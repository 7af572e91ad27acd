#ifndef CLAA_KERNELS_DEVICE_BUFFER_H_
#define CLAA_KERNELS_DEVICE_BUFFER_H_

// Owning device / pinned host buffers that grow on demand (growth happens between uses, never
// while queued work reads them: cudaFree waits for the device). Here, below engine/gpu, so the
// kernels' own scratch (kernels/attention_maps.cc) and the GPU model share one implementation.
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace claa::gpu {

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

#endif  // CLAA_KERNELS_DEVICE_BUFFER_H_
