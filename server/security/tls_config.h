#ifndef CLAA_SERVER_SECURITY_TLS_CONFIG_H_
#define CLAA_SERVER_SECURITY_TLS_CONFIG_H_

// TLS settings from PEM files, read once at start-up so that a missing or wrong file stops the
// process with a message naming the flag and path, instead of failing each handshake later.
// The server side yields grpc::SslServerCredentialsOptions (optionally requiring client
// certificates: mutual TLS); the client side yields channel credentials plus the name a peer's
// certificate is checked against.
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace claa::security {

// The text of `path`, which must hold a PEM block whose label contains `label` ("CERTIFICATE",
// "PRIVATE KEY"). InvalidArgument naming `flag` and the path otherwise.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag,
                                        absl::string_view label);

// Files of a listening port. `flag_prefix` names the flags in messages ("tls" ->
// --tls_cert_file, --tls_key_file, --tls_ca_file).
struct ServerTlsFiles {
  std::string flag_prefix = "tls";
  std::string cert_file{};  // PEM certificate chain the server presents
  std::string key_file{};   // its PEM private key
  // Non-empty: clients must present a certificate signed by this PEM CA (mutual TLS); a
  // handshake without one fails, so no call reaches any service.
  std::string client_ca_file{};
};

// nullopt when no file is set (a plaintext port). InvalidArgument when only some are set, a
// file is unreadable / not PEM / not parseable, or the key is not the certificate's.
absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> LoadServerTls(
    const ServerTlsFiles& files);

// Files of an outgoing channel.
struct ClientTlsFiles {
  std::string flag_prefix = "tls";
  bool use_tls = false;   // TLS even without ca_file (then the system's root certificates)
  std::string ca_file{};    // PEM CA the server's certificate must chain to; implies TLS
  std::string cert_file{};  // optional client certificate (mutual TLS) ...
  std::string key_file{};   // ... and its key; both or neither
  // Name the server's certificate must carry instead of the target's host (one certificate
  // shared by several workers, or a target given as an IP the certificate does not list).
  std::string server_name{};
};

struct ClientTls {
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // insecure when TLS is off
  bool tls = false;
  std::string server_name;  // empty: the target's host

  // Adds the server-name override (if any) to a channel's arguments.
  void ApplyTo(grpc::ChannelArguments& args) const;
};

absl::StatusOr<ClientTls> LoadClientTls(const ClientTlsFiles& files);

}  // namespace claa::security

#endif  // CLAA_SERVER_SECURITY_TLS_CONFIG_H_
