// Faults under load, with real processes on loopback: a router, two prefill and two decode
// workers serving the built-in model (so these tests need no ../shared data).
//   - kill -9 of a decode worker, then of a prefill worker, under load from client threads, and
//     a restart on the same port;
//   - a KV transfer cut halfway (a TCP proxy in front of each prefill worker's fetch address
//     closes the connection mid-transfer);
//   - a stopped (SIGSTOP) decode worker: deadlines, and the health probe routing around it;
//   - a full queue (--max_waiting) on a --role=all server.
// Every request must end with exactly one terminal status (OK with one `complete`, or a clear
// error), the router must route around the fault and back, and no KV blocks or leases may stay
// behind (checked on the workers' gauges well before the 30 s lease expiry could hide a leak).
// Each test prints a "[fault]" line with the requests sent and faults injected, which
// docs/reliability.md quotes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace claa {
namespace {

using ::claa::testing::CallOutcome;
using ::claa::testing::Cluster;
using ::claa::testing::RunCall;
using ::claa::testing::RunningServer;
using ::claa::testing::Scaled;
using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

// Every duration here is a release-build figure; RunCall, WaitFor and Cluster::Drains scale
// it by CLAA_TEST_TIMEOUT_SCALE (timeout_scale.h), and the fixtures scale the servers' leases and
// router deadlines by the same factor.
// A call still open after this has hung: the fault left it without a terminal status.
constexpr seconds kCallDeadline(120);
// Leases run 30 s (--kv_lease_seconds): checking well within that catches a lease that only
// expiry would have freed.
constexpr seconds kDrainTimeout(20);
constexpr int kClientThreads = 4;
// Small KV caches keep four worker processes light on a CI machine.
const std::vector<std::string> kWorkerArgs = {"--kv_cache_mb=64"};

// Polls `done` until it holds or `timeout` (scaled) passes.
bool WaitFor(const std::function<bool()>& done, seconds timeout) {
  const auto end = Clock::now() + Scaled(timeout);
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// The built-in model: vocabulary 512, context 2048. Prompts of 8..127 tokens, 32..191 new tokens.
v1::GenerateRequest LoadRequest(int i, int prompt_tokens = 0, int max_tokens = 0) {
  v1::GenerateRequest req;
  req.set_request_id(absl::StrCat("load-", i));
  const int n = prompt_tokens > 0 ? prompt_tokens : 8 + (i * 37) % 120;
  req.mutable_token_ids()->add_ids(1);
  for (int t = 1; t < n; ++t) req.mutable_token_ids()->add_ids(3 + (t * 13 + i * 7) % 500);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_tokens(max_tokens > 0 ? max_tokens : 32 + (i * 53) % 160);
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

struct Sent {
  Clock::time_point start;
  CallOutcome outcome;
};

// Client threads sending LoadRequest()s back to back until Stop().
class Load {
 public:
  Load(v1::Generation::Stub& stub, int threads) : stub_(stub), threads_(threads) {}
  ~Load() { Stop(); }

  void Start() {
    for (int t = 0; t < threads_; ++t) {
      workers_.emplace_back([this] {
        while (!stop_.load()) {
          const int i = next_.fetch_add(1);
          Sent s{Clock::now(), RunCall(stub_, LoadRequest(i), kCallDeadline)};
          if (s.outcome.status.ok()) ++ok_;
          std::lock_guard<std::mutex> lock(mu_);
          sent_.push_back(std::move(s));
        }
      });
    }
  }
  // Stops sending, waits for the calls in flight and returns every outcome.
  std::vector<Sent> Stop() {
    stop_ = true;
    for (auto& w : workers_) w.join();
    workers_.clear();
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }
  int ok() const { return ok_.load(); }

 private:
  v1::Generation::Stub& stub_;
  const int threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> next_{0};
  std::atomic<int> ok_{0};
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::vector<Sent> sent_;
};

// Checks the terminal-status contract of each outcome and counts them by code: OK carries
// exactly one `complete`; any other end carries at most one `error`, has a code in `allowed`,
// and, for UNAVAILABLE, a message naming the worker. Prints the first message of each code.
std::map<grpc::StatusCode, int> CheckOutcomes(const std::vector<const CallOutcome*>& outcomes,
                                              const std::set<grpc::StatusCode>& allowed) {
  std::map<grpc::StatusCode, int> by_code;
  for (const CallOutcome* o : outcomes) {
    const grpc::StatusCode code = o->status.error_code();
    if (by_code[code]++ == 0 && code != grpc::StatusCode::OK) {
      std::cout << "[fault]   code " << code << ": " << o->status.error_message() << std::endl;
    }
    if (o->status.ok()) {
      EXPECT_EQ(o->terminals, 1);
      EXPECT_TRUE(o->complete.has_value() && !o->error.has_value());
      continue;
    }
    EXPECT_LE(o->terminals, 1) << o->status.error_message();
    EXPECT_FALSE(o->complete.has_value()) << o->status.error_message();
    EXPECT_TRUE(allowed.count(code) > 0)
        << "unexpected code " << code << ": " << o->status.error_message();
    if (code == grpc::StatusCode::UNAVAILABLE) {
      EXPECT_NE(o->status.error_message().find("worker"), std::string::npos)
          << o->status.error_message();
    }
  }
  return by_code;
}

std::vector<const CallOutcome*> Outcomes(const std::vector<Sent>& sent) {
  std::vector<const CallOutcome*> out;
  for (const Sent& s : sent) out.push_back(&s.outcome);
  return out;
}

std::string CodeCounts(const std::map<grpc::StatusCode, int>& by_code) {
  static const std::map<grpc::StatusCode, std::string> kNames = {
      {grpc::StatusCode::OK, "OK"},
      {grpc::StatusCode::UNAVAILABLE, "UNAVAILABLE"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"},
      {grpc::StatusCode::ABORTED, "ABORTED"},
      {grpc::StatusCode::CANCELLED, "CANCELLED"}};
  std::vector<std::string> parts;
  for (const auto& [code, n] : by_code) {
    auto it = kNames.find(code);
    parts.push_back(absl::StrCat(it != kNames.end() ? it->second : absl::StrCat("code ", code),
                                 " ", n));
  }
  return absl::StrJoin(parts, ", ");
}

int Total(const std::map<grpc::StatusCode, int>& by_code) {
  int n = 0;
  for (const auto& [code, count] : by_code) n += count;
  return n;
}

void Report(const std::string& test, const std::map<grpc::StatusCode, int>& by_code,
            const std::string& faults) {
  std::cout << "[fault] " << test << ": requests sent " << Total(by_code) << " ("
            << CodeCounts(by_code) << "); faults injected: " << faults << std::endl;
}

// Runs `n` LoadRequest()s at once (ids from first_id) and returns their outcomes.
std::vector<CallOutcome> Burst(v1::Generation::Stub& stub, int n, int first_id,
                               seconds deadline = kCallDeadline) {
  std::vector<CallOutcome> out(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { out[i] = RunCall(stub, LoadRequest(first_id + i), deadline); });
  }
  for (auto& t : threads) t.join();
  return out;
}

double Metric(RunningServer& s, const std::string& name) { return s.MetricValue(name).value_or(0); }

// Under load, `rounds` times: kill -9 of a decode or a prefill worker (worker 0, then 1, ...),
// two seconds without it, a restart on the same port, and a wait until the router uses the new
// process. Returns every outcome and when each worker was down.
struct KillRun {
  std::vector<Sent> sent;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> down;  // kill, restart
  // One short request sent right after each kill, from the test thread: whatever the load
  // threads happen to be doing (on a slow machine none of them may start a request in the
  // window), the router must serve it around the dead worker.
  std::vector<CallOutcome> probes;
};

KillRun KillAndRestartUnderLoad(Cluster& cluster, bool decode, int rounds) {
  // What shows that a worker works: a decode worker generates, a prefill worker prefills.
  const std::string work = decode ? "claa_generation_tokens_total" : "claa_prompt_tokens_total";
  Load load(cluster.router().stub(), kClientThreads);
  load.Start();
  KillRun run;
  EXPECT_TRUE(WaitFor([&] { return load.ok() >= 8; }, seconds(120))) << "no load got through";
  for (int round = 0; round < rounds; ++round) {
    const int index = round % 2;
    RunningServer& victim = decode ? cluster.decode(index) : cluster.prefill(index);
    // A decode worker is killed while it decodes, so that requests are mid-stream on it.
    EXPECT_TRUE(WaitFor([&] {
      return Metric(victim, decode ? "claa_num_requests_running" : work) > 0;
    }, seconds(60)));
    const Clock::time_point killed = Clock::now();
    victim.process().Kill(SIGKILL);
    // Load goes on without it for a while: the router must route around it.
    run.probes.push_back(
        RunCall(cluster.router().stub(), LoadRequest(900000 + round, 16, 8), kCallDeadline));
    std::this_thread::sleep_for(Scaled(seconds(2)));
    run.down.emplace_back(killed, Clock::now());
    EXPECT_TRUE(decode ? cluster.RestartDecode(index) : cluster.RestartPrefill(index));
    // The health probe puts it back into rotation: the fresh process does work.
    EXPECT_TRUE(WaitFor([&] { return Metric(victim, work) > 0; }, seconds(60)))
        << "the router never used restarted worker " << index;
  }
  run.sent = load.Stop();
  return run;
}

void CheckKillRun(const std::string& test, Cluster& cluster, const KillRun& run) {
  SCOPED_TRACE(test);
  std::map<grpc::StatusCode, int> by_code =
      CheckOutcomes(Outcomes(run.sent), {grpc::StatusCode::UNAVAILABLE});
  // Only calls in flight on a killed worker may fail: at most one per client thread and kill.
  EXPECT_LE(Total(by_code) - by_code[grpc::StatusCode::OK],
            kClientThreads * static_cast<int>(run.down.size()));
  int ok_while_down = 0;
  for (size_t k = 0; k < run.down.size(); ++k) {
    const auto& [killed, restarted] = run.down[k];
    const CallOutcome& probe = run.probes[k];
    ++by_code[probe.status.error_code()];
    EXPECT_TRUE(probe.status.ok()) << "a request sent right after kill " << k
                                   << " was not routed around: " << probe.status.error_message();
    EXPECT_EQ(probe.terminals, 1);
    int ok = probe.status.ok() ? 1 : 0;
    for (const Sent& s : run.sent) {
      ok += s.start > killed && s.start < restarted && s.outcome.status.ok();
    }
    ok_while_down += ok;
  }
  // After the restarts every worker takes requests again, and nothing is left behind.
  for (const CallOutcome& o : Burst(cluster.router().stub(), 8, 100000)) {
    ++by_code[o.status.error_code()];
    EXPECT_TRUE(o.status.ok()) << o.status.error_message();
    EXPECT_EQ(o.terminals, 1);
  }
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1}, kDrainTimeout))
      << "KV blocks, leases or requests left on a worker";
  EXPECT_EQ(Metric(cluster.router(), "claa_num_requests_running"), 0.0);
  Report(test, by_code,
         absl::StrCat(run.down.size(), " kill -9, each followed by a restart on the same port (",
                      ok_while_down, " requests served while a worker was down)"));
}

TEST(FaultTest, KilledDecodeWorkerUnderLoadIsRoutedAroundAndRejoins) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start("", kWorkerArgs));
  KillRun run = KillAndRestartUnderLoad(cluster, /*decode=*/true, /*rounds=*/2);
  CheckKillRun("kill -9 decode workers", cluster, run);
}

TEST(FaultTest, KilledPrefillWorkerUnderLoadIsRoutedAroundAndRejoins) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start("", kWorkerArgs));
  KillRun run = KillAndRestartUnderLoad(cluster, /*decode=*/false, /*rounds=*/2);
  CheckKillRun("kill -9 prefill workers", cluster, run);
}

// A loopback TCP proxy in front of a prefill worker's KV fetch address: the worker advertises
// the proxy (--advertise_address), so decode workers fetch through it while the router talks to
// the worker directly. Armed with N bytes, it closes the connection that carries the N-th byte
// from the worker, as a network failure would cut a transfer.
class CutProxy {
 public:
  ~CutProxy() { Stop(); }

  bool Listen() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    socklen_t len = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return false;
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
    return true;
  }
  int port() const { return port_; }
  void set_upstream_port(int port) { upstream_port_ = port; }

  // Cuts the connection carrying the `bytes`-th byte from the worker, counted from now; with
  // `repeat`, again every `bytes` after that.
  void Arm(int64_t bytes, bool repeat) {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = remaining_ = bytes;
    repeat_ = repeat;
  }
  int cuts() const { return cuts_.load(); }

  void Stop() {
    if (stop_.exchange(true)) return;
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // unblocks the pumps
    }
    for (auto& p : pumps_) p.join();
    close(listen_fd_);
  }

 private:
  void AcceptLoop() {
    while (!stop_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(upstream_port_.load()));
      inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(upstream);
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.insert(client);
      open_fds_.insert(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  static bool SendAll(int fd, const char* data, size_t n) {
    while (n > 0) {
      const ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  // Bytes from the worker; true when they complete the armed count (cut this connection).
  bool CountDownstream(int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (armed_ <= 0) return false;
    remaining_ -= n;
    if (remaining_ > 0) return false;
    if (repeat_) {
      remaining_ = armed_;
    } else {
      armed_ = 0;
    }
    return true;
  }

  void Pump(int client, int upstream) {
    std::vector<char> buf(1 << 16);
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    bool open = true;
    while (open && !stop_.load()) {
      if (poll(fds, 2, 100) < 0) break;
      for (int k = 0; k < 2 && open; ++k) {
        if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = read(fds[k].fd, buf.data(), buf.size());
        open = n > 0 && SendAll(k == 0 ? upstream : client, buf.data(), size_t(n));
        if (open && k == 1 && CountDownstream(n)) {
          ++cuts_;
          open = false;
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : {client, upstream}) {
      shutdown(fd, SHUT_RDWR);
      close(fd);
      open_fds_.erase(fd);
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> upstream_port_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> cuts_{0};
  std::thread acceptor_;
  std::mutex mu_;
  int64_t armed_ = 0, remaining_ = 0;  // under mu_
  bool repeat_ = false;
  std::set<int> open_fds_;
  std::vector<std::thread> pumps_;  // added by the acceptor only; joined after it stopped
};

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

TEST(FaultTest, KvTransferCutHalfwayFailsCleanlyOrIsRetried) {
  CutProxy proxies[2];
  for (CutProxy& p : proxies) ASSERT_TRUE(p.Listen());
  Cluster cluster;
  ASSERT_TRUE(cluster.Start("", kWorkerArgs, {}, [&](const std::string& role, int i) {
    return role == "prefill" ? std::vector<std::string>{absl::StrCat(
                                   "--advertise_address=127.0.0.1:", proxies[i].port())}
                             : std::vector<std::string>{};
  }));
  for (int i = 0; i < 2; ++i) proxies[i].set_upstream_port(PortOf(cluster.prefill(i).address()));
  int sent = 0;
  for (const CallOutcome& o : Burst(cluster.router().stub(), 4, 0)) {
    ++sent;
    ASSERT_TRUE(o.status.ok()) << "fetching through the proxy: " << o.status.error_message();
  }

  // 1900 prompt tokens: 4 layers x 1900 slots x 4 KV heads x 32 dims x (K + V) x 4 bytes =
  // 7.4 MiB of KV cache, sent as ~1 MiB chunks; every transfer is cut after 3 MiB. The router
  // tries the other decode worker (which fails the same way), then gives up with UNAVAILABLE
  // and releases the lease.
  const v1::GenerateRequest big = LoadRequest(7, /*prompt_tokens=*/1900, /*max_tokens=*/8);
  for (CutProxy& p : proxies) p.Arm(3 << 20, /*repeat=*/true);
  CallOutcome cut = RunCall(cluster.router().stub(), big, kCallDeadline);
  ++sent;
  std::map<grpc::StatusCode, int> by_code = CheckOutcomes({&cut}, {grpc::StatusCode::UNAVAILABLE});
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_NE(cut.status.error_message().find("KV cache"), std::string::npos)
      << cut.status.error_message();
  const int cuts_failing = proxies[0].cuts() + proxies[1].cuts();
  EXPECT_EQ(cuts_failing, 2) << "one cut per decode worker tried";
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1}, kDrainTimeout)) << "the cut transfer leaked";

  // Cut once: the retry on the other decode worker fetches the whole cache.
  for (CutProxy& p : proxies) p.Arm(3 << 20, /*repeat=*/false);
  CallOutcome retried = RunCall(cluster.router().stub(), big, kCallDeadline);
  ++sent;
  for (const auto& [code, n] : CheckOutcomes({&retried}, {})) by_code[code] += n;
  EXPECT_TRUE(retried.status.ok()) << retried.status.error_message();
  EXPECT_EQ(retried.ids.size(), 8u);
  const int cuts_total = proxies[0].cuts() + proxies[1].cuts();
  EXPECT_EQ(cuts_total, cuts_failing + 1);
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1}, kDrainTimeout)) << "the retried transfer leaked";
  for (CutProxy& p : proxies) p.Arm(0, false);

  // Service goes on.
  for (const CallOutcome& o : Burst(cluster.router().stub(), 4, 200)) {
    ++by_code[o.status.error_code()];
    EXPECT_TRUE(o.status.ok()) << o.status.error_message();
  }
  by_code[grpc::StatusCode::OK] += 4;  // the warm-up burst
  Report("KV transfer cut halfway", by_code,
         absl::StrCat(cuts_total, " connections cut mid-transfer (3 MiB of 7.4 MiB)"));
}

TEST(FaultTest, StoppedDecodeWorkerHitsDeadlinesAndIsRoutedAround) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start("", kWorkerArgs));
  // Long streams on both decode workers (ties go to the first, then the load counts spread
  // them), each with a 10 s deadline.
  constexpr int kLong = 4;
  std::vector<CallOutcome> longs(kLong);
  std::atomic<int> streaming{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kLong; ++i) {
    threads.emplace_back([&, i] {
      longs[i] = RunCall(cluster.router().stub(), LoadRequest(i, 16, 1500), seconds(10),
                         [&](int n) { streaming += n == 1; });
    });
  }
  const bool started = WaitFor([&] { return streaming.load() == kLong; }, seconds(60)) &&
                       WaitFor([&] {
                         return Metric(cluster.decode(0), "claa_num_requests_running") > 0;
                       }, seconds(10));
  const pid_t stopped = cluster.decode(0).process().pid();
  const Clock::time_point stopped_at = Clock::now();
  if (started) kill(stopped, SIGSTOP);
  // The health probe (GetLoad, 1 s deadline (scaled), five times a second) takes it out of
  // rotation.
  std::this_thread::sleep_for(Scaled(seconds(4)));
  std::vector<CallOutcome> during = Burst(cluster.router().stub(), 6, 1000, seconds(60));
  for (auto& t : threads) t.join();
  kill(stopped, SIGCONT);
  const double stopped_s = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  ASSERT_TRUE(started) << "the long requests did not stream on both decode workers";

  std::vector<const CallOutcome*> all;
  for (const CallOutcome& o : longs) all.push_back(&o);
  std::map<grpc::StatusCode, int> long_codes =
      CheckOutcomes(all, {grpc::StatusCode::DEADLINE_EXCEEDED});
  EXPECT_GE(long_codes[grpc::StatusCode::DEADLINE_EXCEEDED], 1)
      << "the stopped worker's streams end at their deadline";
  for (const CallOutcome& o : during) {
    EXPECT_TRUE(o.status.ok()) << "routed to the stopped worker? " << o.status.error_message();
    all.push_back(&o);
  }
  // Resumed, it notices the cancelled calls and frees their blocks, and rejoins the rotation.
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1}, kDrainTimeout));
  const double before = Metric(cluster.decode(0), "claa_generation_tokens_total");
  std::vector<CallOutcome> after;
  int next_id = 2000;
  EXPECT_TRUE(WaitFor([&] {
    for (CallOutcome& o : Burst(cluster.router().stub(), 4, next_id)) after.push_back(o);
    next_id += 4;
    return Metric(cluster.decode(0), "claa_generation_tokens_total") > before;
  }, seconds(60))) << "the resumed worker never got requests again";
  for (const CallOutcome& o : after) {
    EXPECT_TRUE(o.status.ok()) << o.status.error_message();
    all.push_back(&o);
  }
  EXPECT_TRUE(cluster.Drains({0, 1}, {0, 1}, kDrainTimeout));
  Report("SIGSTOP decode worker", CheckOutcomes(all, {grpc::StatusCode::DEADLINE_EXCEEDED}),
         absl::StrCat("1 SIGSTOP for ", std::lround(stopped_s), " s, then SIGCONT"));
}

TEST(FaultTest, FullQueueAnswersResourceExhaustedAndRecovers) {
  RunningServer server;
  ASSERT_TRUE(server.Start({"--max_waiting=2", "--max_running=1"}));
  // One long request runs (max_running 1); the next two wait; the rest find the queue full.
  std::atomic<bool> streaming{false};
  v1::GenerateRequest long_request = LoadRequest(0, 8, 2000);
  long_request.set_request_id("long");
  CallOutcome long_outcome;
  std::thread long_thread([&] {
    long_outcome =
        RunCall(server.stub(), long_request, kCallDeadline, [&](int) { streaming = true; });
  });
  ASSERT_TRUE(WaitFor([&] { return streaming.load(); }, seconds(60)));
  constexpr int kExcess = 8;
  std::vector<CallOutcome> excess(kExcess);
  std::vector<std::thread> threads;
  for (int i = 0; i < kExcess; ++i) {
    threads.emplace_back([&, i] {
      excess[i] = RunCall(server.stub(), LoadRequest(10 + i, 8, 8), kCallDeadline);
    });
  }
  // The refusals come back at once, while the long request still holds the only running slot.
  ASSERT_TRUE(WaitFor([&] { return Metric(server, "claa_num_requests_waiting") == 2; },
                      seconds(60)));
  // Time for the other excess calls to arrive and be refused before the abort frees the slot.
  std::this_thread::sleep_for(Scaled(std::chrono::milliseconds(500)));
  grpc::ClientContext ctx;
  v1::AbortRequest abort;
  abort.set_request_id("long");
  v1::AbortResponse aborted;
  ASSERT_TRUE(server.stub().Abort(&ctx, abort, &aborted).ok());
  for (auto& t : threads) t.join();
  long_thread.join();

  std::vector<const CallOutcome*> all = {&long_outcome};
  for (const CallOutcome& o : excess) all.push_back(&o);
  std::map<grpc::StatusCode, int> by_code =
      CheckOutcomes(all, {grpc::StatusCode::RESOURCE_EXHAUSTED});
  EXPECT_EQ(by_code[grpc::StatusCode::RESOURCE_EXHAUSTED], kExcess - 2);
  EXPECT_EQ(by_code[grpc::StatusCode::OK], 3) << "the long one (aborted) and the two queued";
  for (const CallOutcome& o : excess) {
    if (o.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      EXPECT_NE(o.status.error_message().find("queue is full (2 waiting)"), std::string::npos)
          << o.status.error_message();
      EXPECT_EQ(o.chunks, 0);
    } else {
      EXPECT_EQ(o.ids.size(), 8u);
    }
  }
  ASSERT_TRUE(long_outcome.complete.has_value());
  EXPECT_EQ(long_outcome.complete->finish_reason(), v1::ABORT);
  // Recovered: requests are served again, and the gauges are back at zero.
  for (int i = 0; i < 4; ++i) {
    CallOutcome o = RunCall(server.stub(), LoadRequest(100 + i, 8, 8), kCallDeadline);
    ++by_code[o.status.error_code()];
    EXPECT_TRUE(o.status.ok()) << o.status.error_message();
  }
  EXPECT_TRUE(WaitFor([&] {
    return Metric(server, "claa_num_requests_waiting") == 0 &&
           Metric(server, "claa_num_requests_running") == 0 &&
           Metric(server, "claa_kv_cache_usage_perc") == 0;
  }, seconds(20)));
  Report("full queue (--max_waiting=2)", by_code,
         absl::StrCat(kExcess, " requests against a full queue"));
}

}  // namespace
}  // namespace claa
