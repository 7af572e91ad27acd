// --model_root containment (server/security/model_root.h) on a real file tree: "..", symlinks
// out of the root, the /models2-vs-/models prefix trick, and symlinked files inside a model.
#include "server/security/model_root.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/unit/security/temp_dir.h"

namespace claa::security {
namespace {

namespace fs = std::filesystem;
using ::claa::testing::TempDir;

TEST(IsWithin, ComparesWholeComponents) {
  EXPECT_TRUE(IsWithin("/models", "/models"));
  EXPECT_TRUE(IsWithin("/models/", "/models"));
  EXPECT_TRUE(IsWithin("/models/llama", "/models/"));
  EXPECT_TRUE(IsWithin("/models/a/b/c", "/models"));
  EXPECT_FALSE(IsWithin("/models2", "/models"));
  EXPECT_FALSE(IsWithin("/models2/llama", "/models"));
  EXPECT_FALSE(IsWithin("/mod", "/models"));
  EXPECT_FALSE(IsWithin("/", "/models"));
  EXPECT_TRUE(IsWithin("/anything", "/"));
}

class ModelRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (dir_.path() / "models").string();
    dir_.Write("models/llama/config.json", "{}");
    dir_.Write("models2/evil/config.json", "{}");
    dir_.Write("secret.txt", "secret");
  }
  TempDir dir_;
  std::string root_;
};

TEST_F(ModelRootTest, AcceptsPathsInsideAndReturnsThemResolved) {
  auto p = ConfineToRoot(root_ + "/llama", root_, "--model");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, fs::canonical(root_ + "/llama"));
  // A path that does not exist yet (a cache folder the server will create) is fine inside.
  EXPECT_TRUE(ConfineToRoot(root_ + "/cache/new", root_, "--attn_cache_dir").ok());
  // ".." that stays inside is fine.
  EXPECT_TRUE(ConfineToRoot(root_ + "/llama/../llama", root_, "--model").ok());
}

TEST_F(ModelRootTest, RefusesDotDotEscapesNamingPathAndRoot) {
  auto p = ConfineToRoot(root_ + "/../secret.txt", root_, "--attn_cache_projector");
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(p.status().message());
  EXPECT_NE(message.find("--attn_cache_projector " + root_ + "/../secret.txt"), std::string::npos)
      << message;
  EXPECT_NE(message.find("outside --model_root " + fs::canonical(root_).string()),
            std::string::npos)
      << message;
  EXPECT_FALSE(ConfineToRoot(root_ + "/llama/../../models2/evil", root_, "--model").ok());
  EXPECT_FALSE(ConfineToRoot(root_ + "/no/such/../../../secret.txt", root_, "--model").ok());
}

TEST_F(ModelRootTest, RefusesTheSiblingWithTheRootAsPrefix) {
  EXPECT_FALSE(ConfineToRoot((dir_.path() / "models2/evil").string(), root_, "--model").ok());
}

TEST_F(ModelRootTest, FollowsSymlinks) {
  fs::create_directory_symlink(dir_.path() / "models2/evil", root_ + "/link_out");
  fs::create_directory_symlink(root_ + "/llama", root_ + "/link_in");
  auto out = ConfineToRoot(root_ + "/link_out", root_, "--model");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("resolves to " +
                                        fs::canonical(dir_.path() / "models2/evil").string()),
            std::string::npos)
      << out.status();
  EXPECT_TRUE(ConfineToRoot(root_ + "/link_in", root_, "--model").ok());
  // The root itself given through a symlink works (both sides are resolved).
  fs::create_directory_symlink(root_, dir_.path() / "root_link");
  EXPECT_TRUE(ConfineToRoot(root_ + "/llama", (dir_.path() / "root_link").string(), "--model").ok());
}

TEST_F(ModelRootTest, ModelDirRefusesASymlinkedFileThatPointsOut) {
  EXPECT_TRUE(ConfineModelDir(root_ + "/llama", root_, "--model").ok());
  fs::create_symlink(dir_.path() / "secret.txt", root_ + "/llama/tokenizer.json");
  auto p = ConfineModelDir(root_ + "/llama", root_, "--model");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("tokenizer.json"), std::string::npos) << p.status();
}

TEST_F(ModelRootTest, ConfineModelPathsResolvesEachSetPathOrNamesTheFirstOutside) {
  ModelPaths paths{.model_dir = root_ + "/llama/", .attn_cache_dir = root_ + "/x/../cache"};
  ASSERT_TRUE(ConfineModelPaths(root_, paths).ok());
  EXPECT_EQ(paths.model_dir, fs::canonical(root_ + "/llama").string());
  EXPECT_EQ(paths.attn_cache_dir, fs::canonical(root_).string() + "/cache");
  EXPECT_EQ(paths.attn_cache_projector, "");  // unset stays unset
  ModelPaths outside{.model_dir = root_ + "/llama",
                     .attn_cache_projector = (dir_.path() / "secret.txt").string()};
  absl::Status s = ConfineModelPaths(root_, outside);
  EXPECT_NE(s.message().find("--attn_cache_projector"), std::string::npos) << s;
}

TEST_F(ModelRootTest, RootMustBeADirectory) {
  auto p = ConfineToRoot(root_, (dir_.path() / "secret.txt").string(), "--model");
  EXPECT_NE(p.status().message().find("not a directory"), std::string::npos) << p.status();
}

}  // namespace
}  // namespace claa::security
