// The KV handoff between a prefill-only scheduler and a decode scheduler, in one process: what a
// decode worker streams after importing a prefill worker's (pruned) cache equals what one
// unified scheduler streams; leases free their blocks on fetch, release and expiry; a router's
// context is the model's, whatever its own (unused) KV budget.
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/generate/generate.h"
#include "engine/runtime/kv_slots.h"
#include "gtest/gtest.h"
#include "scheduler/kv_lease_table.h"
#include "scheduler/scheduler.h"

namespace claa {
namespace {

std::unique_ptr<LoadedModel> Builtin(int tp) {
  ModelLoadOptions options;
  options.tp_size = tp;
  options.kv_cache_bytes = int64_t{16} << 20;
  auto model = LoadModel(options);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

GenerationRequest Greedy(const std::string& id, int n, int salt, PruningConfig pruning) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = {510};
  for (int i = 1; i < n; ++i) r.prompt_ids.push_back(3 + (i * 7 + salt * 13) % 250);
  r.sampling.temperature = 0.0f;
  r.max_tokens = 40;
  r.ignore_eos = true;
  r.pruning = pruning;
  return r;
}

bool NextEvent(RequestStream& s, RequestEvent* e) { return s.Next(e, absl::Seconds(60)); }

std::vector<int32_t> DrainTokens(RequestStream& s, RequestEvent* last) {
  std::vector<int32_t> ids;
  while (NextEvent(s, last)) {
    if (last->kind != RequestEvent::Kind::kChunk) return ids;
    ids.insert(ids.end(), last->token_ids.begin(), last->token_ids.end());
  }
  ADD_FAILURE() << "stream stalled";
  return ids;
}

// What a decode worker receives over the wire: the leased cache read out in global head order.
ImportedKv Export(ModelRunner& runner, const PrefillHandoff& h) {
  ImportedKv in;
  const size_t row = size_t(runner.config().num_kv_heads) * runner.config().head_dim;
  in.layer_lengths = h.kv.layer_lengths;
  in.num_positions = h.kv.num_positions;
  in.kept_prompt_tokens = h.kept_prompt_tokens;
  in.last_logits = h.last_logits;
  for (int l = 0; l < int(h.kv.layer_lengths.size()); ++l) {
    const int n = h.kv.layer_lengths[l];
    in.k.emplace_back(row * n);
    in.v.emplace_back(row * n);
    EXPECT_TRUE(ReadKvSlots(runner, h.kv, l, 0, n, in.k[l].data(), in.v[l].data()).ok());
  }
  return in;
}

class HandoffTest : public ::testing::TestWithParam<PruningMethod> {};

TEST_P(HandoffTest, DecodeAfterImportMatchesUnified) {
  auto unified_model = Builtin(1);
  auto prefill_model = Builtin(2);  // a different TP split than the decode side
  auto decode_model = Builtin(1);
  const int layers = unified_model->config.num_layers;
  const PruningConfig pruning = GetParam() == PruningMethod::kFull
                                    ? PruningConfig()
                                    : DefaultPruningConfig(GetParam(), layers, 0.3);
  Scheduler unified(unified_model.get(), SchedulerOptions{}, nullptr);
  KvLeaseTable leases(&prefill_model->runner->block_manager(), absl::Seconds(30), nullptr);
  SchedulerOptions prefill_options;
  prefill_options.handoff_sink = &leases;
  Scheduler prefill(prefill_model.get(), prefill_options, nullptr);
  Scheduler decode(decode_model.get(), SchedulerOptions{}, nullptr);

  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    const int n = 40 + 23 * i;
    auto want_stream = unified.Submit(Greedy("u", n, i, pruning));
    ASSERT_TRUE(want_stream.ok());
    RequestEvent want_end;
    const std::vector<int32_t> want = DrainTokens(**want_stream, &want_end);

    auto pre = prefill.Submit(Greedy("p", n, i, pruning));
    ASSERT_TRUE(pre.ok()) << pre.status();
    RequestEvent handoff;
    ASSERT_TRUE(NextEvent(**pre, &handoff));
    ASSERT_EQ(handoff.kind, RequestEvent::Kind::kHandoff) << handoff.error;
    EXPECT_EQ(handoff.usage.kept_prompt_tokens, want_end.usage.kept_prompt_tokens);
    EXPECT_EQ(leases.size(), 1);
    auto pin = leases.Acquire(handoff.handoff_ticket);
    ASSERT_TRUE(pin.ok()) << pin.status();
    ImportedKv imported = Export(*prefill_model->runner, (*pin)->handoff());
    if (pruning.prunes() && pruning.method != PruningMethod::kGemFilter) {
      // The compact cache: full below min_layer, keep_count slots from it on.
      EXPECT_LT(imported.layer_lengths.back(), n);
    }
    (*pin)->Finish();
    EXPECT_EQ(leases.size(), 0);
    EXPECT_EQ(prefill_model->runner->block_manager().num_used(), 0);

    auto dec = decode.SubmitImported(Greedy("d", n, i, pruning), std::move(imported));
    ASSERT_TRUE(dec.ok()) << dec.status();
    RequestEvent end;
    EXPECT_EQ(DrainTokens(**dec, &end), want);
    ASSERT_EQ(end.kind, RequestEvent::Kind::kComplete) << end.error;
    EXPECT_EQ(end.usage.kept_prompt_tokens, want_end.usage.kept_prompt_tokens);
  }
  decode.Shutdown();
  EXPECT_EQ(decode_model->runner->block_manager().num_used(), 0);
}

INSTANTIATE_TEST_SUITE_P(Methods, HandoffTest,
                         ::testing::Values(PruningMethod::kFull, PruningMethod::kClaa,
                                           PruningMethod::kGemFilter),
                         [](const auto& info) { return std::string(PruningMethodName(info.param)); });

TEST(RouterModelTest, ContextIsTheModelsNotTheKvBudgets) {
  ModelLoadOptions options;
  options.kv_cache_bytes = int64_t{64} << 10;  // room for a few dozen tokens
  auto worker = LoadModel(options);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_LT((*worker)->max_context_length, (*worker)->config.max_position_embeddings)
      << "a worker's context is bounded by its KV cache";
  options.load_weights = false;  // the router
  auto router = LoadModel(options);
  ASSERT_TRUE(router.ok()) << router.status();
  EXPECT_EQ((*router)->max_context_length, (*router)->config.max_position_embeddings);
}

TEST(KvLeaseTableTest, ReleaseAndExpiryFreeBlocksOnce) {
  BlockManager blocks(8, 4);
  int woken = 0;
  KvLeaseTable table(&blocks, absl::Milliseconds(200), [&] { ++woken; });
  auto lease = [&](const std::string& id) {
    PrefillHandoff h;
    h.request_id = id;
    auto got = blocks.Allocate(2);
    EXPECT_TRUE(got.ok());
    h.kv.blocks = *got;
    return table.Accept(std::move(h));
  };
  const std::string a = lease("a"), b = lease("b"), c = lease("c");
  const std::string a2 = lease("a");  // a reused request id still gets its own ticket
  EXPECT_NE(a, a2);
  EXPECT_EQ(blocks.num_used(), 8);
  EXPECT_TRUE(table.Release(a));
  EXPECT_FALSE(table.Release(a));
  EXPECT_EQ(blocks.num_used(), 6);
  {
    auto pin = table.Acquire(b);
    ASSERT_TRUE(pin.ok());
    EXPECT_EQ(table.Acquire(b).status().code(), absl::StatusCode::kAborted);
    EXPECT_EQ(table.ReapExpired(absl::Now() + absl::Hours(1)), 2);  // c and a2, not b
  }  // the pin is dropped without Finish: a failed transfer; the lease stays until expiry
  EXPECT_EQ(blocks.num_used(), 2);
  EXPECT_EQ(table.Acquire("nope").status().code(), absl::StatusCode::kNotFound);
  for (int i = 0; i < 50 && table.size() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(table.size(), 0) << "the reaper frees expired leases";
  EXPECT_EQ(blocks.num_used(), 0);
  EXPECT_GE(woken, 3);
}

// A transfer cut halfway leaves its fetch holding the ticket for a moment: a retry waits for
// it instead of failing, and a release meanwhile frees the blocks as soon as it lets go.
TEST(KvLeaseTableTest, PinnedTicketIsWaitedForAndReleasedWhenLetGo) {
  BlockManager blocks(8, 4);
  KvLeaseTable table(&blocks, absl::Hours(1), [] {});
  auto lease = [&](const std::string& id) {
    PrefillHandoff h;
    h.request_id = id;
    h.kv.blocks = *blocks.Allocate(2);
    return table.Accept(std::move(h));
  };
  const std::string a = lease("a"), b = lease("b");
  {
    auto cut = table.Acquire(a);
    ASSERT_TRUE(cut.ok());
    std::thread let_go([&cut] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      cut->reset();  // the cut fetch ends without Finish
    });
    auto retry = table.Acquire(a, absl::Seconds(10));
    let_go.join();
    ASSERT_TRUE(retry.ok()) << retry.status();
    (*retry)->Finish();
  }
  EXPECT_EQ(blocks.num_used(), 2);
  {
    auto cut = table.Acquire(b);
    ASSERT_TRUE(cut.ok());
    EXPECT_TRUE(table.Release(b));  // pending: freed when the fetch lets go
    EXPECT_FALSE(table.Release(b));
    EXPECT_EQ(table.Acquire(b).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(blocks.num_used(), 2);
  }
  EXPECT_EQ(blocks.num_used(), 0) << "not left to the lease's expiry";
  EXPECT_EQ(table.size(), 0);
}

}  // namespace
}  // namespace claa
