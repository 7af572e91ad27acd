// The map store: persistence across reopen, refusal of damaged files with a clear error, the
// size bound with LRU eviction, and refusal of another model's directory.
#include "engine/attncache/map_store.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/unit/attncache/attncache_test_util.h"

namespace claa::attncache {
namespace {

using ::claa::testing::ScratchDir;
using ::claa::testing::Tokens;

constexpr int kLayers = 2, kHeads = 3;

StoreOptions Options(const std::string& dir, int64_t max_bytes = 1 << 20) {
  StoreOptions o;
  o.dir = dir;
  o.max_bytes = max_bytes;
  o.model_fingerprint = 0x1234;
  o.layers = kLayers;
  o.heads = kHeads;
  return o;
}

std::vector<uint16_t> Maps(int n, uint16_t fill) {
  return std::vector<uint16_t>(MapsShape{kLayers, kHeads, n}.values(), fill);
}

absl::StatusOr<std::shared_ptr<const StoreEntry>> Put(MapStore& store, int n, uint16_t fill,
                                                      std::vector<int64_t>* evicted = nullptr) {
  static std::vector<std::vector<uint16_t>> keep;  // maps outlive the call
  keep.push_back(Maps(n, fill));
  std::vector<int32_t> tokens = Tokens(n, fill);
  return store.Insert(tokens, MapsView{keep.back().data(), MapsShape{kLayers, kHeads, n}},
                      evicted);
}

TEST(MapStore, EntriesSurviveReopen) {
  ScratchDir dir("persist");
  int64_t id = -1;
  {
    auto store = MapStore::Open(Options(dir.str()), nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    auto e = Put(**store, 12, 0x3C00);
    ASSERT_TRUE(e.ok()) << e.status();
    id = (*e)->id();
    EXPECT_EQ((*store)->bytes(), MapStore::EntryFileBytes(MapsShape{kLayers, kHeads, 12}));
  }
  std::vector<RefusedFile> refused;
  auto store = MapStore::Open(Options(dir.str()), &refused);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(refused.empty());
  ASSERT_EQ((*store)->size(), 1u);
  auto e = (*store)->Get(id);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::vector<int32_t>(e->tokens().begin(), e->tokens().end()), Tokens(12, 0x3C00));
  EXPECT_EQ(e->maps().shape, (MapsShape{kLayers, kHeads, 12}));
  EXPECT_EQ(e->maps().data[0], 0x3C00);
  EXPECT_EQ(e->maps().data[e->maps().shape.values() - 1], 0x3C00);
  // A new entry after reopen does not reuse the id.
  auto e2 = Put(**store, 5, 1);
  ASSERT_TRUE(e2.ok());
  EXPECT_GT((*e2)->id(), id);
}

// Flips one byte at `offset` (from the end when negative) of the only entry file.
std::string Damage(const std::filesystem::path& dir, long offset, bool truncate = false) {
  for (const auto& de : std::filesystem::directory_iterator(dir)) {
    if (de.path().extension() != ".attn") continue;
    const std::string path = de.path().string();
    if (truncate) {
      std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
      return path;
    }
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(offset, offset < 0 ? std::ios::end : std::ios::beg);
    const std::streampos pos = f.tellg();
    char c;
    f.read(&c, 1);
    c ^= 0x40;
    f.seekp(pos);
    f.write(&c, 1);
    return path;
  }
  return "";
}

struct DamageCase {
  const char* name;
  long offset;
  bool truncate;
  const char* message;
};

class MapStoreDamage : public ::testing::TestWithParam<DamageCase> {};

TEST_P(MapStoreDamage, RefusesTheFileWithAClearError) {
  const DamageCase& dc = GetParam();
  ScratchDir dir(std::string("damage_") + dc.name);
  {
    auto store = MapStore::Open(Options(dir.str()), nullptr);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE(Put(**store, 20, 0x3800).ok());
  }
  const std::string path = Damage(dir.path(), dc.offset, dc.truncate);
  ASSERT_FALSE(path.empty());
  // Reading the file directly names it and the problem.
  auto read = MapStore::ReadEntry(path, Options(dir.str()));
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(read.status().message().find(path), std::string::npos) << read.status();
  EXPECT_NE(read.status().message().find(dc.message), std::string::npos) << read.status();
  EXPECT_NE(read.status().message().find("corrupt"), std::string::npos) << read.status();

  // Opening the store refuses it, keeps it aside as .corrupt and serves without it.
  std::vector<RefusedFile> refused;
  auto store = MapStore::Open(Options(dir.str()), &refused);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].path, path);
  EXPECT_NE(refused[0].error.message().find(dc.message), std::string::npos);
  EXPECT_EQ((*store)->size(), 0u);
  EXPECT_EQ((*store)->bytes(), 0);
  EXPECT_TRUE(std::filesystem::exists(path + ".corrupt"));
  EXPECT_FALSE(std::filesystem::exists(path));
  // ...and keeps working.
  EXPECT_TRUE(Put(**store, 4, 1).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MapStoreDamage,
    ::testing::Values(DamageCase{"payload", -5, false, "payload checksum mismatch"},
                      DamageCase{"tokens", 130, false, "payload checksum mismatch"},
                      DamageCase{"magic", 0, false, "bad magic"},
                      DamageCase{"header", 30, false, "header checksum mismatch"},
                      DamageCase{"truncated", 0, true, "truncated"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(MapStore, EvictsLeastRecentlyUsedUnderTheBound) {
  ScratchDir dir("evict");
  const int64_t entry = MapStore::EntryFileBytes(MapsShape{kLayers, kHeads, 16});
  auto store = MapStore::Open(Options(dir.str(), 3 * entry), nullptr);
  ASSERT_TRUE(store.ok());
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto e = Put(**store, 16, uint16_t(i + 1));
    ASSERT_TRUE(e.ok());
    ids.push_back((*e)->id());
  }
  EXPECT_EQ((*store)->bytes(), 3 * entry);
  (*store)->Touch(ids[0]);  // ids[1] is now the least recently used
  std::vector<int64_t> evicted;
  ASSERT_TRUE(Put(**store, 16, 9, &evicted).ok());
  EXPECT_EQ(evicted, std::vector<int64_t>{ids[1]});
  EXPECT_EQ((*store)->Get(ids[1]), nullptr);
  EXPECT_NE((*store)->Get(ids[0]), nullptr);
  EXPECT_EQ((*store)->bytes(), 3 * entry);
  EXPECT_EQ((*store)->evictions(), 1);
  // The evicted file is gone from disk too.
  int files = 0;
  for (const auto& de : std::filesystem::directory_iterator(dir.path())) {
    files += de.path().extension() == ".attn";
  }
  EXPECT_EQ(files, 3);
  // An entry larger than the whole bound is refused without evicting anything.
  evicted.clear();
  auto big = Put(**store, 40, 1, &evicted);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ((*store)->size(), 3u);
}

TEST(MapStore, ReopenWithASmallerBoundEvictsOldestFirst) {
  ScratchDir dir("shrink");
  const int64_t entry = MapStore::EntryFileBytes(MapsShape{kLayers, kHeads, 8});
  std::vector<int64_t> ids;
  {
    auto store = MapStore::Open(Options(dir.str()), nullptr);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 4; ++i) ids.push_back((*Put(**store, 8, uint16_t(i)))->id());
  }
  auto store = MapStore::Open(Options(dir.str(), 2 * entry), nullptr);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->size(), 2u);
  EXPECT_EQ((*store)->Get(ids[0]), nullptr);
  EXPECT_NE((*store)->Get(ids[3]), nullptr);
}

TEST(MapStore, RefusesAnotherModelsDirectory) {
  ScratchDir dir("model");
  {
    auto store = MapStore::Open(Options(dir.str()), nullptr);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE(Put(**store, 8, 1).ok());
  }
  StoreOptions other = Options(dir.str());
  other.model_fingerprint = 0x9999;
  auto store = MapStore::Open(other, nullptr);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("another model"), std::string::npos) << store.status();
}

}  // namespace
}  // namespace claa::attncache
