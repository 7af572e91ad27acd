#ifndef CLAA_ENGINE_GPU_KV_TRANSFER_H_
#define CLAA_ENGINE_GPU_KV_TRANSFER_H_

// One sequence's KV cache from a prefill GPU to a decode GPU over NCCL (the GPU transport of
// the KV handoff, DESIGN.md §4). The sender gathers the sequence's filled slots of every layer
// (per-layer lengths: after a pruned prefill only the kept tokens' slots) from its paged pools
// into one contiguous staging buffer, and ncclSend's it; the receiver ncclRecv's it and writes
// the rows into its own pools at its own block ids. The bytes moved are the compact cache's,
// K and V in bf16. Both ends must run at the same time (two threads or two processes); each
// call returns once its side is complete on the device.
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

// One end of a point-to-point KV link: staging buffers reused across transfers.
class NcclKvLink {
 public:
  NcclKvLink(CudaLlamaModel* model, ncclComm_t comm, int peer)
      : model_(model), comm_(comm), peer_(peer) {}

  // Sends kv's cache (kv.layer_lengths slots of each layer).
  absl::Status Send(const SequenceKv& kv);
  // Receives a cache of `layer_lengths` into kv's blocks and sets kv's lengths and positions.
  absl::Status Recv(absl::Span<const int> layer_lengths, int num_positions, SequenceKv* kv);

 private:
  // Uploads the block table and per-row slot ids the gathers / scatters need.
  absl::Status Prepare(const SequenceKv& kv, absl::Span<const int> layer_lengths);

  CudaLlamaModel* model_;
  ncclComm_t comm_;
  int peer_;
  DeviceBuffer staging_, meta_;
  PinnedBuffer meta_host_;
  size_t meta_table_ = 0, meta_lens_ = 0, meta_cu_ = 0, meta_slots_ = 0;
};

}  // namespace claa::gpu

#endif  // CLAA_ENGINE_GPU_KV_TRANSFER_H_
