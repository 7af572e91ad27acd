#ifndef CLAA_SERVER_RAW_REQUEST_H_
#define CLAA_SERVER_RAW_REQUEST_H_

// Public RPCs take their request as bytes and parse it here, so that a request protobuf cannot
// parse gets INVALID_ARGUMENT naming the field instead of gRPC's INTERNAL with an empty message.
//
// Why: proto3 `string` fields must hold UTF-8, and protobuf's C++ parser refuses a message whose
// string field does not, before any handler runs; gRPC's generated handler then answers
// INTERNAL "" (and protobuf logs an error line per such request). A client sending invalid
// UTF-8 in `text`, a stop string or a label is the client's fault, and INTERNAL would page the
// server's owners. The wire format, the clients and the generated stubs stay as they are: only
// the server-side handler of each public method is swapped (the same mechanism as the
// generated WithSplitStreamingMethod_* / WithStreamedUnaryMethod_* classes, with the request
// type grpc::ByteBuffer).
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/message.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/method_handler.h"

namespace claa {
namespace raw_request_internal {

// Walks serialized `d` messages (recursing into sub-messages) for the first string field that is
// not UTF-8; returns its API name ("prompt.text", "sampling.stop[2]", "continuations[0].text"),
// "" when every string is valid, nullopt when the bytes are not protobuf wire format.
inline std::optional<std::string> FindInvalidUtf8(google::protobuf::io::CodedInputStream* in,
                                                  const google::protobuf::Descriptor* d,
                                                  const std::string& prefix, int depth) {
  using google::protobuf::FieldDescriptor;
  using google::protobuf::internal::WireFormatLite;
  std::map<int, int> occurrences;  // index of the next element of each repeated field
  for (;;) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) {
      if (!in->ConsumedEntireMessage()) return std::nullopt;
      return std::string();
    }
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const FieldDescriptor* f = d->FindFieldByNumber(number);
    const bool walk = f != nullptr &&
                      WireFormatLite::GetTagWireType(tag) ==
                          WireFormatLite::WIRETYPE_LENGTH_DELIMITED &&
                      (f->type() == FieldDescriptor::TYPE_STRING ||
                       f->type() == FieldDescriptor::TYPE_MESSAGE);
    if (!walk) {
      // Unknown fields (kept and ignored, as proto3 does), numbers and bytes.
      if (!WireFormatLite::SkipField(in, tag)) return std::nullopt;
      continue;
    }
    // The API names a prompt's fields "prompt.text" / "prompt.token_ids" (the oneof).
    const google::protobuf::OneofDescriptor* oneof = f->real_containing_oneof();
    std::string name = prefix + (oneof != nullptr && oneof->name() == "prompt" ? "prompt." : "") +
                       f->name();
    if (f->is_repeated()) absl::StrAppend(&name, "[", occurrences[number]++, "]");
    uint32_t length = 0;
    if (!in->ReadVarint32(&length)) return std::nullopt;
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      std::string value;
      if (!in->ReadString(&value, static_cast<int>(length))) return std::nullopt;
      if (!tokenizer_internal::IsValidUtf8(value)) return name;
      continue;
    }
    if (depth >= 32) return std::nullopt;  // no request nests that deep
    const auto limit = in->PushLimit(static_cast<int>(length));
    std::optional<std::string> found = FindInvalidUtf8(in, f->message_type(), name + ".", depth + 1);
    if (!found.has_value() || !found->empty()) return found;
    in->PopLimit(limit);
  }
}

}  // namespace raw_request_internal

// Parses `raw` into `out`. InvalidArgument "<field>: not valid UTF-8 ..." for a string field
// holding anything else, InvalidArgument "request: not a valid <type> ..." for bytes that are not
// protobuf at all. Unknown fields are accepted (and ignored), as proto3 prescribes.
inline absl::Status ParseRawRequest(const grpc::ByteBuffer& raw, google::protobuf::Message* out) {
  std::vector<grpc::Slice> slices;
  if (!raw.Dump(&slices).ok()) return absl::InvalidArgumentError("request: unreadable message");
  std::string bytes;
  bytes.reserve(raw.Length());
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  in.SetRecursionLimit(64);
  std::optional<std::string> bad =
      raw_request_internal::FindInvalidUtf8(&in, out->GetDescriptor(), "", 0);
  if (bad.has_value() && !bad->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        *bad, ": not valid UTF-8 (protobuf string fields must hold UTF-8 text)"));
  }
  if (!bad.has_value() || !out->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: not a valid ", out->GetDescriptor()->full_name(),
                     " (malformed protobuf wire format)"));
  }
  return absl::OkStatus();
}

// Index of `method` in `service_full_name` (generated services register methods in proto order).
inline int MethodIndex(const std::string& service_full_name, const std::string& method) {
  const google::protobuf::ServiceDescriptor* s =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_full_name);
  return s->FindMethodByName(method)->index();
}

// A handler for a server-streaming method that receives the request as bytes, parses it with
// ParseRawRequest and hands it to serve(context, request, write); a parse failure goes to
// reject(status), whose answer ends the call (so it can count it). Install the handler with
// grpc::Service::MarkMethodStreamed.
template <typename Request, typename Response>
grpc::internal::MethodHandler* ParsingServerStreamingHandler(
    std::function<grpc::Status(grpc::ServerContext*, const Request&,
                               const std::function<bool(const Response&)>&)>
        serve,
    std::function<grpc::Status(const absl::Status&)> reject) {
  using Streamer = grpc::ServerSplitStreamer<grpc::ByteBuffer, Response>;
  return new grpc::internal::SplitServerStreamingHandler<grpc::ByteBuffer, Response>(
      [serve = std::move(serve), reject = std::move(reject)](grpc::ServerContext* context,
                                                             Streamer* stream) {
        grpc::ByteBuffer raw;
        if (!stream->Read(&raw)) {
          return reject(absl::InvalidArgumentError("request: no request message"));
        }
        Request request;
        if (absl::Status s = ParseRawRequest(raw, &request); !s.ok()) return reject(s);
        return serve(context, request,
                     [stream](const Response& r) { return stream->Write(r); });
      });
}

// The same for a unary method: serve(context, &request, &response) as generated services have.
template <typename Request, typename Response>
grpc::internal::MethodHandler* ParsingUnaryHandler(
    std::function<grpc::Status(grpc::ServerContext*, const Request*, Response*)> serve) {
  using Streamer = grpc::ServerUnaryStreamer<grpc::ByteBuffer, Response>;
  return new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, Response>(
      [serve = std::move(serve)](grpc::ServerContext* context, Streamer* stream) {
        grpc::ByteBuffer raw;
        if (!stream->Read(&raw)) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request: no request message");
        }
        Request request;
        if (absl::Status s = ParseRawRequest(raw, &request); !s.ok()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
        }
        Response response;
        grpc::Status status = serve(context, &request, &response);
        if (status.ok()) stream->Write(response);
        return status;
      });
}

}  // namespace claa

#endif  // CLAA_SERVER_RAW_REQUEST_H_
