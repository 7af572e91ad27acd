#include "server/security/server_security.h"

#include "absl/strings/str_cat.h"
#include "server/security/bearer_auth.h"
#include "server/security/server_credentials.h"

namespace claa::security {

absl::StatusOr<ServerSecurity> ConfigureServerSecurity(const ServerSecurityFlags& flags,
                                                       absl::string_view role) {
  const bool worker = role == "prefill" || role == "decode";
  const bool internal_any = !flags.internal_tls_cert_file.empty() ||
                            !flags.internal_tls_key_file.empty() ||
                            !flags.internal_tls_ca_file.empty() ||
                            !flags.internal_tls_server_name.empty();
  const bool internal_all = !flags.internal_tls_cert_file.empty() &&
                            !flags.internal_tls_key_file.empty() &&
                            !flags.internal_tls_ca_file.empty();
  if (internal_any && !internal_all) {
    return absl::InvalidArgumentError(
        "internal mutual TLS needs all of --internal_tls_cert_file, --internal_tls_key_file and "
        "--internal_tls_ca_file");
  }
  ServerSecurity out;
  out.internal_client.credentials = grpc::InsecureChannelCredentials();

  if (worker) {
    if (!flags.tls_cert_file.empty() || !flags.tls_key_file.empty() ||
        !flags.auth_token_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--role=", role, " serves only internal services: its port is secured with "
          "--internal_tls_cert_file/--internal_tls_key_file/--internal_tls_ca_file (mutual "
          "TLS), not --tls_cert_file/--tls_key_file/--auth_token_file"));
    }
    absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> tls =
        LoadServerTls({.flag_prefix = "internal_tls",
                       .cert_file = flags.internal_tls_cert_file,
                       .key_file = flags.internal_tls_key_file,
                       .client_ca_file = flags.internal_tls_ca_file});
    if (!tls.ok()) return tls.status();
    out.port_credentials = MakeServerCredentials(*tls, nullptr);
    out.summary = *tls ? "internal port: mutual TLS (client certificates signed by "
                         "--internal_tls_ca_file required)"
                       : "internal port: plaintext (no --internal_tls_*)";
    if (!*tls) {
      out.warnings.push_back(
          "internal port without --internal_tls_*: any client that reaches it can call the "
          "worker; keep it on a private network");
    }
  } else {
    absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> tls = LoadServerTls(
        {.flag_prefix = "tls", .cert_file = flags.tls_cert_file, .key_file = flags.tls_key_file});
    if (!tls.ok()) return tls.status();
    std::shared_ptr<grpc::AuthMetadataProcessor> auth;
    if (!flags.auth_token_file.empty()) {
      absl::StatusOr<std::string> token = ReadTokenFile(flags.auth_token_file);
      if (!token.ok()) return token.status();
      auth = std::make_shared<BearerTokenProcessor>(*std::move(token));
      if (!*tls) {
        out.warnings.push_back(
            "--auth_token_file without --tls_cert_file/--tls_key_file: the bearer token travels "
            "in plaintext; terminate TLS in front of this server or set both TLS flags");
      }
    }
    out.port_credentials = MakeServerCredentials(*tls, auth);
    out.summary = absl::StrCat("public port: ", *tls ? "TLS" : "plaintext",
                               auth ? ", bearer token required (health checks exempt)"
                                    : ", no authentication");
    if (internal_all && role == "all") {
      out.warnings.push_back(
          "--internal_tls_* ignored: --role=all has no internal traffic");
    }
  }

  if (internal_all && role != "all") {
    absl::StatusOr<ClientTls> client =
        LoadClientTls({.flag_prefix = "internal_tls",
                       .ca_file = flags.internal_tls_ca_file,
                       .cert_file = flags.internal_tls_cert_file,
                       .key_file = flags.internal_tls_key_file,
                       .server_name = flags.internal_tls_server_name});
    if (!client.ok()) return client.status();
    out.internal_client = *std::move(client);
    if (role == "router") out.summary += "; internal channels: mutual TLS";
  }
  return out;
}

}  // namespace claa::security
