#include "server/security/server_credentials.h"

#include <string>
#include <vector>

#include "grpc/grpc.h"
#include "grpc/grpc_security.h"
#include "grpc/slice.h"

namespace claa::security {
namespace {

using Processor = std::shared_ptr<grpc::AuthMetadataProcessor>;

// gRPC core's callback for one call's metadata: runs the C++ processor synchronously (ours is
// non-blocking) and reports its verdict and the metadata it consumed.
void ProcessMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                     size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
  const Processor& processor = *static_cast<Processor*>(state);
  grpc::AuthMetadataProcessor::InputMetadata input;
  for (size_t i = 0; i < num_md; ++i) {
    input.emplace(grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].key)),
                                   GRPC_SLICE_LENGTH(md[i].key)),
                  grpc::string_ref(
                      reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].value)),
                      GRPC_SLICE_LENGTH(md[i].value)));
  }
  grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
  grpc::Status status = processor->Process(input, nullptr, &consumed, &response);
  std::vector<grpc_metadata> consumed_md;
  for (const auto& [key, value] : consumed) {
    grpc_metadata m{};
    m.key = grpc_slice_from_copied_buffer(key.data(), key.size());
    m.value = grpc_slice_from_copied_buffer(value.data(), value.size());
    consumed_md.push_back(m);
  }
  done(user_data, consumed_md.data(), consumed_md.size(), nullptr, 0,
       static_cast<grpc_status_code>(status.error_code()),
       status.ok() ? nullptr : status.error_message().c_str());
  for (grpc_metadata& m : consumed_md) {
    grpc_slice_unref(m.key);
    grpc_slice_unref(m.value);
  }
}

void DestroyProcessor(void* state) { delete static_cast<Processor*>(state); }

// A plaintext port whose calls pass `processor` first.
class PlaintextWithAuthCredentials final : public grpc::ServerCredentials {
 public:
  explicit PlaintextWithAuthCredentials(Processor processor) : processor_(std::move(processor)) {}

  void SetAuthMetadataProcessor(const Processor& processor) override { processor_ = processor; }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
    // Core owns the state from here and frees it with DestroyProcessor.
    grpc_server_credentials_set_auth_metadata_processor(
        creds, {ProcessMetadata, DestroyProcessor, new Processor(processor_)});
    const int port = grpc_server_add_http2_port(server, addr.c_str(), creds);
    grpc_server_credentials_release(creds);
    return port;
  }

  Processor processor_;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const std::optional<grpc::SslServerCredentialsOptions>& tls, Processor auth) {
  if (!tls) {
    if (auth == nullptr) return grpc::InsecureServerCredentials();
    return std::make_shared<PlaintextWithAuthCredentials>(std::move(auth));
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::SslServerCredentials(*tls);
  if (auth != nullptr) creds->SetAuthMetadataProcessor(auth);
  return creds;
}

}  // namespace claa::security
