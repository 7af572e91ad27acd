#ifndef CLAA_ENGINE_GPU_NCCL_GROUP_H_
#define CLAA_ENGINE_GPU_NCCL_GROUP_H_

// NCCL between the GPUs of one tensor-parallel group in one process (one rank per GPU, one
// host thread per rank, as the CPU path's CpuCommGroup). Only inside libclaa_cuda_backend.so:
// NCCL, like cuBLAS, is loaded with the backend and never at server start-up.
//
// Two faces:
//  - NcclCommunicator implements claa::Communicator (engine/runtime/communicator.h) on device
//    memory: each call is queued on the rank's stream and waited for, so it can stand wherever
//    the CPU communicator stands (checks, tools).
//  - The model's hot path uses the stream-ordered calls (AllReduceBf16Async, AllReduceF32Async):
//    queued behind the GEMM that produced the data, never waited for on the host.
//
// The environment should set NCCL_NVLS_ENABLE=0 on the lent H200 machines (DESIGN.md §5); the
// backend sets it when unset, before the first communicator is created.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/communicator.h"
#include "kernels/kernel_types.h"

namespace claa::gpu {

absl::Status NcclCheck(ncclResult_t result, const char* what);

#define CLAA_NCCL_RETURN_IF_ERROR(expr)                                        \
  do {                                                                         \
    if (absl::Status nccl_status_ = ::claa::gpu::NcclCheck((expr), #expr);     \
        !nccl_status_.ok()) {                                                  \
      return nccl_status_;                                                     \
    }                                                                          \
  } while (0)

// Sets NCCL_NVLS_ENABLE=0 unless the environment says otherwise; called before any
// communicator is created.
void DisableNvlsUnlessSet();

// The communicators of devices first_device .. first_device + size - 1 (ncclCommInitAll).
class NcclGroup {
 public:
  static absl::StatusOr<std::shared_ptr<NcclGroup>> Create(int first_device, int size);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int size() const { return int(comms_.size()); }
  int device(int rank) const { return first_device_ + rank; }
  ncclComm_t comm(int rank) const { return comms_[rank]; }

 private:
  NcclGroup(int first_device, std::vector<ncclComm_t> comms)
      : first_device_(first_device), comms_(std::move(comms)) {}
  int first_device_;
  std::vector<ncclComm_t> comms_;
};

// Stream-ordered in-place sums / maxima over the group (the caller's stream, no host wait).
absl::Status AllReduceBf16Async(ncclComm_t comm, Bf16* data, size_t count, cudaStream_t stream);
absl::Status AllReduceF32Async(ncclComm_t comm, float* data, size_t count, ncclRedOp_t op,
                               cudaStream_t stream);

// claa::Communicator over NCCL; pointers are device memory of the rank's GPU. Every call
// returns once the operation has completed on the device.
class NcclCommunicator final : public Communicator {
 public:
  // Creates its own stream on the rank's device; the group must outlive it.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      std::shared_ptr<NcclGroup> group, int rank);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  absl::Status AllReduceSum(float* data, size_t count) override;
  absl::Status AllGather(const float* in, size_t count, float* out) override;
  absl::Status Broadcast(float* data, size_t count, int root) override;
  absl::Status Send(const float* data, size_t count, int peer) override;
  absl::Status Recv(float* data, size_t count, int peer) override;

 private:
  NcclCommunicator(std::shared_ptr<NcclGroup> group, int rank, cudaStream_t stream)
      : group_(std::move(group)), rank_(rank), stream_(stream) {}
  absl::Status Wait();

  std::shared_ptr<NcclGroup> group_;
  int rank_;
  cudaStream_t stream_;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_NCCL_GROUP_H_
