// claa.v1.Prefill through gRPC against real claa-server processes: Score / Classify / Embed,
// AttnCache hits that reproduce the cached input's answer, persistence across a restart, a
// corrupt store file refused with a clear error, eviction under --attn_cache_max_mb, bad input,
// and near-duplicate hits on stories260K whose Classify answers match the uncached ones.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_replace.h"
#include "claa/v1/prefill.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/server_fixture.h"
#include "tests/integration/timeout_scale.h"
#include "tests/test_data.h"

namespace claa {
namespace {

namespace fs = std::filesystem;

// claa-server with stderr folded into stdout (the refusal of a corrupt file is logged there).
class PrefillServer {
 public:
  bool Start(const std::vector<std::string>& args) {
    std::string cmd = std::string("exec ") + CLAA_SERVER_BINARY + " --port=0 --metrics_port=0";
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    if (!process_.Start({"/bin/sh", "-c", cmd})) return false;
    while (auto line = process_.ReadLine()) {
      log_ += *line + "\n";
      if (line->find("metrics on http://") != std::string::npos) {
        const std::string m = line->substr(line->rfind(':') + 1);
        metrics_port_ = std::stoi(m.substr(0, m.find('/')));
      }
      if (line->find("listening on ") != std::string::npos) {
        const std::string address = line->substr(line->find("listening on ") + 13);
        channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
        stub_ = v1::Prefill::NewStub(channel_);
        return channel_->WaitForConnected(
            testing::ScaledDeadline(std::chrono::seconds(30)));
      }
    }
    return false;
  }
  void Stop() { process_.Kill(SIGTERM); }
  v1::Prefill::Stub& stub() { return *stub_; }
  const std::string& log() const { return log_; }

  std::optional<double> MetricFrom(const std::string& prefix) const {
    return testing::MetricValueIn(testing::FetchMetricsText(metrics_port_), prefix);
  }

 private:
  testing::ChildProcess process_;
  std::string log_;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Prefill::Stub> stub_;
};

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("claa_prefill_it_" + name + "_" +
                                           std::to_string(getpid()))) {
    fs::remove_all(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::vector<fs::path> Entries() const {
    std::vector<fs::path> out;
    for (const auto& de : fs::directory_iterator(path_)) {
      if (de.path().extension() == ".attn") out.push_back(de.path());
    }
    return out;
  }

 private:
  fs::path path_;
};

grpc::Status Call(PrefillServer& s, const v1::ClassifyRequest& req, v1::ClassifyResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(testing::ScaledDeadline(std::chrono::seconds(60)));
  return s.stub().Classify(&ctx, req, resp);
}
grpc::Status Call(PrefillServer& s, const v1::ScoreRequest& req, v1::ScoreResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(testing::ScaledDeadline(std::chrono::seconds(60)));
  return s.stub().Score(&ctx, req, resp);
}
grpc::Status Call(PrefillServer& s, const v1::EmbedRequest& req, v1::EmbedResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(testing::ScaledDeadline(std::chrono::seconds(60)));
  return s.stub().Embed(&ctx, req, resp);
}

v1::ClassifyRequest Classify(const std::string& text, v1::AttnCacheMode mode) {
  v1::ClassifyRequest req;
  req.set_text(text);
  for (const char* label : {" yes", " no", " maybe"}) req.add_labels(label);
  req.set_attn_cache(mode);
  return req;
}

const char kPrompt[] =
    "Review: The food was cold and the waiter ignored us for an hour. Sentiment: no\n"
    "Review: Lovely staff, great pasta, we will come back. Sentiment: yes\n"
    "Review: The soup was fine but the bread was stale. Sentiment:";

TEST(PrefillRpc, HitReproducesTheCachedAnswerAndSurvivesRestart) {
  ScratchDir dir("hit");
  v1::ClassifyResponse off, miss, hit;
  {
    PrefillServer server;
    ASSERT_TRUE(server.Start({"--attn_cache_dir=" + dir.str()})) << server.log();
    EXPECT_NE(server.log().find("attn cache " + dir.str() + ": 0 entries"), std::string::npos);
    ASSERT_TRUE(Call(server, Classify(kPrompt, v1::ATTN_CACHE_OFF), &off).ok());
    EXPECT_EQ(off.attn_cache().outcome(), v1::AttnCacheResult::DISABLED);
    ASSERT_TRUE(Call(server, Classify(kPrompt, v1::ATTN_CACHE_LOOKUP_AND_INSERT), &miss).ok());
    EXPECT_EQ(miss.attn_cache().outcome(), v1::AttnCacheResult::MISS);
    // One forwarded sequence per distinct "prompt + label minus its last token".
    const uint32_t sequences = miss.attn_cache().lookups();
    EXPECT_GE(sequences, 1u);
    EXPECT_EQ(miss.attn_cache().inserted(), sequences);
    ASSERT_TRUE(Call(server, Classify(kPrompt, v1::ATTN_CACHE_LOOKUP), &hit).ok());
    EXPECT_EQ(hit.attn_cache().outcome(), v1::AttnCacheResult::HIT);
    EXPECT_NEAR(hit.attn_cache().similarity(), 1.0, 1e-6);
    EXPECT_EQ(hit.attn_cache().inserted(), 0u);

    // The inserting miss ran attention normally: exactly the uncached answer. The hit reuses
    // its maps (stored in fp16): the same label, scores equal to rounding.
    EXPECT_EQ(miss.index(), off.index());
    EXPECT_EQ(hit.index(), off.index());
    EXPECT_EQ(hit.label(), off.label());
    ASSERT_EQ(hit.scores_size(), 3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(miss.scores(i).logprob(), off.scores(i).logprob());
      EXPECT_NEAR(hit.scores(i).logprob(), off.scores(i).logprob(), 2e-3) << i;
    }
    EXPECT_EQ(hit.attn_cache().hits(), sequences);
    EXPECT_EQ(server.MetricFrom("claa_attn_cache_lookups_total"), 2.0 * sequences);
    EXPECT_EQ(server.MetricFrom("claa_attn_cache_hits_total"), 1.0 * sequences);
    EXPECT_GT(server.MetricFrom("claa_attn_cache_store_bytes").value_or(0), 0.0);
    EXPECT_EQ(server.MetricFrom("claa_attn_cache_evictions_total"), 0.0);
    EXPECT_TRUE(server.MetricFrom("claa_prefill_only_request_seconds_count").has_value());
    server.Stop();
  }
  const size_t entries = dir.Entries().size();
  ASSERT_EQ(entries, size_t(miss.attn_cache().inserted()));
  {
    // Restart: the entry is still there and serves the same hit, bit for bit.
    PrefillServer server;
    ASSERT_TRUE(server.Start({"--attn_cache_dir=" + dir.str()})) << server.log();
    EXPECT_NE(server.log().find(": " + std::to_string(entries) + " entries"), std::string::npos)
        << server.log();
    v1::ClassifyResponse again;
    ASSERT_TRUE(Call(server, Classify(kPrompt, v1::ATTN_CACHE_LOOKUP), &again).ok());
    EXPECT_EQ(again.attn_cache().outcome(), v1::AttnCacheResult::HIT);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(again.scores(i).logprob(), hit.scores(i).logprob());
    server.Stop();
  }
  {
    // A damaged file is refused with a clear error and the server serves without it.
    for (const fs::path& e : dir.Entries()) {
      std::fstream f(e, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-10, std::ios::end);
      f.put('\x7f');
    }
    const fs::path entry = dir.Entries().at(0);
    PrefillServer server;
    ASSERT_TRUE(server.Start({"--attn_cache_dir=" + dir.str()})) << server.log();
    EXPECT_NE(server.log().find("attn cache file " + entry.string() + " is corrupt: payload "
                                "checksum mismatch"),
              std::string::npos)
        << server.log();
    EXPECT_NE(server.log().find(": 0 entries, 0 bytes, " + std::to_string(entries) +
                                " files refused"),
              std::string::npos)
        << server.log();
    EXPECT_TRUE(fs::exists(entry.string() + ".corrupt"));
    v1::ClassifyResponse after;
    ASSERT_TRUE(Call(server, Classify(kPrompt, v1::ATTN_CACHE_LOOKUP), &after).ok());
    EXPECT_EQ(after.attn_cache().outcome(), v1::AttnCacheResult::MISS);
    EXPECT_EQ(after.index(), off.index());
    server.Stop();
  }
}

TEST(PrefillRpc, ScoreAndEmbed) {
  ScratchDir dir("score");
  PrefillServer server;
  ASSERT_TRUE(server.Start({"--attn_cache_dir=" + dir.str()})) << server.log();
  v1::ScoreRequest score;
  score.set_text("The capital of France is");
  score.add_continuations()->set_text(" Paris");
  score.add_continuations()->mutable_token_ids()->add_ids(66);
  score.set_attn_cache(v1::ATTN_CACHE_LOOKUP_AND_INSERT);
  v1::ScoreResponse r1, r2;
  ASSERT_TRUE(Call(server, score, &r1).ok());
  ASSERT_EQ(r1.scores_size(), 2);
  EXPECT_EQ(r1.scores(0).token_logprobs_size(), r1.scores(0).token_ids_size());
  EXPECT_GE(r1.scores(0).token_ids_size(), 2);
  EXPECT_EQ(r1.scores(1).token_ids(0), 66);
  EXPECT_LT(r1.scores(0).logprob(), 0.0);
  EXPECT_EQ(r1.attn_cache().outcome(), v1::AttnCacheResult::MISS);
  EXPECT_EQ(r1.attn_cache().lookups(), 2u);  // prompt + " Paris" but its last token; prompt
  ASSERT_TRUE(Call(server, score, &r2).ok());
  EXPECT_EQ(r2.attn_cache().outcome(), v1::AttnCacheResult::HIT);
  EXPECT_EQ(r2.scores(0).attn_cache().outcome(), v1::AttnCacheResult::HIT);
  EXPECT_NEAR(r2.scores(0).logprob(), r1.scores(0).logprob(), 5e-3);

  v1::EmbedRequest embed;
  embed.set_text("The capital of France is");
  embed.set_normalize(true);
  embed.set_pooling(v1::EmbedRequest::LAST);
  v1::EmbedResponse e;
  ASSERT_TRUE(Call(server, embed, &e).ok());
  EXPECT_EQ(e.embedding_size(), 256);  // built-in model's hidden size
  double norm = 0;
  for (float x : e.embedding()) norm += double(x) * x;
  EXPECT_NEAR(norm, 1.0, 1e-4);
  EXPECT_EQ(e.attn_cache().outcome(), v1::AttnCacheResult::DISABLED);
}

TEST(PrefillRpc, EvictsUnderTheSizeBound) {
  ScratchDir dir("evict");
  PrefillServer server;
  // Built-in model: 4 layers x 8 heads; a 100-token entry is ~0.3 MiB, so 1 MiB holds three.
  ASSERT_TRUE(server.Start({"--attn_cache_dir=" + dir.str(), "--attn_cache_max_mb=1"}))
      << server.log();
  for (int i = 0; i < 6; ++i) {
    v1::EmbedRequest req;
    for (int t = 0; t < 100; ++t) req.mutable_token_ids()->add_ids((t * 7 + i * 13) % 250 + 1);
    req.set_attn_cache(v1::ATTN_CACHE_LOOKUP_AND_INSERT);
    v1::EmbedResponse resp;
    ASSERT_TRUE(Call(server, req, &resp).ok());
    EXPECT_EQ(resp.attn_cache().inserted(), 1u);
  }
  EXPECT_EQ(server.MetricFrom("claa_attn_cache_evictions_total"), 3.0);
  EXPECT_LE(server.MetricFrom("claa_attn_cache_store_bytes").value_or(1e30), double(1 << 20));
  EXPECT_EQ(dir.Entries().size(), 3u);
}

TEST(PrefillRpc, BadInputNamesTheField) {
  PrefillServer server;
  ASSERT_TRUE(server.Start({})) << server.log();
  auto classify_error = [&](const v1::ClassifyRequest& req) {
    v1::ClassifyResponse resp;
    grpc::Status s = Call(server, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    return s.error_message();
  };
  v1::ClassifyRequest req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.clear_prompt();
  EXPECT_EQ(classify_error(req), "prompt: set either text or token_ids");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.clear_labels();
  req.add_labels("only");
  EXPECT_EQ(classify_error(req), "labels: at least two labels are required");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.set_labels(1, "");
  EXPECT_EQ(classify_error(req), "labels[1]: must not be empty");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.add_label_token_ids()->add_ids(1);
  EXPECT_EQ(classify_error(req), "labels: give labels or label_token_ids, not both");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.clear_labels();
  req.add_label_token_ids()->add_ids(1);
  req.add_label_token_ids()->add_ids(99999);
  EXPECT_EQ(classify_error(req), "label_token_ids[1][0]: token id 99999 is out of range [0, 512)");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.set_attn_cache(static_cast<v1::AttnCacheMode>(9));
  EXPECT_EQ(classify_error(req), "attn_cache: unknown mode 9");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  req.mutable_token_ids()->add_ids(-1);
  EXPECT_EQ(classify_error(req), "prompt.token_ids[0]: token id -1 is out of range [0, 512)");
  req = Classify("hello", v1::ATTN_CACHE_OFF);
  for (int i = 0; i < 3000; ++i) req.mutable_token_ids()->add_ids(65);
  EXPECT_NE(classify_error(req).find("prompt: 3000 prompt tokens + "), std::string::npos);

  v1::ScoreRequest score;
  score.set_text("hi");
  v1::ScoreResponse score_resp;
  grpc::Status s = Call(server, score, &score_resp);
  EXPECT_EQ(s.error_message(), "continuations: at least one is required");
  score.add_continuations();
  s = Call(server, score, &score_resp);
  EXPECT_EQ(s.error_message(), "continuations[0]: set either text or token_ids");
  v1::EmbedRequest embed;
  embed.set_text("hi");
  embed.set_pooling(static_cast<v1::EmbedRequest::Pooling>(5));
  v1::EmbedResponse embed_resp;
  s = Call(server, embed, &embed_resp);
  EXPECT_EQ(s.error_message(), "pooling: unknown value 5");

  // No --attn_cache_dir: asking for the cache is fine, it is reported as disabled.
  v1::ClassifyResponse resp;
  ASSERT_TRUE(Call(server, Classify("hello", v1::ATTN_CACHE_LOOKUP_AND_INSERT), &resp).ok());
  EXPECT_EQ(resp.attn_cache().outcome(), v1::AttnCacheResult::DISABLED);
}

// stories260K, a real trained model: story prompts from one template that differ in the
// object; Classify names the character among four. The near-duplicates hit the cached entry of
// their template (same length, similarity above the threshold) and answer as without the cache.
TEST(PrefillRpcStories, NearDuplicatesHitAndClassifyAsUncached) {
  CLAA_REQUIRE_SHARED(model, "models/stories260K");
  ScratchDir dir("stories");
  PrefillServer server;
  ASSERT_TRUE(server.Start({"--model=" + model.string(), "--attn_cache_dir=" + dir.str(),
                            "--attn_cache_threshold=0.9"}))
      << server.log();
  const std::string story =
      "Once upon a time, there was a little girl named {N}. {N} had a red {O}. She loved it "
      "very much. Every day, {N} played with it in the park. One day, {N} lost it. She "
      "was very sad. Her mom helped her look for it. They found it under a big tree. {N} "
      "was very happy. She said thank you to her mom. From that day on,";
  const std::vector<std::string> names = {"Lily", "Tim", "Ben", "Sue"};
  auto request = [&](const std::string& name, const std::string& object, v1::AttnCacheMode mode) {
    v1::ClassifyRequest req;
    req.set_text(absl::StrReplaceAll(story, {{"{N}", name}, {"{O}", object}}));
    for (const std::string& n : names) req.add_labels(" " + n);
    req.set_attn_cache(mode);
    return req;
  };
  // Seed the cache with one story per name, then ask about other objects.
  for (const std::string& name : names) {
    v1::ClassifyResponse r;
    ASSERT_TRUE(Call(server, request(name, "ball", v1::ATTN_CACHE_LOOKUP_AND_INSERT), &r).ok());
  }
  int hits = 0, items = 0;
  for (const char* object : {"doll", "kite", "car"}) {
    for (int n = 0; n < int(names.size()); ++n) {
      v1::ClassifyResponse cached, uncached;
      ASSERT_TRUE(Call(server, request(names[n], object, v1::ATTN_CACHE_LOOKUP), &cached).ok());
      ASSERT_TRUE(Call(server, request(names[n], object, v1::ATTN_CACHE_OFF), &uncached).ok());
      ++items;
      hits += cached.attn_cache().outcome() == v1::AttnCacheResult::HIT;
      EXPECT_EQ(cached.index(), uncached.index()) << names[n] << " / " << object;
      EXPECT_EQ(uncached.index(), n) << names[n] << " / " << object;  // the labelled answer
      std::cout << names[n] << "/" << object << ": "
                << v1::AttnCacheResult::Outcome_Name(cached.attn_cache().outcome())
                << " similarity " << cached.attn_cache().similarity() << "\n";
    }
  }
  EXPECT_GE(hits, items / 2) << hits << " of " << items << " near-duplicates hit";
}

}  // namespace
}  // namespace claa
