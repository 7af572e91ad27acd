#include "engine/gpu/nccl_group.h"

#include <cstdlib>
#include <numeric>

#include "absl/strings/str_format.h"
#include "engine/gpu/cuda_util.h"

namespace claa::gpu {

absl::Status NcclCheck(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("%s: NCCL error %d (%s)", what, int(result), ncclGetErrorString(result)));
}

void DisableNvlsUnlessSet() {
  // NVLink SHARP (NVLS) multicast objects fail to allocate on the lent H200 machines.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
}

absl::StatusOr<std::shared_ptr<NcclGroup>> NcclGroup::Create(int first_device, int size) {
  int count = 0;
  CLAA_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (size < 1 || first_device < 0 || first_device + size > count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallelism over %d GPUs from device %d needs %d devices; %d visible", size,
        first_device, first_device + size, count));
  }
  DisableNvlsUnlessSet();
  std::vector<int> devices(size);
  std::iota(devices.begin(), devices.end(), first_device);
  std::vector<ncclComm_t> comms(size, nullptr);
  CLAA_NCCL_RETURN_IF_ERROR(ncclCommInitAll(comms.data(), size, devices.data()));
  return std::shared_ptr<NcclGroup>(new NcclGroup(first_device, std::move(comms)));
}

NcclGroup::~NcclGroup() {
  for (ncclComm_t c : comms_) {
    if (c != nullptr) ncclCommDestroy(c);
  }
}

absl::Status AllReduceBf16Async(ncclComm_t comm, Bf16* data, size_t count, cudaStream_t stream) {
  CLAA_NCCL_RETURN_IF_ERROR(ncclAllReduce(data, data, count, ncclBfloat16, ncclSum, comm, stream));
  return absl::OkStatus();
}

absl::Status AllReduceF32Async(ncclComm_t comm, float* data, size_t count, ncclRedOp_t op,
                               cudaStream_t stream) {
  CLAA_NCCL_RETURN_IF_ERROR(ncclAllReduce(data, data, count, ncclFloat32, op, comm, stream));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    std::shared_ptr<NcclGroup> group, int rank) {
  if (group == nullptr || rank < 0 || rank >= group->size()) {
    return absl::InvalidArgumentError("NcclCommunicator: no group or rank out of range");
  }
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group->device(rank)));
  cudaStream_t stream = nullptr;
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(group), rank, stream));
}

NcclCommunicator::~NcclCommunicator() {
  cudaStreamSynchronize(stream_);
  cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::Wait() {
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status NcclCommunicator::AllReduceSum(float* data, size_t count) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group_->device(rank_)));
  CLAA_NCCL_RETURN_IF_ERROR(ncclAllReduce(data, data, count, ncclFloat32, ncclSum,
                                          group_->comm(rank_), stream_));
  return Wait();
}

absl::Status NcclCommunicator::AllGather(const float* in, size_t count, float* out) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group_->device(rank_)));
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclAllGather(in, out, count, ncclFloat32, group_->comm(rank_), stream_));
  return Wait();
}

absl::Status NcclCommunicator::Broadcast(float* data, size_t count, int root) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group_->device(rank_)));
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclBroadcast(data, data, count, ncclFloat32, root, group_->comm(rank_), stream_));
  return Wait();
}

absl::Status NcclCommunicator::Send(const float* data, size_t count, int peer) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group_->device(rank_)));
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclSend(data, count, ncclFloat32, peer, group_->comm(rank_), stream_));
  return Wait();
}

absl::Status NcclCommunicator::Recv(float* data, size_t count, int peer) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(group_->device(rank_)));
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclRecv(data, count, ncclFloat32, peer, group_->comm(rank_), stream_));
  return Wait();
}

}  // namespace claa::gpu
