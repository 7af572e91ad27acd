#include "server/worker_pool.h"

#include <chrono>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace claa {

WorkerPool::WorkerPool(Kind kind, std::vector<std::string> addresses, ChannelCache* channels,
                       absl::Duration probe_timeout, absl::Duration probe_interval)
    : kind_(kind), probe_timeout_(probe_timeout), interval_(probe_interval) {
  for (std::string& address : addresses) {
    auto w = std::make_unique<Worker>();
    w->address = std::move(address);
    auto channel = channels->Get(w->address);
    if (kind == Kind::kPrefill) {
      w->prefill = internal::v1::PrefillWorker::NewStub(channel);
    } else {
      w->decode = internal::v1::DecodeWorker::NewStub(channel);
    }
    w->last_error = "not probed yet";
    workers_.push_back(std::move(w));
  }
  prober_ = std::thread([this] { ProbeLoop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  prober_.join();
}

void WorkerPool::Probe(Worker* w) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + probe_timeout_));
  internal::v1::LoadRequest request;
  internal::v1::WorkerLoad load;
  grpc::Status status = kind_ == Kind::kPrefill ? w->prefill->GetLoad(&context, request, &load)
                                                : w->decode->GetLoad(&context, request, &load);
  std::lock_guard<std::mutex> lock(mu_);
  if (status.ok()) {
    w->healthy = true;
    w->load = load;
    w->sent_tokens = 0;
    w->sent_requests = 0;
    w->last_error.clear();
  } else {
    w->healthy = false;
    w->last_error = status.error_message();
  }
}

void WorkerPool::ProbeAll() {
  for (auto& w : workers_) Probe(w.get());
}

void WorkerPool::ProbeLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    ProbeAll();
    lock.lock();
    cv_.wait_for(lock, absl::ToChronoMilliseconds(interval_), [this] { return stop_; });
  }
}

absl::StatusOr<WorkerPool::Worker*> WorkerPool::Pick(int64_t prompt_tokens) {
  absl::StatusOr<Worker*> picked = PickHealthy(prompt_tokens);
  if (picked.ok()) return picked;
  // None looked healthy at the last probe: one may have come back since, so ask them now.
  ProbeAll();
  return PickHealthy(prompt_tokens);
}

absl::StatusOr<WorkerPool::Worker*> WorkerPool::PickHealthy(int64_t prompt_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  Worker* best = nullptr;
  double best_cost = std::numeric_limits<double>::infinity();
  for (auto& w : workers_) {
    if (!w->healthy) continue;
    double cost;
    if (kind_ == Kind::kPrefill) {
      cost = double(w->load.queued_prompt_tokens() + w->sent_tokens) +
             1e-3 * (w->load.running() + w->sent_requests);
    } else {
      // Fewer free blocks is worse; requests sent since the probe will take some.
      const double total = std::max<uint32_t>(1, w->load.total_kv_blocks());
      cost = -(double(w->load.free_kv_blocks()) / total) +
             0.01 * (w->load.running() + w->load.waiting() + w->sent_requests);
    }
    if (cost < best_cost) {
      best_cost = cost;
      best = w.get();
    }
  }
  if (best == nullptr) {
    std::vector<std::string> why;
    for (auto& w : workers_) why.push_back(absl::StrCat(w->address, ": ", w->last_error));
    return absl::UnavailableError(absl::StrCat(
        "no healthy ", kind_ == Kind::kPrefill ? "prefill" : "decode", " worker (",
        absl::StrJoin(why, "; "), ")"));
  }
  best->sent_tokens += prompt_tokens;
  ++best->sent_requests;
  return best;
}

void WorkerPool::MarkUnhealthy(Worker* w, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  w->healthy = false;
  w->last_error = why;
}

int WorkerPool::healthy_count() {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (auto& w : workers_) n += w->healthy ? 1 : 0;
  return n;
}

}  // namespace claa
