#ifndef CLAA_SERVER_STREAM_RELAY_H_
#define CLAA_SERVER_STREAM_RELAY_H_

// Relays one request's scheduler events to a gRPC stream as claa.v1.GenerateResponse messages,
// cancelling the request when the client goes away. Shared by the public Generation service
// (--role=all) and the decode worker.
#include <functional>
#include <string>

#include "claa/v1/claa.pb.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/request_stream.h"
#include "scheduler/scheduler.h"

namespace claa {

// Converts one chunk / complete / error event (kHandoff is not relayed).
v1::GenerateResponse ToResponse(const std::string& request_id, const RequestEvent& event);

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Pops events until the complete or error event and writes each with `write` (false: the peer
// stopped reading). before_first_chunk, when set, runs once just before the first chunk is
// written. Returns the status the RPC should end with.
grpc::Status RelayRequestStream(grpc::ServerContext* context, RequestStream& stream,
                                const std::string& request_id, Scheduler* scheduler,
                                const std::function<bool(const v1::GenerateResponse&)>& write,
                                const std::function<void()>& before_first_chunk = {});

}  // namespace claa

#endif  // CLAA_SERVER_STREAM_RELAY_H_
