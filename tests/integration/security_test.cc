// Security through real claa-server processes on loopback, with a PKI made at test time
// (tests/unit/security/test_certs.h): TLS on the public port, the bearer token on the public
// API (over TLS and behind a TLS-terminating proxy), internal mutual TLS between router,
// prefill and decode workers (same greedy output as plaintext; a worker port refuses every
// client without a certificate from the internal CA), start-up refusals of bad flags, the
// --model_root confinement, and claa-loadgen / the Python client against a secured server.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "claa/internal/v1/worker.grpc.pb.h"
#include "claa/v1/claa.grpc.pb.h"
#include "claa/v1/prefill.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "tests/integration/child_process.h"
#include "tests/integration/timeout_scale.h"
#include "tests/unit/security/temp_dir.h"
#include "tests/unit/security/test_certs.h"

namespace claa {
namespace {

namespace fs = std::filesystem;
using ::claa::testing::ChildProcess;
using ::claa::testing::ScaledDeadline;
using ::claa::testing::TempDir;

constexpr char kToken[] = "s3cr3t-token-0123456789";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A claa-server child on a free port (no metrics port), with the router and worker deadlines
// scaled as the test's (timeout_scale.h). Its stderr stays the test's stderr.
class Server {
 public:
  bool Start(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {CLAA_SERVER_BINARY, "--port=0", "--metrics_port=-1"};
    const std::vector<std::string> timeouts = ::claa::testing::ServerTimeoutFlags();
    argv.insert(argv.end(), timeouts.begin(), timeouts.end());
    argv.insert(argv.end(), args.begin(), args.end());
    if (!process_.Start(argv)) return false;
    while (auto line = process_.ReadLine()) {
      log_ += *line + "\n";
      if (const size_t at = line->find("listening on "); at != std::string::npos) {
        address_ = line->substr(at + 13);
        port_ = address_.substr(address_.rfind(':') + 1);
        return true;
      }
    }
    return false;
  }
  const std::string& address() const { return address_; }
  // "localhost:PORT": the test certificates name both 127.0.0.1 and localhost.
  std::string localhost() const { return "localhost:" + port_; }
  const std::string& log() const { return log_; }

 private:
  ChildProcess process_;
  std::string address_, port_, log_;
};

// Runs a program to its exit with stderr merged into stdout; {exit code, output}.
std::pair<int, std::string> RunToExit(const std::vector<std::string>& program,
                                      const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  argv.insert(argv.end(), program.begin(), program.end());
  ChildProcess p;
  if (!p.Start(argv)) return {-1, "cannot start"};
  std::string out = p.ReadAll();
  return {p.Wait(), out};
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TempDir;
    error_ = new std::string(::claa::testing::MakeTestCerts(pki_->path()));
    if (error_->empty()) pki_->Write("token", std::string(kToken) + "\n");
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete error_;
  }
  void SetUp() override {
    if (!error_->empty()) GTEST_SKIP() << "no test certificates: " << *error_;
  }

  static std::string File(const std::string& name) { return (pki_->path() / name).string(); }

  // TLS trusting `ca`; with `name` set, a client certificate NAME.pem / NAME.key.
  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca,
                                                       const std::string& name = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFile(File(ca + ".pem"));
    if (!name.empty()) {
      options.pem_cert_chain = ReadFile(File(name + ".pem"));
      options.pem_private_key = ReadFile(File(name + ".key"));
    }
    return grpc::SslCredentials(options);
  }
  static std::shared_ptr<grpc::Channel> Channel(const std::string& address,
                                                std::shared_ptr<grpc::ChannelCredentials> creds) {
    return grpc::CreateChannel(address, creds);
  }

  static std::vector<std::string> PublicTlsFlags() {
    return {"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key")};
  }
  static std::vector<std::string> InternalFlags(const std::string& cert = "server") {
    return {"--internal_tls_cert_file=" + File(cert + ".pem"),
            "--internal_tls_key_file=" + File(cert + ".key"),
            "--internal_tls_ca_file=" + File("ca.pem")};
  }

  static TempDir* pki_;
  static std::string* error_;
};
TempDir* SecurityTest::pki_ = nullptr;
std::string* SecurityTest::error_ = nullptr;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Generated {
  grpc::Status status;
  std::vector<int32_t> ids;
};

// A short call: a refused handshake must fail fast, not wait for a connection (scaled).
void SetShortDeadline(grpc::ClientContext& ctx, int seconds = 20) {
  ctx.set_deadline(ScaledDeadline(std::chrono::seconds(seconds)));
}

void Authorize(grpc::ClientContext& ctx, const std::string& token) {
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
}

v1::GenerateRequest GreedyRequest(int i) {
  v1::GenerateRequest req;
  req.mutable_token_ids()->add_ids(1);
  for (int t = 1; t < 5 + 23 * i; ++t) req.mutable_token_ids()->add_ids(3 + (t * 13 + i) % 500);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(6 + 3 * i);
  req.mutable_sampling()->set_ignore_eos(true);
  const v1::PruningOptions::Method methods[] = {v1::PruningOptions::FULL, v1::PruningOptions::CLAA,
                                                v1::PruningOptions::FASTKV,
                                                v1::PruningOptions::GEMFILTER};
  req.mutable_pruning()->set_method(methods[i % 4]);
  req.mutable_pruning()->set_keep_ratio(0.3f);
  return req;
}

Generated Generate(std::shared_ptr<grpc::Channel> channel, const v1::GenerateRequest& request,
                   const std::string& token = "") {
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  SetShortDeadline(ctx, 120);
  Authorize(ctx, token);
  auto reader = stub->Generate(&ctx, request);
  Generated out;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      out.ids.insert(out.ids.end(), response.chunk().token_ids().begin(),
                     response.chunk().token_ids().end());
    }
  }
  out.status = reader->Finish();
  return out;
}

std::string Describe(const grpc::Status& s) {
  return std::to_string(s.error_code()) + ": " + s.error_message();
}

TEST_F(SecurityTest, HelpExplainsTheSecurityFlags) {
  auto [code, out] = RunToExit({CLAA_SERVER_BINARY, "--help"});
  for (const char* flag :
       {"--tls_cert_file", "--tls_key_file", "--auth_token_file", "--internal_tls_cert_file",
        "--internal_tls_key_file", "--internal_tls_ca_file", "--internal_tls_server_name",
        "--model_root"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(out.find("'authorization: Bearer <token>'"), std::string::npos);
  EXPECT_NE(out.find("grpc.health.v1.Health stays"), std::string::npos);
  EXPECT_NE(out.find("metrics port is always plaintext"), std::string::npos);
}

TEST_F(SecurityTest, PublicTlsPortServesOnlyClientsThatTrustItsCa) {
  Server server;
  ASSERT_TRUE(server.Start(PublicTlsFlags())) << server.log();
  EXPECT_NE(server.log().find("public port: TLS, no authentication"), std::string::npos);

  for (const std::string& target : {server.address(), server.localhost()}) {
    Generated ok = Generate(Channel(target, Tls("ca")), GreedyRequest(0));
    EXPECT_TRUE(ok.status.ok()) << target << " " << Describe(ok.status);
    EXPECT_EQ(ok.ids.size(), 6u);
  }
  Generated plaintext =
      Generate(Channel(server.address(), grpc::InsecureChannelCredentials()), GreedyRequest(0));
  EXPECT_EQ(plaintext.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(plaintext.status);
  // A client that trusts another CA does not accept the server's certificate.
  Generated rogue = Generate(Channel(server.address(), Tls("rogue_ca")), GreedyRequest(0));
  EXPECT_EQ(rogue.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(rogue.status);
}

TEST_F(SecurityTest, BearerTokenGuardsEveryPublicServiceButHealthOverTls) {
  Server server;
  ASSERT_TRUE(server.Start(Concat(PublicTlsFlags(), {"--auth_token_file=" + File("token")})))
      << server.log();
  EXPECT_NE(server.log().find("public port: TLS, bearer token required"), std::string::npos);
  auto channel = Channel(server.address(), Tls("ca"));

  Generated missing = Generate(channel, GreedyRequest(1));
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.status.error_message().find("authorization: Bearer <token>"),
            std::string::npos)
      << Describe(missing.status);
  EXPECT_TRUE(missing.ids.empty());
  Generated wrong = Generate(channel, GreedyRequest(1), "not-the-token");
  EXPECT_EQ(wrong.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.status.error_message(), "invalid bearer token");
  Generated prefix = Generate(channel, GreedyRequest(1), std::string(kToken).substr(0, 8));
  EXPECT_EQ(prefix.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  Generated right = Generate(channel, GreedyRequest(1), kToken);
  EXPECT_TRUE(right.status.ok()) << Describe(right.status);
  EXPECT_EQ(right.ids.size(), 9u);

  {  // Unary Generation RPCs too.
    grpc::ClientContext ctx;
    SetShortDeadline(ctx);
    v1::ModelInfo info;
    grpc::Status s = v1::Generation::NewStub(channel)->GetModelInfo(
        &ctx, v1::GetModelInfoRequest(), &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // claa.v1.Prefill (Score) is guarded the same way.
  auto prefill = v1::Prefill::NewStub(channel);
  v1::ScoreRequest score;
  score.mutable_token_ids()->add_ids(1);
  score.mutable_token_ids()->add_ids(40);
  score.add_continuations()->mutable_token_ids()->add_ids(41);
  for (const std::string& token : {std::string(), std::string(kToken)}) {
    grpc::ClientContext ctx;
    SetShortDeadline(ctx);
    Authorize(ctx, token);
    v1::ScoreResponse response;
    grpc::Status s = prefill->Score(&ctx, score, &response);
    if (token.empty()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(s);
    } else {
      EXPECT_TRUE(s.ok()) << Describe(s);
      EXPECT_EQ(response.scores_size(), 1);
    }
  }
  // Health checks stay open, for probes that hold no secret.
  grpc::ClientContext ctx;
  SetShortDeadline(ctx);
  grpc::health::v1::HealthCheckResponse health;
  grpc::Status s = grpc::health::v1::Health::NewStub(channel)->Check(
      &ctx, grpc::health::v1::HealthCheckRequest(), &health);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SecurityTest, BearerTokenAlsoGuardsAPlaintextPortBehindATlsProxy) {
  Server server;
  ASSERT_TRUE(server.Start({"--auth_token_file=" + File("token")})) << server.log();
  EXPECT_NE(server.log().find("public port: plaintext, bearer token required"),
            std::string::npos);
  auto channel = Channel(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(Generate(channel, GreedyRequest(0)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate(channel, GreedyRequest(0), "wrong").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  Generated right = Generate(channel, GreedyRequest(0), kToken);
  EXPECT_TRUE(right.status.ok()) << Describe(right.status);
}

// Router (public TLS + token) -> 1 prefill + 1 decode worker, all internal traffic (router to
// workers, decode worker's KV fetch from the prefill worker) over mutual TLS: the same greedy
// tokens as a plaintext --role=all server, for every pruning method.
TEST_F(SecurityTest, InternalMutualTlsClusterMatchesPlaintextOutput) {
  Server reference, prefill, decode, router;
  ASSERT_TRUE(reference.Start({})) << reference.log();
  ASSERT_TRUE(prefill.Start(Concat({"--role=prefill"}, InternalFlags()))) << prefill.log();
  ASSERT_TRUE(decode.Start(Concat({"--role=decode"}, InternalFlags()))) << decode.log();
  EXPECT_NE(prefill.log().find("internal port: mutual TLS"), std::string::npos);
  ASSERT_TRUE(router.Start(Concat(Concat({"--role=router",
                                          "--prefill_workers=" + prefill.address(),
                                          "--decode_workers=" + decode.address(),
                                          "--auth_token_file=" + File("token")},
                                         PublicTlsFlags()),
                                  InternalFlags())))
      << router.log();
  EXPECT_NE(router.log().find("internal channels: mutual TLS"), std::string::npos);

  auto plain = Channel(reference.address(), grpc::InsecureChannelCredentials());
  auto secure = Channel(router.address(), Tls("ca"));
  for (int i = 0; i < 8; ++i) {
    Generated want = Generate(plain, GreedyRequest(i));
    Generated got = Generate(secure, GreedyRequest(i), kToken);
    ASSERT_TRUE(want.status.ok()) << Describe(want.status);
    ASSERT_TRUE(got.status.ok()) << "request " << i << ": " << Describe(got.status);
    EXPECT_EQ(got.ids, want.ids) << "request " << i;
    EXPECT_EQ(got.ids.size(), size_t(6 + 3 * i));
  }
}

// A worker's port answers nothing (health included) to a client without a certificate signed
// by the internal CA: the handshake fails, so the call ends UNAVAILABLE.
TEST_F(SecurityTest, WorkerPortsRefuseClientsWithoutACertificateFromTheInternalCa) {
  Server prefill, decode;
  ASSERT_TRUE(prefill.Start(Concat({"--role=prefill"}, InternalFlags()))) << prefill.log();
  ASSERT_TRUE(decode.Start(Concat({"--role=decode"}, InternalFlags()))) << decode.log();
  struct Client {
    const char* what;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    bool admitted;
  };
  const std::vector<Client> clients = {
      {"plaintext", grpc::InsecureChannelCredentials(), false},
      {"TLS without a client certificate", Tls("ca"), false},
      {"a client certificate from the rogue CA", Tls("ca", "rogue_client"), false},
      {"a client certificate from the internal CA", Tls("ca", "client"), true},
  };
  for (const Client& c : clients) {
    auto prefill_channel = Channel(prefill.address(), c.creds);
    auto decode_channel = Channel(decode.address(), c.creds);
    internal::v1::WorkerLoad load;
    {
      grpc::ClientContext ctx;
      SetShortDeadline(ctx);
      grpc::Status s = internal::v1::PrefillWorker::NewStub(prefill_channel)
                           ->GetLoad(&ctx, internal::v1::LoadRequest(), &load);
      EXPECT_EQ(s.error_code(), c.admitted ? grpc::StatusCode::OK : grpc::StatusCode::UNAVAILABLE)
          << "prefill GetLoad, " << c.what << ": " << Describe(s);
    }
    {
      grpc::ClientContext ctx;
      SetShortDeadline(ctx);
      grpc::Status s = internal::v1::DecodeWorker::NewStub(decode_channel)
                           ->GetLoad(&ctx, internal::v1::LoadRequest(), &load);
      EXPECT_EQ(s.error_code(), c.admitted ? grpc::StatusCode::OK : grpc::StatusCode::UNAVAILABLE)
          << "decode GetLoad, " << c.what << ": " << Describe(s);
    }
    {
      grpc::ClientContext ctx;
      SetShortDeadline(ctx);
      internal::v1::FetchKvRequest fetch;
      fetch.set_ticket_id("no-such-ticket");
      auto reader = internal::v1::PrefillWorker::NewStub(prefill_channel)->FetchKv(&ctx, fetch);
      internal::v1::KvChunk chunk;
      while (reader->Read(&chunk)) {
      }
      grpc::Status s = reader->Finish();
      // Admitted: the ticket does not exist (NOT_FOUND), but the call reached the service.
      EXPECT_EQ(s.error_code() == grpc::StatusCode::UNAVAILABLE, !c.admitted)
          << "prefill FetchKv, " << c.what << ": " << Describe(s);
    }
    {
      grpc::ClientContext ctx;
      SetShortDeadline(ctx);
      grpc::health::v1::HealthCheckResponse health;
      grpc::Status s = grpc::health::v1::Health::NewStub(prefill_channel)
                           ->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &health);
      EXPECT_EQ(s.error_code(), c.admitted ? grpc::StatusCode::OK : grpc::StatusCode::UNAVAILABLE)
          << "health, " << c.what << ": " << Describe(s);
    }
  }

  // A router without the internal credentials finds no usable worker.
  Server router;
  ASSERT_TRUE(router.Start({"--role=router", "--prefill_workers=" + prefill.address(),
                            "--decode_workers=" + decode.address()}))
      << router.log();
  Generated refused =
      Generate(Channel(router.address(), grpc::InsecureChannelCredentials()), GreedyRequest(0));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(refused.status);
  EXPECT_NE(refused.status.error_message().find(prefill.address()), std::string::npos)
      << Describe(refused.status);
}

// One certificate for every worker (SAN DNS:claa-worker, no IP): clients must be told the name.
TEST_F(SecurityTest, SharedWorkerCertificateNeedsTheServerNameOverride) {
  Server prefill, decode;
  ASSERT_TRUE(prefill.Start(Concat({"--role=prefill"}, InternalFlags("worker")))) << prefill.log();
  ASSERT_TRUE(decode.Start(Concat({"--role=decode", "--internal_tls_server_name=claa-worker"},
                                  InternalFlags("worker"))))
      << decode.log();
  const std::vector<std::string> workers = {"--role=router",
                                            "--prefill_workers=" + prefill.address(),
                                            "--decode_workers=" + decode.address()};
  Server named, unnamed;
  ASSERT_TRUE(named.Start(Concat(Concat(workers, {"--internal_tls_server_name=claa-worker"}),
                                 InternalFlags("worker"))))
      << named.log();
  ASSERT_TRUE(unnamed.Start(Concat(workers, InternalFlags("worker")))) << unnamed.log();
  auto plain = grpc::InsecureChannelCredentials();
  Generated ok = Generate(Channel(named.address(), plain), GreedyRequest(2));
  EXPECT_TRUE(ok.status.ok()) << Describe(ok.status);
  EXPECT_EQ(ok.ids.size(), 12u);
  // 127.0.0.1 is not a name the certificate carries.
  Generated refused = Generate(Channel(unnamed.address(), plain), GreedyRequest(2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << Describe(refused.status);
}

TEST_F(SecurityTest, StartUpRefusesIncompleteOrWrongSecurityFlags) {
  const std::string missing = File("missing.pem");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert_file=" + File("server.pem")},
       "--tls_cert_file and --tls_key_file go together"},
      {{"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + missing},
       "--tls_key_file " + missing + ": cannot be read"},
      {{"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("client.key")},
       "--tls_key_file " + File("client.key") + " is not the key of the certificate in "
       "--tls_cert_file " + File("server.pem")},
      {{"--auth_token_file=" + missing}, "--auth_token_file " + missing + ": cannot be read"},
      {{"--role=prefill", "--auth_token_file=" + File("token")},
       "--role=prefill serves only internal services"},
      {{"--role=decode", "--internal_tls_cert_file=" + File("server.pem")},
       "internal mutual TLS needs all of"},
      {Concat({"--role=prefill", "--internal_tls_ca_file=" + missing},
              {"--internal_tls_cert_file=" + File("server.pem"),
               "--internal_tls_key_file=" + File("server.key")}),
       "--internal_tls_ca_file " + missing + ": cannot be read"},
  };
  for (const Case& c : cases) {
    auto [code, out] = RunToExit(
        Concat({CLAA_SERVER_BINARY, "--port=0", "--metrics_port=-1"}, c.args));
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("claa-server: " + c.message), std::string::npos) << out;
    EXPECT_EQ(out.find("listening on"), std::string::npos) << out;
  }
}

TEST_F(SecurityTest, ModelRootConfinesModelPaths) {
  TempDir dir;
  const fs::path source_model = fs::path(CLAA_SOURCE_DIR) / "tests/models/claa-retrieval";
  ASSERT_TRUE(fs::exists(source_model / "config.json"));
  const fs::path root = dir.path() / "models";
  fs::create_directories(root / "cache");
  // A real model inside the root, and one in a sibling whose name has the root as prefix.
  fs::copy(source_model, root / "retrieval", fs::copy_options::recursive);
  fs::create_directories(dir.path() / "models2");
  fs::copy(source_model, dir.path() / "models2/retrieval", fs::copy_options::recursive);
  fs::create_directory_symlink(source_model, root / "link_out");
  fs::create_directory(root / "half_linked");
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy(source_model / f, root / "half_linked" / f);
  }
  fs::create_symlink(source_model / "tokenizer.json", root / "half_linked/tokenizer.json");

  const std::string r = root.string();
  const std::string canonical_root = fs::canonical(root).string();
  auto refused = [&](const std::vector<std::string>& args, const std::string& message) {
    auto [code, out] = RunToExit(Concat(
        {CLAA_SERVER_BINARY, "--port=0", "--metrics_port=-1", "--model_root=" + r}, args));
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find(message), std::string::npos) << "want: " << message << "\ngot: " << out;
    EXPECT_NE(out.find("outside --model_root " + canonical_root), std::string::npos) << out;
  };
  refused({"--model=" + source_model.string()}, "--model " + source_model.string());
  refused({"--model=" + r + "/../models2/retrieval"},
          "--model " + r + "/../models2/retrieval (resolves to " +
              fs::canonical(dir.path() / "models2/retrieval").string() + ")");
  refused({"--model=" + r + "2/retrieval"}, "--model " + r + "2/retrieval");
  refused({"--model=" + r + "/link_out"},
          "(resolves to " + fs::canonical(source_model).string() + ")");
  refused({"--model=" + r + "/half_linked"}, "half_linked/tokenizer.json");
  refused({"--attn_cache_dir=" + dir.path().string() + "/cache"}, "--attn_cache_dir");
  refused({"--attn_cache_projector=/etc/passwd"}, "--attn_cache_projector /etc/passwd");
  {  // --role=router reads the model's tokenizer: confined too.
    auto [code, out] = RunToExit({CLAA_SERVER_BINARY, "--port=0", "--metrics_port=-1",
                                  "--model_root=" + r, "--model=" + source_model.string(),
                                  "--role=router", "--prefill_workers=127.0.0.1:1",
                                  "--decode_workers=127.0.0.1:2"});
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("outside --model_root"), std::string::npos) << out;
  }

  // Inside the root (here through a trailing "/." and a symlinked root) it serves.
  fs::create_directory_symlink(root, dir.path() / "root_link");
  Server server;
  ASSERT_TRUE(server.Start({"--model_root=" + (dir.path() / "root_link").string(),
                            "--model=" + r + "/retrieval/.", "--attn_cache_dir=" + r + "/cache"}))
      << server.log();
  Generated ok =
      Generate(Channel(server.address(), grpc::InsecureChannelCredentials()), GreedyRequest(0));
  EXPECT_TRUE(ok.status.ok()) << Describe(ok.status);
}

TEST_F(SecurityTest, LoadgenAndPythonClientReachATlsServerWithAToken) {
  Server server;
  ASSERT_TRUE(server.Start(Concat(PublicTlsFlags(), {"--auth_token_file=" + File("token")})))
      << server.log();
  const std::vector<std::string> loadgen = {
      CLAA_LOADGEN_BINARY,
      "--target=" + server.localhost(),
      "--num_prompts=4",
      "--random_input_len=16",
      "--random_output_len=4",
      "--connect_timeout_s=" + ::claa::testing::ScaledSecondsFlag(20),
      "--tls_ca_file=" + File("ca.pem")};
  {
    auto [code, out] = RunToExit(Concat(loadgen, {"--auth_token_file=" + File("token")}));
    EXPECT_EQ(code, 0) << out;
    // report.cc pads names to 40 columns.
    EXPECT_NE(out.find("Successful requests:" + std::string(21, ' ') + "4\n"), std::string::npos)
        << out;
  }
  {  // The token from the environment instead of a file.
    auto [code, out] = RunToExit(loadgen, {std::string("CLAA_AUTH_TOKEN=") + kToken});
    EXPECT_EQ(code, 0) << out;
  }
  {
    auto [code, out] = RunToExit(loadgen);
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("UNAUTHENTICATED"), std::string::npos) << out;
  }

  const std::vector<std::string> python = {
      "/usr/bin/python3", CLAA_PYTHON_CLIENT, "--target", server.localhost(), "--cache_dir",
      CLAA_PYTHON_CACHE_DIR, "--tls_ca_file", File("ca.pem")};
  const std::vector<std::string> generate = {"generate", "--token_ids", "1,40,41",
                                             "--max_tokens", "5", "--temperature", "0",
                                             "--ignore_eos", "--json"};
  {
    auto [code, out] =
        RunToExit(Concat(Concat(python, {"--auth_token_file", File("token")}), generate));
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("\"finish_reason\": \"LENGTH\""), std::string::npos) << out;
  }
  {
    auto [code, out] = RunToExit(Concat(python, generate));
    EXPECT_EQ(code, 2) << out;
    EXPECT_NE(out.find("UNAUTHENTICATED"), std::string::npos) << out;
  }
  {  // Health needs no token.
    auto [code, out] = RunToExit(Concat(python, {"health"}));
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("SERVING"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace claa
