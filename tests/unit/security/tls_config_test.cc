// Start-up validation of the TLS flags (server/security/tls_config.h, server_security.h): which
// combinations each role accepts, and errors that name the flag and file. Real handshakes are
// tested in tests/integration/security_test.cc.
#include "server/security/tls_config.h"

#include "gtest/gtest.h"
#include "server/security/server_security.h"
#include "tests/unit/security/temp_dir.h"
#include "tests/unit/security/test_certs.h"

namespace claa::security {
namespace {

using ::claa::testing::TempDir;

class TlsConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    error_ = new std::string(::claa::testing::MakeTestCerts(dir_->path()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete error_;
  }
  void SetUp() override {
    if (!error_->empty()) GTEST_SKIP() << "no test certificates: " << *error_;
  }
  static std::string File(const std::string& name) { return (dir_->path() / name).string(); }

  static TempDir* dir_;
  static std::string* error_;
  std::string cert_ = File("server.pem");
  std::string key_ = File("server.key");
  std::string ca_ = File("ca.pem");
  std::string token_ = dir_->Write("token", "tok\n");
};
TempDir* TlsConfigTest::dir_ = nullptr;
std::string* TlsConfigTest::error_ = nullptr;

TEST_F(TlsConfigTest, ServerTlsIsOffWithoutFilesAndNeedsBothCertAndKey) {
  auto none = LoadServerTls({});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto only_cert = LoadServerTls({.cert_file = cert_});
  EXPECT_NE(only_cert.status().message().find("--tls_cert_file and --tls_key_file go together"),
            std::string::npos)
      << only_cert.status();
  auto only_key = LoadServerTls({.key_file = key_});
  EXPECT_FALSE(only_key.ok());
  auto both = LoadServerTls({.cert_file = cert_, .key_file = key_});
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_TRUE(both->has_value());
  EXPECT_EQ((*both)->client_certificate_request, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
}

TEST_F(TlsConfigTest, ClientCaMakesItMutualTls) {
  auto mtls = LoadServerTls(
      {.flag_prefix = "internal_tls", .cert_file = cert_, .key_file = key_, .client_ca_file = ca_});
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  EXPECT_EQ((*mtls)->client_certificate_request,
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  EXPECT_NE((*mtls)->pem_root_certs.find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST_F(TlsConfigTest, UnreadableOrNonPemFilesNameTheFlagAndPath) {
  const std::string missing = File("missing.pem");
  auto a = LoadServerTls({.cert_file = missing, .key_file = key_});
  EXPECT_EQ(a.status().message(), "--tls_cert_file " + missing + ": cannot be read");
  // A certificate given as the key (an easy mix-up) is caught at start-up.
  auto b = LoadServerTls({.flag_prefix = "internal_tls", .cert_file = cert_, .key_file = cert_});
  EXPECT_EQ(b.status().message(),
            "--internal_tls_key_file " + cert_ + ": not a PEM file with a PRIVATE KEY block");
  auto c = LoadServerTls({.cert_file = token_, .key_file = key_});
  EXPECT_NE(c.status().message().find("not a PEM file"), std::string::npos);
  const std::string garbled = dir_->Write(
      "garbled.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  auto d = LoadServerTls({.cert_file = garbled, .key_file = key_});
  EXPECT_EQ(d.status().message(),
            "--tls_cert_file " + garbled + ": the PEM certificate cannot be parsed");
}

TEST_F(TlsConfigTest, AKeyOfAnotherCertificateIsRefusedAtStartUp) {
  // gRPC itself would only fail when binding the port, after the model load.
  auto server = LoadServerTls({.cert_file = cert_, .key_file = File("client.key")});
  EXPECT_EQ(server.status().message(), "--tls_key_file " + File("client.key") +
                                           " is not the key of the certificate in "
                                           "--tls_cert_file " + cert_);
  auto client = LoadClientTls(
      {.ca_file = ca_, .cert_file = File("client.pem"), .key_file = File("rogue_client.key")});
  EXPECT_NE(client.status().message().find("is not the key of the certificate"),
            std::string::npos)
      << client.status();
  auto bad_ca = LoadServerTls(
      {.cert_file = cert_, .key_file = key_, .client_ca_file = dir_->Write("ca_bad.pem",
       "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")});
  EXPECT_NE(bad_ca.status().message().find("--tls_ca_file"), std::string::npos);
}

TEST_F(TlsConfigTest, ClientTls) {
  auto plain = LoadClientTls({});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->tls);
  auto cert_without_tls = LoadClientTls({.cert_file = cert_, .key_file = key_});
  EXPECT_NE(cert_without_tls.status().message().find("need TLS"), std::string::npos);
  auto half = LoadClientTls({.ca_file = ca_, .cert_file = cert_});
  EXPECT_FALSE(half.ok());
  auto mtls = LoadClientTls(
      {.ca_file = ca_, .cert_file = cert_, .key_file = key_, .server_name = "worker"});
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  EXPECT_TRUE(mtls->tls);
  EXPECT_EQ(mtls->server_name, "worker");
  auto system_roots = LoadClientTls({.use_tls = true});
  ASSERT_TRUE(system_roots.ok());
  EXPECT_TRUE(system_roots->tls);
}

TEST_F(TlsConfigTest, RolesAcceptTheirFlagsOnly) {
  const ServerSecurityFlags internal{.internal_tls_cert_file = cert_,
                                     .internal_tls_key_file = key_,
                                     .internal_tls_ca_file = ca_};
  for (const char* role : {"prefill", "decode"}) {
    auto worker = ConfigureServerSecurity(internal, role);
    ASSERT_TRUE(worker.ok()) << worker.status();
    EXPECT_NE(worker->summary.find("mutual TLS"), std::string::npos);
    EXPECT_TRUE(worker->internal_client.tls);  // a decode worker fetches KV over mTLS too
    // Public flags on a worker are refused, not ignored.
    ServerSecurityFlags with_token = internal;
    with_token.auth_token_file = token_;
    auto refused = ConfigureServerSecurity(with_token, role);
    EXPECT_NE(refused.status().message().find("serves only internal services"),
              std::string::npos)
        << refused.status();
  }
  auto router = ConfigureServerSecurity(internal, "router");
  ASSERT_TRUE(router.ok());
  EXPECT_TRUE(router->internal_client.tls);
  EXPECT_NE(router->summary.find("public port: plaintext"), std::string::npos);

  auto partial = ConfigureServerSecurity({.internal_tls_cert_file = cert_}, "router");
  EXPECT_NE(partial.status().message().find("needs all of"), std::string::npos);

  auto all = ConfigureServerSecurity(internal, "all");
  ASSERT_TRUE(all.ok());
  EXPECT_FALSE(all->internal_client.tls);
  ASSERT_EQ(all->warnings.size(), 1u);
  EXPECT_NE(all->warnings[0].find("ignored"), std::string::npos);
}

TEST_F(TlsConfigTest, TokenWithoutTlsWorksButWarns) {
  auto plain = ConfigureServerSecurity({.auth_token_file = token_}, "all");
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->warnings.size(), 1u);
  EXPECT_NE(plain->warnings[0].find("plaintext"), std::string::npos);
  EXPECT_NE(plain->summary.find("bearer token required"), std::string::npos);
  auto tls = ConfigureServerSecurity(
      {.tls_cert_file = cert_, .tls_key_file = key_, .auth_token_file = token_}, "router");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->warnings.empty());
  auto bad_token = ConfigureServerSecurity({.auth_token_file = ca_ + ".none"}, "all");
  EXPECT_NE(bad_token.status().message().find("--auth_token_file"), std::string::npos);
}

}  // namespace
}  // namespace claa::security
