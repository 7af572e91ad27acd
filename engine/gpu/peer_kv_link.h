#ifndef CLAA_ENGINE_GPU_PEER_KV_LINK_H_
#define CLAA_ENGINE_GPU_PEER_KV_LINK_H_

// GpuKvLink (gpu_model.h) on a two-rank NCCL communicator between processes: the NCCL transport
// of disaggregated serving. The communicator is non-blocking (ncclConfig_t::blocking = 0), and
// every wait -- its creation, the enqueueing of an operation, the operation on the device -- is
// a poll of ncclCommGetAsyncError / cudaStreamQuery against a deadline and a cancel callback.
// On any failure or timeout the link calls ncclCommAbort, which ends the operation on the
// device, and stays broken. Transfers run on a stream of the link's own, so the model's
// forward passes go on meanwhile (they touch other sequences' blocks).
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/gpu_model.h"
#include "engine/gpu/kv_transfer.h"

namespace claa::gpu {

// A received cache in device memory of the receiving model's GPU (KvPacker's packed form).
class DeviceKvStage final : public GpuKvStage {
 public:
  DeviceKvStage(int device, std::vector<int> layer_lengths)
      : device_(device), layer_lengths_(std::move(layer_lengths)) {}
  const std::vector<int>& layer_lengths() const override { return layer_lengths_; }
  size_t bytes() const override { return bytes_; }
  int device() const { return device_; }
  const Bf16* data() const { return buffer_.get<Bf16>(); }

 private:
  friend class PeerKvLink;
  int device_;
  std::vector<int> layer_lengths_;
  size_t bytes_ = 0;
  DeviceBuffer buffer_;
};

class PeerKvLink final : public GpuKvLink {
 public:
  // A fresh ncclUniqueId as bytes.
  static absl::StatusOr<std::string> NewId();
  // Joins communicator `id` as `rank` (0 or 1) on the model's device; returns once both ranks
  // joined, or DeadlineExceeded / Cancelled (the half-made communicator is aborted).
  static absl::StatusOr<std::unique_ptr<PeerKvLink>> Open(
      CudaLlamaModel* model, const std::string& id, int rank, absl::Time deadline,
      const std::function<bool()>& cancelled);
  ~PeerKvLink() override;  // aborts the communicator: the peer's next use of it fails

  absl::StatusOr<size_t> Send(const SequenceKv& kv, absl::Time deadline,
                              const std::function<bool()>& cancelled) override;
  absl::StatusOr<std::unique_ptr<GpuKvStage>> Recv(
      absl::Span<const int> layer_lengths, absl::Time deadline,
      const std::function<bool()>& cancelled) override;
  bool broken() const override { return broken_.load(); }

 private:
  PeerKvLink(CudaLlamaModel* model, int rank, ncclComm_t comm, cudaStream_t stream)
      : model_(model), peer_(1 - rank), comm_(comm), stream_(stream) {}
  // Polls until the communicator has no call in progress (and, with `on_stream`, the link's
  // stream is idle). Any error, the deadline or cancelled() aborts the link.
  absl::Status Await(absl::Time deadline, const std::function<bool()>& cancelled,
                     bool on_stream, const char* what);
  // ncclCommAbort, then a bounded wait for the stream; sets broken_.
  void Abort();

  CudaLlamaModel* model_;
  const int peer_;
  ncclComm_t comm_;
  cudaStream_t stream_;
  std::atomic<bool> broken_{false};
  std::mutex mu_;  // one transfer at a time
  DeviceBuffer send_staging_;
  KvPacker packer_;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_PEER_KV_LINK_H_
