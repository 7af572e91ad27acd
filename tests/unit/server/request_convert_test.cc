// Conversion of public GenerateRequests: defaults, tokenization, and errors naming the field.
#include "server/request_convert.h"

#include <cmath>

#include "gtest/gtest.h"

namespace claa {
namespace {

class RequestConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = Tokenizer::FromJson(BuiltinTokenizerJson());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = *std::move(t);
  }
  absl::StatusOr<GenerationRequest> Convert(const v1::GenerateRequest& r) {
    return ConvertGenerateRequest(r, *tokenizer_, "generated-7");
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(RequestConvertTest, DefaultsAndTokenization) {
  v1::GenerateRequest r;
  r.set_text("Hi");
  auto out = Convert(r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->request_id, "generated-7");
  EXPECT_EQ(out->max_tokens, kDefaultMaxTokens);
  EXPECT_FLOAT_EQ(out->sampling.temperature, 1.0f);
  EXPECT_FALSE(out->sampling.seed.has_value());
  EXPECT_TRUE(out->skip_special_tokens);
  // BOS is added by default, not when the client says so.
  ASSERT_EQ(out->prompt_ids.size(), 3u);
  EXPECT_EQ(out->prompt_ids[0], *tokenizer_->bos_id());
  r.set_add_special_tokens(false);
  EXPECT_EQ(Convert(r)->prompt_ids.size(), 2u);
}

TEST_F(RequestConvertTest, CopiesSamplingAndStops) {
  v1::GenerateRequest r;
  r.set_request_id("mine");
  r.mutable_token_ids()->add_ids(5);
  auto* s = r.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_p(0.9f);
  s->set_top_k(40);
  s->set_seed(123);
  s->set_max_tokens(77);
  s->add_stop("\n\n");
  s->add_stop_token_ids(9);
  s->set_ignore_eos(true);
  auto out = Convert(r);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->request_id, "mine");
  EXPECT_EQ(out->prompt_ids, std::vector<int32_t>{5});
  EXPECT_FLOAT_EQ(out->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(out->sampling.top_p, 0.9f);
  EXPECT_EQ(out->sampling.top_k, 40);
  EXPECT_EQ(out->sampling.seed, 123u);
  EXPECT_EQ(out->max_tokens, 77);
  EXPECT_EQ(out->stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(out->stop_token_ids, std::vector<int32_t>{9});
  EXPECT_TRUE(out->ignore_eos);
}

TEST_F(RequestConvertTest, ErrorsNameTheField) {
  auto expect_error = [&](const v1::GenerateRequest& r, const std::string& field) {
    auto out = Convert(r);
    ASSERT_FALSE(out.ok()) << field;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(out.status().message().substr(0, field.size()), field) << out.status();
  };
  expect_error(v1::GenerateRequest(), "prompt");
  v1::GenerateRequest r;
  r.set_text(std::string("bad \xff\xfe utf8"));
  expect_error(r, "prompt.text");
  r.set_text("");
  expect_error(r, "prompt.text");
  r.set_text(std::string(kMaxPromptTextBytes + 1, 'a'));
  expect_error(r, "prompt.text");
  r.mutable_token_ids();
  expect_error(r, "prompt.token_ids");
  r.mutable_token_ids()->add_ids(1);
  r.set_request_id(std::string(300, 'x'));
  expect_error(r, "request_id");
  r.set_request_id("tab\tinside");
  expect_error(r, "request_id");
  r.set_request_id("ok");
  r.mutable_sampling()->set_max_tokens(0);
  expect_error(r, "sampling.max_tokens");
}

TEST(PruningOptionsTest, DefaultsAndOverrides) {
  const PruningConfig server = DefaultPruningConfig(PruningMethod::kFull, 32, 0.2);
  v1::PruningOptions p;
  auto none = ConvertPruningOptions(p, server, 32);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->method, PruningMethod::kFull);
  p.set_method(v1::PruningOptions::CLAA);
  auto claa = ConvertPruningOptions(p, server, 32);
  ASSERT_TRUE(claa.ok());
  EXPECT_EQ(claa->method, PruningMethod::kClaa);
  EXPECT_DOUBLE_EQ(claa->keep_ratio, 0.2);  // the server's keep ratio
  EXPECT_EQ(claa->pruning_layer, 15);
  p.set_method(v1::PruningOptions::GEMFILTER);
  p.set_keep_ratio(0.4f);
  auto gem = ConvertPruningOptions(p, server, 32);
  ASSERT_TRUE(gem.ok());
  EXPECT_EQ(gem->pruning_layer, 13);
  EXPECT_EQ(gem->keep_ratio, 0.4);  // the float on the wire is rounded back to 0.4
  EXPECT_EQ(gem->KeepCount(200), 80);
  // METHOD_UNSPECIFIED takes the server's method.
  const PruningConfig claa_server = DefaultPruningConfig(PruningMethod::kClaa, 32, 0.1);
  auto unspecified = ConvertPruningOptions(v1::PruningOptions(), claa_server, 32);
  ASSERT_TRUE(unspecified.ok());
  EXPECT_EQ(unspecified->method, PruningMethod::kClaa);
}

TEST(PruningOptionsTest, RangesAreChecked) {
  const PruningConfig server = DefaultPruningConfig(PruningMethod::kFull, 32, 0.2);
  v1::PruningOptions p;
  p.set_method(v1::PruningOptions::CLAA);
  p.set_keep_ratio(0.2f);
  p.set_pruning_layer(15);
  p.set_window(8);
  p.set_aggregation_layers(4);
  p.set_min_layer(4);
  p.set_pooling_kernel(7);
  EXPECT_TRUE(ConvertPruningOptions(p, server, 32).ok());
  auto field_of = [&](const v1::PruningOptions& bad) {
    absl::Status s = ConvertPruningOptions(bad, server, 32).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message().substr(0, s.message().find(':')));
  };
  v1::PruningOptions bad = p;
  bad.set_keep_ratio(1.5f);
  EXPECT_EQ(field_of(bad), "pruning.keep_ratio");
  bad.set_keep_ratio(std::nanf(""));
  EXPECT_EQ(field_of(bad), "pruning.keep_ratio");
  bad = p;
  bad.set_pruning_layer(32);
  EXPECT_EQ(field_of(bad), "pruning.pruning_layer");
  bad = p;
  bad.set_pooling_kernel(4);
  EXPECT_EQ(field_of(bad), "pruning.pooling_kernel");
  bad = p;
  bad.set_window(0);
  EXPECT_EQ(field_of(bad), "pruning.window");
  bad = p;
  bad.set_aggregation_layers(17);  // reaches below layer 0 from layer 15
  EXPECT_EQ(field_of(bad), "pruning.aggregation_layers");
  bad = p;
  bad.set_method(static_cast<v1::PruningOptions::Method>(42));
  EXPECT_EQ(field_of(bad), "pruning.method");
}

}  // namespace
}  // namespace claa
