#include "server/loadgen/runner.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace claa::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One streaming Generate call. It owns itself from Start() to OnDone(), where it reports and
// deletes itself (the callback API's usual pattern); `result` outlives it.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateCall(const v1::GenerateRequest& request, Clock::time_point bench_start,
               absl::Duration timeout, const RunOptions* options, RequestResult* result,
               std::function<void()> on_done)
      : request_(request),
        bench_start_(bench_start),
        timeout_(timeout),
        options_(options),
        result_(result),
        on_done_(std::move(on_done)) {}

  void Start(v1::Generation::Stub* stub) {
    start_ = Clock::now();
    result_->start_s = Seconds(start_ - bench_start_);
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    for (const auto& [key, value] : options_->metadata) context_.AddMetadata(key, value);
    stub->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream; OnDone follows with the status
    const Clock::time_point now = Clock::now();
    if (result_->request_id.empty()) result_->request_id = response_.request_id();
    if (response_.has_chunk() && response_.chunk().token_ids_size() > 0) {
      // vLLM's ITL is per chunk arrival: a chunk with k tokens adds one gap, not k.
      if (streamed_tokens_ == 0) {
        result_->ttft_s = Seconds(now - start_);
      } else {
        result_->itl_s.push_back(Seconds(now - last_token_time_));
      }
      last_token_time_ = now;
      streamed_tokens_ += response_.chunk().token_ids_size();
    } else if (response_.has_complete()) {
      got_complete_ = true;
      const v1::Complete& c = response_.complete();
      result_->finish_reason = v1::FinishReason_Name(c.finish_reason());
      result_->prompt_tokens = static_cast<int>(c.usage().prompt_tokens());
      result_->output_tokens = static_cast<int>(c.usage().completion_tokens());
    } else if (response_.has_error()) {
      result_->error_message = response_.error().message();
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    result_->e2el_s = Seconds(Clock::now() - start_);
    if (!got_complete_) result_->output_tokens = streamed_tokens_;
    if (status.ok() && got_complete_) {
      result_->success = true;
    } else if (!status.ok()) {
      result_->error = absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
      if (result_->error_message.empty()) result_->error_message = status.error_message();
    } else {
      result_->error = "NO_COMPLETE";
      result_->error_message = "the stream ended without a complete message";
    }
    std::function<void()> on_done = std::move(on_done_);
    delete this;
    on_done();
  }

 private:
  v1::GenerateRequest request_;
  Clock::time_point bench_start_;
  absl::Duration timeout_;
  const RunOptions* options_;  // outlives every call: RunBenchmark waits for all
  RequestResult* result_;
  std::function<void()> on_done_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;
  Clock::time_point start_;
  Clock::time_point last_token_time_;
  int streamed_tokens_ = 0;
  bool got_complete_ = false;
};

}  // namespace

RunOutput RunBenchmark(v1::Generation::Stub* stub, const std::vector<v1::GenerateRequest>& requests,
                       const RunOptions& options, RunProgress* progress) {
  RunOutput out;
  out.results.resize(requests.size());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  size_t done = 0;
  Clock::time_point last_done;

  const Clock::time_point bench_start = Clock::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    const double at = i < options.arrival_s.size() ? options.arrival_s[i] : 0.0;
    std::this_thread::sleep_until(bench_start + std::chrono::duration_cast<Clock::duration>(
                                                    std::chrono::duration<double>(at)));
    {
      // Like vLLM's semaphore: a request past its arrival time waits for a free slot.
      std::unique_lock lock(mu);
      cv.wait(lock,
              [&] { return options.max_concurrency <= 0 || in_flight < options.max_concurrency; });
      ++in_flight;
    }
    RequestResult* result = &out.results[i];
    auto on_done = [&, result] {
      std::lock_guard lock(mu);
      --in_flight;
      ++done;
      last_done = Clock::now();
      if (progress != nullptr) {
        if (!result->success) progress->failed.fetch_add(1);
        progress->done.fetch_add(1);
      }
      cv.notify_all();
    };
    if (progress != nullptr) progress->started.fetch_add(1);
    (new GenerateCall(requests[i], bench_start, options.request_timeout, &options, result,
                      on_done))
        ->Start(stub);
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done == requests.size(); });
  out.duration_s = requests.empty() ? 0.0 : Seconds(last_done - bench_start);
  return out;
}

}  // namespace claa::loadgen
