#ifndef CLAA_ENGINE_RUNTIME_KV_SLOTS_H_
#define CLAA_ENGINE_RUNTIME_KV_SLOTS_H_

// Copying a sequence's KV slots between a ModelRunner's paged pools and flat host buffers, in
// global KV-head order whatever the tensor-parallel split -- the wire format of the KV handoff
// between prefill and decode workers (which may run different TP sizes).
//
// A flat buffer of n slots is [n][num_kv_heads][head_dim] fp32; rank r of a tp-way runner holds
// heads [r * kv_heads / tp, (r + 1) * kv_heads / tp). The sequence must not be in a running
// Forward; other sequences may be. On GPUs the pools are the device's bf16 ones
// (GpuModel::ReadKvSlots / WriteKvSlots, staged through pinned host memory): values written
// there round to bf16.
#include <cstddef>

#include "absl/status/status.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model_runner.h"

namespace claa {

// Bytes of K + V for slots_total slots over all heads.
size_t KvBytes(const ModelConfig& config, size_t slots_total);

// k_out / v_out receive slots [first, first + n) of `layer`. OutOfRange when they are not filled.
absl::Status ReadKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                         float* k_out, float* v_out);

// Writes slots [first, first + n) of `layer` from k / v. kv->blocks must already cover them
// (ReserveTokens); lengths and positions are the caller's to set.
absl::Status WriteKvSlots(ModelRunner& runner, const SequenceKv& kv, int layer, int first, int n,
                          const float* k, const float* v);

// Writes a cache received over an NCCL KV link (engine/gpu/gpu_model.h's GpuKvStage) into
// kv's blocks, which must cover its lengths. FailedPrecondition off the GPU.
absl::Status WriteStagedKv(ModelRunner& runner, const SequenceKv& kv,
                           const gpu::GpuKvStage& stage);

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_KV_SLOTS_H_
