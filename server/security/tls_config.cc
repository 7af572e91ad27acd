#include "server/security/tls_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/credentials.h"
#include "openssl/bio.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace claa::security {
namespace {

std::string Flag(const std::string& prefix, absl::string_view name) {
  return absl::StrCat("--", prefix, "_", name);
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<X509, X509Free> ParseCertificate(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// gRPC would only notice a bad certificate or a key of another certificate when the port is
// bound (after the model load) or at each handshake, with a terse log line; checked here, the
// process stops at once with the flags and files named.
absl::Status CheckCertificate(const std::string& pem, absl::string_view flag,
                              const std::string& path) {
  if (ParseCertificate(pem) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": the PEM certificate cannot be parsed"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyPair(const std::string& cert_pem, const std::string& key_pem,
                          absl::string_view cert_flag, const std::string& cert_path,
                          absl::string_view key_flag, const std::string& key_path) {
  auto cert = ParseCertificate(cert_pem);
  if (cert == nullptr) return CheckCertificate(cert_pem, cert_flag, cert_path);
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(key_pem.data(), int(key_pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        key_flag, " ", key_path, ": the PEM private key cannot be parsed (encrypted keys are "
        "not supported)"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(key_flag, " ", key_path,
                                                   " is not the key of the certificate in ",
                                                   cert_flag, " ", cert_path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag,
                                        absl::string_view label) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  // "-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----"
  const size_t begin = pem.find("-----BEGIN ");
  const size_t end = begin == std::string::npos ? begin : pem.find("-----", begin + 11);
  if (end == std::string::npos ||
      !absl::StrContains(absl::string_view(pem).substr(begin, end - begin), label)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM file with a ", label, " block"));
  }
  return pem;
}

absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> LoadServerTls(
    const ServerTlsFiles& files) {
  const std::string cert_flag = Flag(files.flag_prefix, "cert_file");
  const std::string key_flag = Flag(files.flag_prefix, "key_file");
  const std::string ca_flag = Flag(files.flag_prefix, "ca_file");
  if (files.cert_file.empty() && files.key_file.empty()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ca_flag, " needs ", cert_flag, " and ", key_flag));
    }
    return std::nullopt;
  }
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        cert_flag, " and ", key_flag, " go together: set both (TLS) or neither (plaintext)"));
  }
  absl::StatusOr<std::string> cert = ReadPemFile(files.cert_file, cert_flag, "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile(files.key_file, key_flag, "PRIVATE KEY");
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyPair(*cert, *key, cert_flag, files.cert_file, key_flag,
                                    files.key_file);
      !s.ok()) {
    return s;
  }
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(files.client_ca_file, ca_flag, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    if (absl::Status s = CheckCertificate(*ca, ca_flag, files.client_ca_file); !s.ok()) return s;
    options.pem_root_certs = *std::move(ca);
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return options;
}

void ClientTls::ApplyTo(grpc::ChannelArguments& args) const {
  if (tls && !server_name.empty()) args.SetSslTargetNameOverride(server_name);
}

absl::StatusOr<ClientTls> LoadClientTls(const ClientTlsFiles& files) {
  const std::string ca_flag = Flag(files.flag_prefix, "ca_file");
  const std::string cert_flag = Flag(files.flag_prefix, "cert_file");
  const std::string key_flag = Flag(files.flag_prefix, "key_file");
  ClientTls out;
  out.tls = files.use_tls || !files.ca_file.empty();
  if (!out.tls) {
    if (!files.cert_file.empty() || !files.key_file.empty() || !files.server_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          cert_flag, ", ", key_flag, " and ", Flag(files.flag_prefix, "server_name"),
          " need TLS: set ", ca_flag));
    }
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_flag, " and ", key_flag, " go together: set both or neither"));
  }
  grpc::SslCredentialsOptions options;
  if (!files.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(files.ca_file, ca_flag, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    if (absl::Status s = CheckCertificate(*ca, ca_flag, files.ca_file); !s.ok()) return s;
    options.pem_root_certs = *std::move(ca);
  }
  if (!files.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(files.cert_file, cert_flag, "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile(files.key_file, key_flag, "PRIVATE KEY");
    if (!key.ok()) return key.status();
    if (absl::Status s = CheckKeyPair(*cert, *key, cert_flag, files.cert_file, key_flag,
                                      files.key_file);
        !s.ok()) {
      return s;
    }
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  out.credentials = grpc::SslCredentials(options);
  out.server_name = files.server_name;
  return out;
}

}  // namespace claa::security
