#ifndef CLAA_KERNELS_HOST_STATUS_H_
#define CLAA_KERNELS_HOST_STATUS_H_

// Internal to kernels/*.cc: how the host wrappers report a failed launch or a bad argument
// (InternalError naming the CUDA error, InvalidArgumentError naming the function).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace claa::gpu::internal {

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("%s: CUDA error %d (%s)", what, int(err), cudaGetErrorString(err)));
}

inline absl::Status Invalid(const char* what, const std::string& detail) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", what, detail));
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace claa::gpu::internal

#endif  // CLAA_KERNELS_HOST_STATUS_H_
