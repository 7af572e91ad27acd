#ifndef CLAA_SERVER_SECURITY_SERVER_CREDENTIALS_H_
#define CLAA_SERVER_SECURITY_SERVER_CREDENTIALS_H_

// Credentials of a listening port: TLS (grpc::SslServerCredentials) or plaintext, each with an
// optional AuthMetadataProcessor (the bearer-token check).
//
// Why not just grpc::InsecureServerCredentials() for plaintext: it aborts the process when given
// a processor, yet a token must also be checkable on a plaintext port (TLS terminated by a proxy
// in front of the server). gRPC core runs processors on insecure ports too, so for that case the
// credentials are built through gRPC's public C API.
#include <memory>
#include <optional>

#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"

namespace claa::security {

// `tls` nullopt: plaintext. `auth` may be null (no per-call check). A processor given here is
// called with a null AuthContext on plaintext ports.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const std::optional<grpc::SslServerCredentialsOptions>& tls,
    std::shared_ptr<grpc::AuthMetadataProcessor> auth);

}  // namespace claa::security

#endif  // CLAA_SERVER_SECURITY_SERVER_CREDENTIALS_H_
