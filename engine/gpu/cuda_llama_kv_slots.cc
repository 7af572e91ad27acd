// CudaLlamaModel's side of the KV handoff of disaggregated serving: the host-staged form
// (GpuModel::ReadKvSlots / WriteKvSlots: a sequence's slots between the device's paged bf16
// pools and flat fp32 host rows in global KV-head order, engine/runtime/kv_slots.h) and the
// NCCL links between processes (OpenKvLink, WriteStagedKv; peer_kv_link.h).
#include <algorithm>

#include "absl/strings/str_format.h"
#include "engine/gpu/cuda_llama_model.h"
#include "engine/gpu/kv_transfer.h"
#include "engine/gpu/peer_kv_link.h"
#include "engine/util/status_macros.h"

namespace claa::gpu {

absl::Status CudaLlamaModel::ReadKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                         float* k, float* v) {
  return CopyKvSlots(kv, layer, first, n, k, v, /*to_host=*/true);
}

absl::Status CudaLlamaModel::WriteKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                          const float* k, const float* v) {
  // CopyKvSlots only reads the host side when writing the pools.
  return CopyKvSlots(kv, layer, first, n, const_cast<float*>(k), const_cast<float*>(v),
                     /*to_host=*/false);
}

absl::Status CudaLlamaModel::CopyKvSlots(const SequenceKv& kv, int layer, int first, int n,
                                         float* k, float* v, bool to_host) {
  const int bs = options_.block_size;
  if (layer < 0 || layer >= config_.num_layers || first < 0 || n < 0 ||
      int64_t(first) + n > int64_t(kv.blocks.size()) * bs) {
    return absl::OutOfRangeError(absl::StrFormat(
        "KV slots [%d, %d) of layer %d outside the sequence's %d blocks", first, first + n,
        layer, kv.blocks.size()));
  }
  if (n == 0) return absl::OkStatus();
  const size_t row = size_t(config_.num_kv_heads) * config_.head_dim;  // this rank's heads
  const size_t global_row = size_t(full_config_.num_kv_heads) * config_.head_dim;
  const size_t head0 = size_t(tp_.rank) * row;  // this rank's first column of a flat row

  std::lock_guard<std::mutex> lock(transfer_mu_);
  CLAA_RETURN_IF_ERROR(EnsureTransferStream());
  CLAA_RETURN_IF_ERROR(transfer_staging_.Reserve(2 * size_t(n) * row * sizeof(Bf16)));
  Bf16* stage_k = transfer_staging_.get<Bf16>();
  Bf16* stage_v = stage_k + size_t(n) * row;
  if (!to_host) {
    for (int s = 0; s < n; ++s) {
      for (size_t j = 0; j < row; ++j) {
        stage_k[size_t(s) * row + j] = FloatToBf16(k[size_t(s) * global_row + head0 + j]);
        stage_v[size_t(s) * row + j] = FloatToBf16(v[size_t(s) * global_row + head0 + j]);
      }
    }
  }
  const PagedKvLayer pools = CacheLayer(layer);
  for (int s = 0; s < n;) {
    const int slot = first + s;
    const int block = kv.blocks[slot / bs];
    if (block < 0 || block >= options_.num_blocks) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "block id %d outside the cache's %d blocks", block, options_.num_blocks));
    }
    // Consecutive slots inside one block are contiguous rows of the pool.
    const int run = std::min(bs - slot % bs, n - s);
    const size_t at = (size_t(block) * bs + slot % bs) * row;
    const size_t bytes = size_t(run) * row * sizeof(Bf16);
    Bf16* hk = stage_k + size_t(s) * row;
    Bf16* hv = stage_v + size_t(s) * row;
    if (to_host) {
      CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hk, pools.k + at, bytes, cudaMemcpyDeviceToHost,
                                                transfer_stream_));
      CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hv, pools.v + at, bytes, cudaMemcpyDeviceToHost,
                                                transfer_stream_));
    } else {
      CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pools.k + at, hk, bytes, cudaMemcpyHostToDevice,
                                                transfer_stream_));
      CLAA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pools.v + at, hv, bytes, cudaMemcpyHostToDevice,
                                                transfer_stream_));
    }
    s += run;
  }
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(transfer_stream_));
  if (to_host) {
    for (int s = 0; s < n; ++s) {
      for (size_t j = 0; j < row; ++j) {
        k[size_t(s) * global_row + head0 + j] = Bf16ToFloat(stage_k[size_t(s) * row + j]);
        v[size_t(s) * global_row + head0 + j] = Bf16ToFloat(stage_v[size_t(s) * row + j]);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace claa::gpu

namespace claa::gpu {

absl::Status CudaLlamaModel::EnsureTransferStream() {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  if (transfer_stream_ == nullptr) {
    CLAA_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&transfer_stream_, cudaStreamNonBlocking));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CudaLlamaModel::NewKvLinkId() {
  if (tp_.size != 1) return absl::UnimplementedError("NCCL KV links need a single-GPU model");
  return PeerKvLink::NewId();
}

absl::StatusOr<std::unique_ptr<GpuKvLink>> CudaLlamaModel::OpenKvLink(
    const std::string& id, int rank, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  CLAA_ASSIGN_OR_RETURN(std::unique_ptr<PeerKvLink> link,
                        PeerKvLink::Open(this, id, rank, deadline, cancelled));
  return std::unique_ptr<GpuKvLink>(std::move(link));
}

absl::Status CudaLlamaModel::WriteStagedKv(const GpuKvStage& stage, const SequenceKv& kv) {
  const auto* device_stage = dynamic_cast<const DeviceKvStage*>(&stage);
  if (device_stage == nullptr || device_stage->device() != options_.device) {
    return absl::InvalidArgumentError("the KV stage was not received on this model's GPU");
  }
  std::lock_guard<std::mutex> lock(transfer_mu_);
  CLAA_RETURN_IF_ERROR(EnsureTransferStream());
  if (stage_packer_ == nullptr) stage_packer_ = std::make_unique<KvPacker>();
  CLAA_RETURN_IF_ERROR(stage_packer_->Unpack(*this, kv, stage.layer_lengths(),
                                             device_stage->data(), transfer_stream_));
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(transfer_stream_));
  return absl::OkStatus();
}

}  // namespace claa::gpu
