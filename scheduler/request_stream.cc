#include "scheduler/request_stream.h"

#include <utility>

namespace claa {

void RequestStream::Push(RequestEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_one();
}

bool RequestStream::Next(RequestEvent* event, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                    [this] { return !events_.empty(); })) {
    return false;
  }
  *event = std::move(events_.front());
  events_.pop_front();
  while (event->kind == RequestEvent::Kind::kChunk && !events_.empty() &&
         events_.front().kind == RequestEvent::Kind::kChunk) {
    RequestEvent& next = events_.front();
    event->token_ids.insert(event->token_ids.end(), next.token_ids.begin(), next.token_ids.end());
    event->text += next.text;
    events_.pop_front();
  }
  return true;
}

}  // namespace claa
