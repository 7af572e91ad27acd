#ifndef CLAA_ENGINE_RUNTIME_COMMUNICATOR_H_
#define CLAA_ENGINE_RUNTIME_COMMUNICATOR_H_

// Collective operations between the ranks of one tensor-parallel group. The CPU implementation
// runs one thread per rank in one process; the NCCL one (CUDA issue) sits behind the same
// interface. Every rank of a group must call the same collectives in the same order.
#include <cstddef>

#include "absl/status/status.h"

namespace claa {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: data[i] = sum over ranks of data[i].
  virtual absl::Status AllReduceSum(float* data, size_t count) = 0;
  // out = concat over ranks (rank order) of each rank's `count` floats; out holds size()*count.
  virtual absl::Status AllGather(const float* in, size_t count, float* out) = 0;
  // Copies root's data into every rank's data.
  virtual absl::Status Broadcast(float* data, size_t count, int root) = 0;
  // Point-to-point; a Send is matched by the peer's Recv of the same count.
  virtual absl::Status Send(const float* data, size_t count, int peer) = 0;
  virtual absl::Status Recv(float* data, size_t count, int peer) = 0;
};

}  // namespace claa

#endif  // CLAA_ENGINE_RUNTIME_COMMUNICATOR_H_
