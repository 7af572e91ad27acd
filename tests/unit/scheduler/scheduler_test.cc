// The continuous-batching scheduler on the built-in model: batched and preempted requests give
// exactly the tokens a lone synchronous Generate gives; queue limits, aborts and block
// accounting behave.
#include "scheduler/scheduler.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/generate/generate.h"
#include "gtest/gtest.h"

namespace claa {
namespace {

std::unique_ptr<LoadedModel> Builtin(int64_t kv_bytes) {
  ModelLoadOptions options;
  options.kv_cache_bytes = kv_bytes;
  auto model = LoadModel(options);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

GenerationRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

struct Collected {
  std::vector<int32_t> ids;
  std::string text;
  RequestEvent last;
};

Collected Drain(RequestStream& stream) {
  Collected c;
  RequestEvent e;
  for (;;) {
    if (!stream.Next(&e, absl::Seconds(120))) {
      ADD_FAILURE() << "stream stalled";
      return c;
    }
    if (e.kind == RequestEvent::Kind::kChunk) {
      c.ids.insert(c.ids.end(), e.token_ids.begin(), e.token_ids.end());
      c.text += e.text;
      continue;
    }
    c.last = e;
    return c;
  }
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p = {1};
  for (int i = 1; i < n; ++i) p.push_back(3 + (i * 7 + salt * 13) % 250);
  return p;
}

TEST(SchedulerTest, BatchedAndPreemptedRequestsMatchLoneGeneration) {
  // 64 blocks of 16 tokens: eight 210-token requests cannot all fit, so some are preempted
  // and recomputed.
  const int64_t kv_bytes = 64 * 16 * KvBytesPerToken(Builtin(int64_t{8} << 20)->config);
  auto model = Builtin(kv_bytes);
  ASSERT_EQ(model->num_kv_blocks, 64);

  constexpr int kRequests = 8;
  std::vector<std::vector<int32_t>> want(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    auto r = Generate(*model, Greedy("solo", Prompt(30 + 5 * i, i), 180));
    ASSERT_TRUE(r.ok()) << r.status();
    want[i] = r->token_ids;
  }
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);

  struct Preemptions : SchedulerObserver {
    std::atomic<int> count{0};
    void OnPreempted() override { ++count; }
  } observer;
  Scheduler scheduler(model.get(), SchedulerOptions{}, &observer);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < kRequests; ++i) {
    auto s = scheduler.Submit(Greedy(absl::StrCat("r", i), Prompt(30 + 5 * i, i), 180));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (int i = 0; i < kRequests; ++i) {
    Collected c = Drain(*streams[i]);
    ASSERT_EQ(c.last.kind, RequestEvent::Kind::kComplete) << c.last.error;
    EXPECT_EQ(c.last.finish, FinishReason::kLength);
    EXPECT_EQ(c.ids, want[i]) << "request " << i;
    EXPECT_EQ(c.last.usage.completion_tokens, 180);
  }
  EXPECT_GT(observer.count.load(), 0) << "the KV budget was meant to force preemption";
  scheduler.Shutdown();
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);
}

// Pruned prefills (CLAA, FastKV, GemFilter) batched with each other under preemption: a
// recomputed pruned request re-prunes its prompt and then re-feeds its generated tokens, and
// every request streams what a lone Generate with the same pruning gives.
TEST(SchedulerTest, PrunedRequestsBatchedAndPreemptedMatchLoneGeneration) {
  const int64_t kv_bytes = 48 * 16 * KvBytesPerToken(Builtin(int64_t{8} << 20)->config);
  auto model = Builtin(kv_bytes);
  const int layers = model->config.num_layers;
  const PruningMethod methods[] = {PruningMethod::kClaa, PruningMethod::kFastKv,
                                   PruningMethod::kGemFilter};
  constexpr int kRequests = 6;
  auto request = [&](const std::string& id, int i) {
    GenerationRequest r = Greedy(id, Prompt(120 + 10 * i, i), 150);
    r.pruning = DefaultPruningConfig(methods[i % 3], layers, 0.3);
    return r;
  };
  std::vector<std::vector<int32_t>> want(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    auto r = Generate(*model, request("solo", i));
    ASSERT_TRUE(r.ok()) << r.status();
    want[i] = r->token_ids;
  }
  struct Preemptions : SchedulerObserver {
    std::atomic<int> count{0};
    void OnPreempted() override { ++count; }
  } observer;
  Scheduler scheduler(model.get(), SchedulerOptions{}, &observer);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < kRequests; ++i) {
    auto s = scheduler.Submit(request(absl::StrCat("r", i), i));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (int i = 0; i < kRequests; ++i) {
    Collected c = Drain(*streams[i]);
    ASSERT_EQ(c.last.kind, RequestEvent::Kind::kComplete) << c.last.error;
    EXPECT_EQ(c.ids, want[i]) << "request " << i;
    const int prompt = 120 + 10 * i;
    EXPECT_EQ(c.last.usage.prompt_tokens, prompt);
    EXPECT_EQ(c.last.usage.kept_prompt_tokens,
              DefaultPruningConfig(methods[i % 3], layers, 0.3).KeepCount(prompt));
  }
  EXPECT_GT(observer.count.load(), 0) << "the KV budget was meant to force preemption";
  scheduler.Shutdown();
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);
}

TEST(SchedulerTest, FullQueueIsResourceExhausted) {
  auto model = Builtin(int64_t{64} << 20);
  SchedulerOptions options;
  options.max_waiting = 1;
  options.max_running = 1;
  Scheduler scheduler(model.get(), options, nullptr);
  auto first = scheduler.Submit(Greedy("a", Prompt(8, 1), 1500));
  ASSERT_TRUE(first.ok());
  int exhausted = 0;
  for (int i = 0; i < 3; ++i) {
    auto s = scheduler.Submit(Greedy(absl::StrCat("b", i), Prompt(8, 2), 4));
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_NE(s.status().message().find("queue is full"), std::string::npos);
      ++exhausted;
    }
  }
  EXPECT_GE(exhausted, 1);
  EXPECT_TRUE(scheduler.Abort("a"));
  Collected c = Drain(**first);
  EXPECT_EQ(c.last.finish, FinishReason::kAbort);
}

TEST(SchedulerTest, DuplicateIdAndBadInputAreRefused) {
  auto model = Builtin(int64_t{64} << 20);
  Scheduler scheduler(model.get(), SchedulerOptions{}, nullptr);
  auto first = scheduler.Submit(Greedy("same", Prompt(8, 1), 1500));
  ASSERT_TRUE(first.ok());
  auto dup = scheduler.Submit(Greedy("same", Prompt(8, 1), 4));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  auto bad = scheduler.Submit(Greedy("bad", {1, 1000000}, 4));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  scheduler.Cancel("same");
  for (int i = 0; i < 200 && scheduler.num_running() + scheduler.num_waiting() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(scheduler.num_running() + scheduler.num_waiting(), 0);
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);
}

TEST(SchedulerTest, ShutdownEndsOpenStreamsWithUnavailable) {
  auto model = Builtin(int64_t{64} << 20);
  auto scheduler = std::make_unique<Scheduler>(model.get(), SchedulerOptions{}, nullptr);
  auto s = scheduler->Submit(Greedy("long", Prompt(8, 1), 1500));
  ASSERT_TRUE(s.ok());
  scheduler->Shutdown();
  Collected c = Drain(**s);
  if (c.last.kind == RequestEvent::Kind::kError) {
    EXPECT_EQ(c.last.error.code(), absl::StatusCode::kUnavailable);
  } else {
    ADD_FAILURE() << "expected UNAVAILABLE, got a completion";
  }
  EXPECT_EQ(model->runner->block_manager().num_used(), 0);
  EXPECT_EQ(scheduler->Submit(Greedy("late", Prompt(8, 1), 4)).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace claa
