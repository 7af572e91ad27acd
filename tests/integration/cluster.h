#ifndef CLAA_TESTS_INTEGRATION_CLUSTER_H_
#define CLAA_TESTS_INTEGRATION_CLUSTER_H_

// Shared by the disaggregated, fault and bad-input integration tests: a router with two prefill
// and two decode workers as separate claa-server processes on loopback (workers can be killed,
// stopped and restarted on their old port), one Generate call's outcome with a count of its
// terminal messages, and a process's resident memory from /proc.
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/server_fixture.h"
#include "tests/integration/timeout_scale.h"

namespace claa::testing {

// VmRSS of a live process in KiB (/proc/PID/status); nullopt when it is gone.
inline std::optional<int64_t> ProcessRssKb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return std::nullopt;
}

// What one Generate call produced. `terminals` counts `complete` and `error` messages: the API
// promises exactly one per stream that ends OK, at most one otherwise.
struct CallOutcome {
  std::vector<int32_t> ids;
  int chunks = 0;
  int terminals = 0;
  std::optional<v1::Complete> complete;
  std::optional<v1::Error> error;
  grpc::Status status;
};

// Runs one Generate call to its end (deadline `deadline`, a release-build figure: scaled by
// TimeoutScale()); on_chunk(n) runs after the n-th chunk.
inline CallOutcome RunCall(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                           std::chrono::seconds deadline,
                           const std::function<void(int)>& on_chunk = {}) {
  CallOutcome r;
  grpc::ClientContext ctx;
  ctx.set_deadline(ScaledDeadline(deadline));
  auto reader = stub.Generate(&ctx, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      r.ids.insert(r.ids.end(), response.chunk().token_ids().begin(),
                   response.chunk().token_ids().end());
      ++r.chunks;
      if (on_chunk) on_chunk(r.chunks);
    } else if (response.has_complete()) {
      r.complete = response.complete();
      ++r.terminals;
    } else if (response.has_error()) {
      r.error = response.error();
      ++r.terminals;
    }
  }
  r.status = reader->Finish();
  return r;
}

// Router + 2 prefill + 2 decode workers.
class Cluster {
 public:
  // Extra flags of one worker: per_worker(role, index), role "prefill" or "decode".
  using PerWorkerArgs = std::function<std::vector<std::string>(const std::string&, int)>;

  // `model` is the --model value ("" serves the built-in demo model). worker_args go to every
  // worker (and to restarted ones), router_args to the router.
  bool Start(const std::string& model, const std::vector<std::string>& worker_args = {},
             const std::vector<std::string>& router_args = {},
             const PerWorkerArgs& per_worker = {}) {
    base_ = {"--model=" + model};
    base_.insert(base_.end(), worker_args.begin(), worker_args.end());
    auto extra = [&per_worker](const std::string& role, int i) {
      return per_worker ? per_worker(role, i) : std::vector<std::string>{};
    };
    for (int i = 0; i < 2; ++i) {
      if (!StartWorker(&prefill_[i], "prefill", extra("prefill", i))) return false;
    }
    for (int i = 0; i < 2; ++i) {
      if (!StartWorker(&decode_[i], "decode", extra("decode", i))) return false;
    }
    std::vector<std::string> args = {"--model=" + model, "--role=router",
                                     "--prefill_workers=" + prefill_[0].address() + "," +
                                         prefill_[1].address(),
                                     "--decode_workers=" + decode_[0].address() + "," +
                                         decode_[1].address()};
    args.insert(args.end(), router_args.begin(), router_args.end());
    return router_.Start(args);
  }
  RunningServer& router() { return router_; }
  RunningServer& prefill(int i) { return prefill_[i]; }
  RunningServer& decode(int i) { return decode_[i]; }

  // Starts a killed worker again on its old address (the router's list still names it), with
  // extra_args after the cluster's worker args.
  bool RestartPrefill(int i, const std::vector<std::string>& extra_args = {}) {
    return Restart(&prefill_[i], "prefill", extra_args);
  }
  bool RestartDecode(int i, const std::vector<std::string>& extra_args = {}) {
    return Restart(&decode_[i], "decode", extra_args);
  }

  // Polls until every worker's KV usage gauge reads zero (leases and requests all freed).
  bool KvUsageDrains(std::vector<int> decode_alive = {0, 1}) {
    return Poll({0, 1}, decode_alive, std::chrono::seconds(10), /*everything=*/false);
  }

  // Polls (up to `timeout`, scaled by TimeoutScale() as the leases are) until, on the listed
  // live workers, the KV usage and running / waiting gauges and the prefill workers' leased
  // tickets all read zero. False on timeout.
  bool Drains(const std::vector<int>& prefill_alive, const std::vector<int>& decode_alive,
              std::chrono::seconds timeout = std::chrono::seconds(30)) {
    return Poll(prefill_alive, decode_alive, timeout, /*everything=*/true);
  }

 private:
  // everything: also running / waiting and (prefill) leased tickets, not only KV usage.
  bool Poll(const std::vector<int>& prefill_alive, const std::vector<int>& decode_alive,
            std::chrono::seconds timeout, bool everything) {
    auto idle = [everything](RunningServer& s, bool prefill) {
      if (s.MetricValue("claa_kv_cache_usage_perc").value_or(1) != 0.0) return false;
      if (!everything) return true;
      return s.MetricValue("claa_num_requests_running").value_or(1) == 0.0 &&
             s.MetricValue("claa_num_requests_waiting").value_or(1) == 0.0 &&
             (!prefill || s.MetricValue("claa_kv_leased_tickets").value_or(1) == 0.0);
    };
    const auto end = std::chrono::steady_clock::now() + Scaled(timeout);
    do {
      bool zero = true;
      for (int p : prefill_alive) zero &= idle(prefill_[p], true);
      for (int d : decode_alive) zero &= idle(decode_[d], false);
      if (zero) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < end);
    return false;
  }

  bool StartWorker(RunningServer* w, const std::string& role,
                   const std::vector<std::string>& extra_args) {
    std::vector<std::string> args = base_;
    args.push_back("--role=" + role);
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return w->Start(args);
  }

  bool Restart(RunningServer* w, const std::string& role,
               const std::vector<std::string>& extra_args) {
    const std::string address = w->address();
    w->process().Kill(SIGKILL);  // a no-op when it is already dead
    // A later --port overrides RunningServer's --port=0.
    std::vector<std::string> args = extra_args;
    args.push_back("--port=" + address.substr(address.rfind(':') + 1));
    return StartWorker(w, role, args) && w->address() == address;
  }

  std::vector<std::string> base_;
  RunningServer router_, prefill_[2], decode_[2];
};

}  // namespace claa::testing

#endif  // CLAA_TESTS_INTEGRATION_CLUSTER_H_
