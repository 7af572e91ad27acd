#include "engine/gpu/kv_transfer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/util/status_macros.h"
#include "kernels/kernels.h"
#include "kernels/model_kernels.h"

namespace claa::gpu {

size_t KvTransferBytes(const ModelConfig& local, absl::Span<const int> layer_lengths) {
  size_t slots = 0;
  for (int n : layer_lengths) slots += size_t(n);
  return 2 * slots * size_t(local.num_kv_heads) * local.head_dim * sizeof(Bf16);
}

absl::Status KvPacker::Prepare(const CudaLlamaModel& model, const SequenceKv& kv,
                               absl::Span<const int> layer_lengths, cudaStream_t stream) {
  const ModelConfig& c = model.local_config();
  if (int(layer_lengths.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV transfer: %d layer lengths for a %d-layer model", layer_lengths.size(),
        c.num_layers));
  }
  const int bs = model.block_size();
  int longest = 0;
  for (int n : layer_lengths) {
    if (n < 0) return absl::InvalidArgumentError("KV transfer: negative layer length");
    longest = std::max(longest, n);
  }
  if (longest > int(kv.blocks.size()) * bs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV transfer: %d slots do not fit the sequence's %d blocks", longest, kv.blocks.size()));
  }
  for (int b : kv.blocks) {
    if (b < 0 || b >= model.num_blocks()) {
      return absl::OutOfRangeError(absl::StrFormat("KV transfer: block %d outside the pool", b));
    }
  }
  // int32 metadata: block table | per-layer lengths | per-layer [0, n] offsets | slot per row.
  std::vector<int32_t> meta(kv.blocks.begin(), kv.blocks.end());
  meta_lens_ = meta.size();
  meta.insert(meta.end(), layer_lengths.begin(), layer_lengths.end());
  meta_cu_ = meta.size();
  for (int n : layer_lengths) {
    meta.push_back(0);
    meta.push_back(n);
  }
  meta_slots_ = meta.size();
  for (int t = 0; t < longest; ++t) meta.push_back(kv.blocks[t / bs] * bs + t % bs);
  const size_t bytes = meta.size() * sizeof(int32_t);
  CLAA_RETURN_IF_ERROR(meta_host_.Reserve(bytes));
  CLAA_RETURN_IF_ERROR(meta_.Reserve(bytes));
  std::memcpy(meta_host_.get(), meta.data(), bytes);
  CLAA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(meta_.get(), meta_host_.get(), bytes, cudaMemcpyHostToDevice, stream));
  return absl::OkStatus();
}

absl::Status KvPacker::Pack(const CudaLlamaModel& model, const SequenceKv& kv,
                            absl::Span<const int> layer_lengths, Bf16* out,
                            cudaStream_t stream) {
  CLAA_RETURN_IF_ERROR(Prepare(model, kv, layer_lengths, stream));
  const ModelConfig& c = model.local_config();
  const int kv_dim = c.num_kv_heads * c.head_dim;
  const int32_t* meta = meta_.get<int32_t>();
  for (int l = 0; l < c.num_layers; ++l) {
    const int n = layer_lengths[l];
    if (n == 0) continue;
    CLAA_RETURN_IF_ERROR(GatherPagedKv(model.cache_layer(l), meta, int(kv.blocks.size()),
                                       meta + meta_lens_ + l, meta + meta_cu_ + 2 * l, 1, n, out,
                                       out + int64_t(n) * kv_dim, kv_dim, stream));
    out += 2 * int64_t(n) * kv_dim;
  }
  return absl::OkStatus();
}

absl::Status KvPacker::Unpack(const CudaLlamaModel& model, const SequenceKv& kv,
                              absl::Span<const int> layer_lengths, const Bf16* in,
                              cudaStream_t stream) {
  CLAA_RETURN_IF_ERROR(Prepare(model, kv, layer_lengths, stream));
  const ModelConfig& c = model.local_config();
  const int kv_dim = c.num_kv_heads * c.head_dim;
  const int32_t* slots = meta_.get<int32_t>() + meta_slots_;
  for (int l = 0; l < c.num_layers; ++l) {
    const int n = layer_lengths[l];
    if (n == 0) continue;
    CLAA_RETURN_IF_ERROR(WritePagedKv(model.cache_layer(l), in, kv_dim,
                                      in + int64_t(n) * kv_dim, kv_dim, slots, n, stream));
    in += 2 * int64_t(n) * kv_dim;
  }
  return absl::OkStatus();
}

absl::Status NcclKvLink::Send(const SequenceKv& kv) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(model_->device()));
  const ModelConfig& c = model_->local_config();
  const size_t bytes = KvTransferBytes(c, kv.layer_lengths);
  CLAA_RETURN_IF_ERROR(staging_.Reserve(std::max<size_t>(bytes, 1)));
  cudaStream_t stream = model_->stream();
  CLAA_RETURN_IF_ERROR(
      packer_.Pack(*model_, kv, kv.layer_lengths, staging_.get<Bf16>(), stream));
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclSend(staging_.get(), bytes / sizeof(Bf16), ncclBfloat16, peer_, comm_, stream));
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

absl::Status NcclKvLink::Recv(absl::Span<const int> layer_lengths, int num_positions,
                              SequenceKv* kv) {
  CLAA_CUDA_RETURN_IF_ERROR(cudaSetDevice(model_->device()));
  const ModelConfig& c = model_->local_config();
  const size_t bytes = KvTransferBytes(c, layer_lengths);
  CLAA_RETURN_IF_ERROR(staging_.Reserve(std::max<size_t>(bytes, 1)));
  cudaStream_t stream = model_->stream();
  CLAA_NCCL_RETURN_IF_ERROR(
      ncclRecv(staging_.get(), bytes / sizeof(Bf16), ncclBfloat16, peer_, comm_, stream));
  CLAA_RETURN_IF_ERROR(packer_.Unpack(*model_, *kv, layer_lengths, staging_.get<Bf16>(), stream));
  CLAA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  kv->layer_lengths.assign(layer_lengths.begin(), layer_lengths.end());
  kv->num_positions = num_positions;
  return absl::OkStatus();
}

}  // namespace claa::gpu
