#ifndef CLAA_SERVER_SECURITY_SERVER_SECURITY_H_
#define CLAA_SERVER_SECURITY_SERVER_SECURITY_H_

// Which credentials each claa-server role uses, from its security flags:
//
//   role            its listening port                        its outgoing internal channels
//   all             public TLS (--tls_*) + bearer token        none
//   router          public TLS (--tls_*) + bearer token        internal mTLS client (--internal_tls_*)
//   prefill/decode  internal mTLS server (--internal_tls_*)    decode -> prefill (FetchKv):
//                   (a client certificate is required)         internal mTLS client
//
// Each part is optional and off by default (plaintext, no token). A worker's port carries only
// internal services, so the public flags are refused there rather than silently ignored.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "server/security/tls_config.h"

namespace claa::security {

struct ServerSecurityFlags {
  std::string tls_cert_file{};    // public port TLS
  std::string tls_key_file{};
  std::string auth_token_file{};  // public API bearer token
  std::string internal_tls_cert_file{};
  std::string internal_tls_key_file{};
  std::string internal_tls_ca_file{};
  std::string internal_tls_server_name{};  // name expected in workers' certificates
};

struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> port_credentials;  // this process's listening port
  // Channels to workers (router) or to prefill workers (decode worker's KV fetch).
  ClientTls internal_client;
  std::string summary;                 // one line for the start-up log
  std::vector<std::string> warnings;   // insecure but allowed combinations
};

// InvalidArgument naming the flag when a file is unreadable, flags are only partly given, or a
// flag does not apply to `role` (all, router, prefill, decode).
absl::StatusOr<ServerSecurity> ConfigureServerSecurity(const ServerSecurityFlags& flags,
                                                       absl::string_view role);

}  // namespace claa::security

#endif  // CLAA_SERVER_SECURITY_SERVER_SECURITY_H_
