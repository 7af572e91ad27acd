#ifndef CLAA_ENGINE_GPU_KV_TRANSFER_H_
#define CLAA_ENGINE_GPU_KV_TRANSFER_H_

// One sequence's KV cache from a prefill GPU to a decode GPU over NCCL (the GPU transport of
// the KV handoff, DESIGN.md §4). The sender gathers the sequence's filled slots of every layer
// (per-layer lengths: after a pruned prefill only the kept tokens' slots) from its paged pools
// into one contiguous staging buffer, and ncclSend's it; the receiver ncclRecv's it and writes
// the rows into its own pools at its own block ids. The bytes moved are the compact cache's,
// K and V in bf16.
//
// The layout (per-layer lengths, positions) travels separately (the ticket of the control
// plane); the receiver's SequenceKv must already hold enough blocks.
#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/nccl_group.h"
#include "engine/runtime/kv_cache.h"

namespace claa::gpu {

// Bytes of K and V (bf16) for these per-layer lengths of `local` (a rank's shape).
size_t KvTransferBytes(const ModelConfig& local, absl::Span<const int> layer_lengths);

// The packed form NCCL moves: for each layer l with n = layer_lengths[l] slots, n K rows then
// n V rows of the rank's kv_dim, layers one after another (KvTransferBytes in all). Pack and
// Unpack queue their work on `stream`; the caller synchronizes it before the next call (the
// metadata upload reuses one pinned buffer).
class KvPacker {
 public:
  // Gathers slots [0, layer_lengths[l]) of every layer of kv's blocks into `out`.
  absl::Status Pack(const CudaLlamaModel& model, const SequenceKv& kv,
                    absl::Span<const int> layer_lengths, Bf16* out, cudaStream_t stream);
  // Writes `in` into those slots of kv's blocks.
  absl::Status Unpack(const CudaLlamaModel& model, const SequenceKv& kv,
                      absl::Span<const int> layer_lengths, const Bf16* in, cudaStream_t stream);

 private:
  // Checks kv's blocks against the lengths and uploads the block table and per-row slot ids.
  absl::Status Prepare(const CudaLlamaModel& model, const SequenceKv& kv,
                       absl::Span<const int> layer_lengths, cudaStream_t stream);

  DeviceBuffer meta_;
  PinnedBuffer meta_host_;
  size_t meta_lens_ = 0, meta_cu_ = 0, meta_slots_ = 0;
};

// One end of an in-process point-to-point KV link (both models in this process, two threads):
// staging buffers reused across transfers, the model's stream. Each call returns once its side
// is complete on the device. Between processes, GpuModel::OpenKvLink (peer_kv_link.h) is the
// bounded, abortable form.
class NcclKvLink {
 public:
  NcclKvLink(CudaLlamaModel* model, ncclComm_t comm, int peer)
      : model_(model), comm_(comm), peer_(peer) {}

  // Sends kv's cache (kv.layer_lengths slots of each layer).
  absl::Status Send(const SequenceKv& kv);
  // Receives a cache of `layer_lengths` into kv's blocks and sets kv's lengths and positions.
  absl::Status Recv(absl::Span<const int> layer_lengths, int num_positions, SequenceKv* kv);

 private:
  CudaLlamaModel* model_;
  ncclComm_t comm_;
  int peer_;
  DeviceBuffer staging_;
  KvPacker packer_;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_KV_TRANSFER_H_
