#ifndef CLAA_ENGINE_ATTNCACHE_MAP_STORE_H_
#define CLAA_ENGINE_ATTNCACHE_MAP_STORE_H_

// Persistent store of cached attention maps: one file per entry in a directory, memory-mapped
// read-only, under a byte bound with least-recently-used eviction.
//
// Entry file (little-endian):
//   [0, 128)   header: magic "CLAAATTN", format version, header size, model fingerprint, map
//              shape (layers, heads, tokens), dtype (fp16), insertion sequence, section offsets,
//              file size, checksum of everything after the header, checksum of the header;
//   tokens     int32[tokens] (the input: its lookup feature is recomputed from them at start-up,
//              so a new projector never leaves stale vectors behind);
//   maps       fp16, 64-byte aligned, attention_maps.h's layout.
// Files are written to a temporary name and renamed, so a crash leaves no half-written entry
// under a real name; a file that is damaged anyway fails its checksum. `store.meta` records the
// model the maps belong to: opening the directory with another model is refused, because its maps
// would be silently wrong.
//
// Eviction: least recently used (a hit counts as a use). Across a restart the order starts from
// the insertion order (use times are not written back, to keep hits read-only).
//
// Not thread-safe: the owner (AttnCache) serialises calls. Entries are shared_ptrs, so a forward
// pass may keep using an entry's mapping while it is evicted.
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/attncache/attention_maps.h"

namespace claa::attncache {

struct StoreOptions {
  std::string dir;
  int64_t max_bytes = int64_t{1} << 30;
  uint64_t model_fingerprint = 0;
  int layers = 0;  // the model's: every entry must match
  int heads = 0;
};

class StoreEntry {
 public:
  ~StoreEntry();
  StoreEntry(const StoreEntry&) = delete;
  StoreEntry& operator=(const StoreEntry&) = delete;

  int64_t id() const { return id_; }
  uint64_t sequence() const { return sequence_; }
  absl::Span<const int32_t> tokens() const { return tokens_; }
  MapsView maps() const { return maps_; }
  int64_t file_bytes() const { return file_bytes_; }
  const std::string& path() const { return path_; }

 private:
  friend class MapStore;
  StoreEntry() = default;
  int64_t id_ = -1;
  uint64_t sequence_ = 0;
  std::string path_;
  void* mapping_ = nullptr;
  int64_t file_bytes_ = 0;
  absl::Span<const int32_t> tokens_;
  MapsView maps_;
};

struct RefusedFile {
  std::string path;
  absl::Status error;
};

class MapStore {
 public:
  // Opens (creating when missing) the directory. Every entry file is verified (header, shape,
  // model, checksums); a file that fails is refused: it is renamed to <name>.corrupt, left out,
  // and reported in *refused with a message naming the file and the problem. A directory that
  // belongs to another model fails with FailedPrecondition. Then entries are evicted down to the
  // bound (it may have shrunk since the last run).
  static absl::StatusOr<std::unique_ptr<MapStore>> Open(StoreOptions options,
                                                        std::vector<RefusedFile>* refused);

  // Reads and verifies one entry file: DataLoss naming the file and what is wrong for damage,
  // FailedPrecondition when it is another model's or shape's. Used by Open (and tests).
  // verify_payload=false skips the payload checksum (a file this process just wrote).
  static absl::StatusOr<std::shared_ptr<const StoreEntry>> ReadEntry(const std::string& path,
                                                                     const StoreOptions& options,
                                                                     bool verify_payload = true);

  // Writes a new entry for `tokens` with `maps` (shape.length == tokens.size()), evicting least
  // recently used entries until it fits; their ids are appended to *evicted. ResourceExhausted
  // (nothing evicted) when the entry alone exceeds the bound.
  absl::StatusOr<std::shared_ptr<const StoreEntry>> Insert(absl::Span<const int32_t> tokens,
                                                           const MapsView& maps,
                                                           std::vector<int64_t>* evicted);

  // The entry, or null; Touch marks it used (moves it last in the eviction order).
  std::shared_ptr<const StoreEntry> Get(int64_t id) const;
  void Touch(int64_t id);
  // All entries, oldest use first.
  std::vector<std::shared_ptr<const StoreEntry>> Entries() const;

  int64_t bytes() const { return bytes_; }
  int64_t max_bytes() const { return options_.max_bytes; }
  int64_t evictions() const { return evictions_; }
  size_t size() const { return entries_.size(); }
  // Bytes an entry of this shape takes on disk.
  static int64_t EntryFileBytes(const MapsShape& shape);

 private:
  explicit MapStore(StoreOptions options) : options_(std::move(options)) {}
  absl::Status CheckMeta();
  void Add(std::shared_ptr<const StoreEntry> entry);
  void Evict(int64_t id);

  StoreOptions options_;
  struct Slot {
    std::shared_ptr<const StoreEntry> entry;
    std::list<int64_t>::iterator lru;
  };
  std::unordered_map<int64_t, Slot> entries_;
  std::list<int64_t> lru_;  // front: least recently used
  int64_t bytes_ = 0;
  int64_t evictions_ = 0;
  int64_t next_id_ = 1;
  uint64_t next_sequence_ = 1;
};

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_MAP_STORE_H_
