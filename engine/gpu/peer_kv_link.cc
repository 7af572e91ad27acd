#include "engine/gpu/peer_kv_link.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/util/status_macros.h"

namespace claa::gpu {
namespace {

// A transfer takes microseconds to milliseconds: spin politely first, then sleep.
void Backoff(int round) {
  if (round < 200) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(round < 2000 ? 50 : 500));
  }
}

}  // namespace

absl::StatusOr<std::string> PeerKvLink::NewId() {
  DisableNvlsUnlessSet();
  ncclUniqueId id;
  CLAA_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<PeerKvLink>> PeerKvLink::Open(
    CudaLlamaModel* model, const std::string& id, int rank, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  if (model->tp_size() != 1) {
    return absl::UnimplementedError("NCCL KV links need a single-GPU model");
  }
  if (rank != 0 && rank != 1) return absl::InvalidArgumentError("KV link rank must be 0 or 1");
  ncclUniqueId uid;
  if (id.size() != sizeof(uid.internal)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV link id has %d bytes, an ncclUniqueId %d", id.size(), sizeof(uid.internal)));
  }
  std::memcpy(uid.internal, id.data(), sizeof(uid.internal));
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(model->device()));
  cudaStream_t stream = nullptr;
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DisableNvlsUnlessSet();
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every wait is ours to bound (Await)
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, 2, uid, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm != nullptr) ncclCommAbort(comm);
    cudaStreamDestroy(stream);
    return NcclCheck(r, "ncclCommInitRankConfig");
  }
  std::unique_ptr<PeerKvLink> link(new PeerKvLink(model, rank, comm, stream));
  CLAA_RETURN_IF_ERROR(link->Await(deadline, cancelled, /*on_stream=*/false,
                                   "joining the KV link (the peer did not join in time)"));
  return link;
}

PeerKvLink::~PeerKvLink() {
  if (comm_ != nullptr) Abort();
  if (stream_ != nullptr && cudaStreamQuery(stream_) != cudaErrorNotReady) {
    cudaStreamDestroy(stream_);
  }
}

void PeerKvLink::Abort() {
  broken_ = true;
  if (comm_ != nullptr) {
    cudaSetDevice(model_->device());
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  // The abort ends the NCCL kernel; give the stream a bounded time to drain. Should it not,
  // the staging buffer stays allocated (freeing memory a kernel still reads is worse).
  const absl::Time until = absl::Now() + absl::Seconds(5);
  for (int round = 0; cudaStreamQuery(stream_) == cudaErrorNotReady; ++round) {
    if (absl::Now() > until) {
      new DeviceBuffer(std::move(send_staging_));  // deliberately leaked
      return;
    }
    Backoff(round);
  }
  cudaGetLastError();
}

absl::Status PeerKvLink::Await(absl::Time deadline, const std::function<bool()>& cancelled,
                               bool on_stream, const char* what) {
  for (int round = 0;; ++round) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) state = r;
    if (state != ncclSuccess && state != ncclInProgress) {
      absl::Status status = NcclCheck(state, what);
      Abort();
      return absl::UnavailableError(status.message());
    }
    if (state == ncclSuccess) {
      if (!on_stream) return absl::OkStatus();
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return absl::OkStatus();
      if (q != cudaErrorNotReady) {
        cudaGetLastError();
        Abort();
        return CudaCheck(q, what);
      }
    }
    if (absl::Now() >= deadline) {
      Abort();
      return absl::DeadlineExceededError(absl::StrFormat("%s: deadline passed", what));
    }
    if (cancelled && cancelled()) {
      Abort();
      return absl::CancelledError(absl::StrFormat("%s: cancelled", what));
    }
    Backoff(round);
  }
}

absl::StatusOr<size_t> PeerKvLink::Send(const SequenceKv& kv, absl::Time deadline,
                                        const std::function<bool()>& cancelled) {
  std::lock_guard<std::mutex> lock(mu_);
  if (broken_) return absl::FailedPreconditionError("the KV link is broken");
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(model_->device()));
  const size_t bytes = KvTransferBytes(model_->local_config(), kv.layer_lengths);
  CLAA_RETURN_IF_ERROR(send_staging_.Reserve(std::max<size_t>(bytes, 1)));
  CLAA_RETURN_IF_ERROR(
      packer_.Pack(*model_, kv, kv.layer_lengths, send_staging_.get<Bf16>(), stream_));
  const ncclResult_t r = ncclSend(send_staging_.get(), bytes / sizeof(Bf16), ncclBfloat16,
                                  peer_, comm_, stream_);
  if (r != ncclSuccess && r != ncclInProgress) {
    absl::Status status = NcclCheck(r, "ncclSend");
    Abort();
    return status;
  }
  CLAA_RETURN_IF_ERROR(
      Await(deadline, cancelled, /*on_stream=*/true, "sending the KV cache over NCCL"));
  return bytes;
}

absl::StatusOr<std::unique_ptr<GpuKvStage>> PeerKvLink::Recv(
    absl::Span<const int> layer_lengths, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  std::lock_guard<std::mutex> lock(mu_);
  if (broken_) return absl::FailedPreconditionError("the KV link is broken");
  const ModelConfig& c = model_->local_config();
  if (int(layer_lengths.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV link: %d layer lengths for a %d-layer model", layer_lengths.size(), c.num_layers));
  }
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(model_->device()));
  auto stage = std::make_unique<DeviceKvStage>(
      model_->device(), std::vector<int>(layer_lengths.begin(), layer_lengths.end()));
  stage->bytes_ = KvTransferBytes(c, layer_lengths);
  CLAA_RETURN_IF_ERROR(stage->buffer_.Reserve(std::max<size_t>(stage->bytes_, 1)));
  const ncclResult_t r = ncclRecv(stage->buffer_.get(), stage->bytes_ / sizeof(Bf16),
                                  ncclBfloat16, peer_, comm_, stream_);
  if (r != ncclSuccess && r != ncclInProgress) {
    absl::Status status = NcclCheck(r, "ncclRecv");
    Abort();
    if (cudaStreamQuery(stream_) == cudaErrorNotReady) stage.release();  // still in use
    return status;
  }
  absl::Status done =
      Await(deadline, cancelled, /*on_stream=*/true, "receiving the KV cache over NCCL");
  if (!done.ok()) {
    if (cudaStreamQuery(stream_) == cudaErrorNotReady) stage.release();  // still in use
    return done;
  }
  return std::unique_ptr<GpuKvStage>(std::move(stage));
}

}  // namespace claa::gpu
