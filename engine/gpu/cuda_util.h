#ifndef CLAA_ENGINE_GPU_CUDA_UTIL_H_
#define CLAA_ENGINE_GPU_CUDA_UTIL_H_

// CUDA runtime helpers of the GPU model: error -> absl::Status, and the owning device / pinned
// buffers of kernels/device_buffer.h (grown between forwards, never inside the layer loop).
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/device_buffer.h"

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

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_CUDA_UTIL_H_
