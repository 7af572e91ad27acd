#ifndef CLAA_TESTS_INTEGRATION_SERVER_FIXTURE_H_
#define CLAA_TESTS_INTEGRATION_SERVER_FIXTURE_H_

// Runs a real claa-server on free loopback ports and connects a gRPC channel to it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "claa/v1/claa.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/child_process.h"
#include "tests/integration/timeout_scale.h"

namespace claa::testing {

// GET /metrics from 127.0.0.1:port over a plain socket (the exposition format is text).
inline std::string FetchMetricsText(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string body;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return body;
}

// Value of the first sample line of `text` starting with `prefix` (name plus labels), or nullopt.
inline std::optional<double> MetricValueIn(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t eol = text.find('\n', pos);
      const std::string line = text.substr(pos, eol - pos);
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
    pos += prefix.size();
  }
  return std::nullopt;
}

class RunningServer {
 public:
  // Starts claa-server with --port=0 --metrics_port=0 --device=cpu, the scaled deadlines of
  // ServerTimeoutFlags() and `extra_args` (a later flag overrides: the CPU path's outputs are
  // exact, so the tests pin it even on a GPU host); false on failure.
  bool Start(const std::vector<std::string>& extra_args) {
    std::vector<std::string> argv = {CLAA_SERVER_BINARY, "--port=0", "--metrics_port=0",
                                     "--device=cpu"};
    const std::vector<std::string> timeouts = ServerTimeoutFlags();
    argv.insert(argv.end(), timeouts.begin(), timeouts.end());
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    if (!process_.Start(argv)) return false;
    auto metrics = process_.WaitForLine("metrics on http://");
    auto listening = process_.WaitForLine("listening on ");
    if (!metrics || !listening) return false;
    // "... metrics on http://127.0.0.1:PORT/metrics"
    const std::string m = metrics->substr(metrics->rfind(':') + 1);
    metrics_port_ = std::stoi(m.substr(0, m.find('/')));
    address_ = listening->substr(listening->find("listening on ") + 13);
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::Generation::NewStub(channel_);
    return channel_->WaitForConnected(ScaledDeadline(std::chrono::seconds(30)));
  }

  v1::Generation::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  ChildProcess& process() { return process_; }

  // GET /metrics (the exposition format is text).
  std::string FetchMetrics() const { return FetchMetricsText(metrics_port_); }

  // Value of the first sample line starting with `prefix` (name plus labels), or nullopt.
  std::optional<double> MetricValue(const std::string& prefix) const {
    return MetricValueIn(FetchMetrics(), prefix);
  }

 private:
  ChildProcess process_;
  std::string address_;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

}  // namespace claa::testing

#endif  // CLAA_TESTS_INTEGRATION_SERVER_FIXTURE_H_
