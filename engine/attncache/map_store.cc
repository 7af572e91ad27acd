#include "engine/attncache/map_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/attncache/checksum.h"

namespace claa::attncache {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'C', 'L', 'A', 'A', 'A', 'T', 'T', 'N'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderBytes = 128;
constexpr uint32_t kDtypeFp16 = 1;
constexpr size_t kMapsAlign = 64;
constexpr char kExtension[] = ".attn";
constexpr char kMetaName[] = "store.meta";
// Longest input an entry may claim; a larger value in a header is damage, not a real entry.
constexpr uint32_t kMaxTokens = 1u << 20;

// On-disk header; every field is written explicitly little-endian by the x86-64 / aarch64 hosts
// we build for (static_assert below), so the struct is copied as is.
struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  uint64_t model_fingerprint;
  uint32_t layers;
  uint32_t heads;
  uint32_t tokens;
  uint32_t dtype;
  uint64_t sequence;
  uint64_t tokens_offset;
  uint64_t maps_offset;
  uint64_t file_bytes;
  uint64_t payload_checksum;  // bytes [header_bytes, file_bytes)
  uint8_t reserved[40];
  uint64_t header_checksum;  // bytes [0, 120)
};
static_assert(sizeof(FileHeader) == kHeaderBytes);
static_assert(offsetof(FileHeader, header_checksum) == kHeaderBytes - 8);
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "store files are little-endian");

uint64_t MapsOffset(uint32_t tokens) {
  const uint64_t end = kHeaderBytes + uint64_t(tokens) * sizeof(int32_t);
  return (end + kMapsAlign - 1) / kMapsAlign * kMapsAlign;
}

std::string EntryName(int64_t id) { return absl::StrFormat("%016x%s", id, kExtension); }

// The id in an entry (or refused entry) file name, or -1.
int64_t IdFromName(const std::string& name) {
  if (name.size() < 16) return -1;
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(name.substr(0, 16), &id)) return -1;
  return int64_t(id);
}

absl::Status Damaged(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat("attn cache file ", path, " is corrupt: ", what,
                                          "; refusing it"));
}

std::string MetaText(const StoreOptions& o) {
  return absl::StrFormat("claa-attn-cache %d\nmodel_fingerprint %016x\nlayers %d\nheads %d\n",
                         kVersion, o.model_fingerprint, o.layers, o.heads);
}

}  // namespace

StoreEntry::~StoreEntry() {
  if (mapping_ != nullptr) munmap(mapping_, size_t(file_bytes_));
}

int64_t MapStore::EntryFileBytes(const MapsShape& shape) {
  return int64_t(MapsOffset(uint32_t(shape.length)) + shape.bytes());
}

absl::StatusOr<std::shared_ptr<const StoreEntry>> MapStore::ReadEntry(const std::string& path,
                                                                      const StoreOptions& options,
                                                                      bool verify_payload) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("attn cache file ", path, ": ", strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("attn cache file ", path, ": ", strerror(err)));
  }
  const int64_t size = st.st_size;
  if (size < int64_t(kHeaderBytes)) {
    close(fd);
    return Damaged(path, absl::StrCat("only ", size, " bytes, shorter than the ", kHeaderBytes,
                                      "-byte header"));
  }
  void* mapping = mmap(nullptr, size_t(size), PROT_READ, MAP_SHARED, fd, 0);
  const int map_err = errno;
  close(fd);  // the mapping keeps the file open
  if (mapping == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("attn cache file ", path, ": mmap: ",
                                            strerror(map_err)));
  }
  std::shared_ptr<StoreEntry> entry(new StoreEntry());
  entry->mapping_ = mapping;  // unmapped by the entry from here on, whatever happens
  entry->file_bytes_ = size;
  entry->path_ = path;
  const auto* bytes = static_cast<const unsigned char*>(mapping);
  FileHeader h;
  std::memcpy(&h, bytes, sizeof(h));

  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    return Damaged(path, "bad magic (not an attention map file)");
  }
  if (h.header_checksum != Checksum64(bytes, offsetof(FileHeader, header_checksum))) {
    return Damaged(path, "header checksum mismatch");
  }
  if (h.version != kVersion) {
    return Damaged(path, absl::StrCat("format version ", h.version, ", this build reads ",
                                      kVersion));
  }
  if (h.header_bytes != kHeaderBytes || h.dtype != kDtypeFp16) {
    return Damaged(path, absl::StrCat("header size ", h.header_bytes, " / dtype ", h.dtype,
                                      " not understood"));
  }
  if (h.model_fingerprint != options.model_fingerprint) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "attn cache file %s holds maps of another model (fingerprint %016x, serving %016x)", path,
        h.model_fingerprint, options.model_fingerprint));
  }
  if (int(h.layers) != options.layers || int(h.heads) != options.heads) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "attn cache file %s has maps for %d layers x %d heads, the model has %d x %d", path,
        h.layers, h.heads, options.layers, options.heads));
  }
  const MapsShape shape{int(h.layers), int(h.heads), int(h.tokens)};
  if (h.tokens < 1 || h.tokens > kMaxTokens || h.tokens_offset != kHeaderBytes ||
      h.maps_offset != MapsOffset(h.tokens) ||
      h.file_bytes != uint64_t(EntryFileBytes(shape))) {
    return Damaged(path, absl::StrCat("inconsistent layout (", h.tokens, " tokens, maps at ",
                                      h.maps_offset, ", ", h.file_bytes, " bytes)"));
  }
  if (h.file_bytes != uint64_t(size)) {
    return Damaged(path, absl::StrCat("truncated or extended: header says ", h.file_bytes,
                                      " bytes, the file has ", size));
  }
  const uint64_t sum =
      verify_payload ? Checksum64(bytes + kHeaderBytes, size_t(size) - kHeaderBytes)
                     : h.payload_checksum;
  if (sum != h.payload_checksum) {
    return Damaged(path, absl::StrFormat("payload checksum mismatch (stored %016x, computed %016x)",
                                         h.payload_checksum, sum));
  }
  entry->id_ = IdFromName(fs::path(path).filename().string());
  entry->sequence_ = h.sequence;
  entry->tokens_ = absl::MakeConstSpan(
      reinterpret_cast<const int32_t*>(bytes + h.tokens_offset), h.tokens);
  entry->maps_ = MapsView{reinterpret_cast<const uint16_t*>(bytes + h.maps_offset), shape};
  return std::shared_ptr<const StoreEntry>(std::move(entry));
}

absl::Status MapStore::CheckMeta() {
  const fs::path meta = fs::path(options_.dir) / kMetaName;
  const std::string want = MetaText(options_);
  std::ifstream in(meta);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str() != want) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--attn_cache_dir ", options_.dir, " holds attention maps of another model or format (",
          meta.string(), " says:\n", ss.str(), "this server needs:\n", want,
          "); point the cache at another directory or empty this one"));
    }
    return absl::OkStatus();
  }
  const std::string tmp = meta.string() + ".tmp";
  std::ofstream out(tmp, std::ios::trunc);
  out << want;
  out.close();
  std::error_code ec;
  if (!out || (fs::rename(tmp, meta, ec), ec)) {
    return absl::InternalError(absl::StrCat("cannot write ", meta.string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MapStore>> MapStore::Open(StoreOptions options,
                                                         std::vector<RefusedFile>* refused) {
  if (options.dir.empty()) return absl::InvalidArgumentError("attn cache directory is empty");
  if (options.max_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attn cache size bound must be positive, got ", options.max_bytes));
  }
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec || !fs::is_directory(options.dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create attn cache directory ", options.dir, ": ", ec.message()));
  }
  std::unique_ptr<MapStore> store(new MapStore(options));
  if (absl::Status s = store->CheckMeta(); !s.ok()) return s;

  std::vector<std::shared_ptr<const StoreEntry>> loaded;
  for (const fs::directory_entry& de : fs::directory_iterator(options.dir, ec)) {
    const std::string name = de.path().filename().string();
    const std::string path = de.path().string();
    store->next_id_ = std::max(store->next_id_, IdFromName(name) + 1);
    if (name.size() > 4 && name.ends_with(".tmp")) {
      fs::remove(de.path(), ec);  // an insert that a crash interrupted
      continue;
    }
    if (!name.ends_with(kExtension)) continue;
    absl::StatusOr<std::shared_ptr<const StoreEntry>> entry = ReadEntry(path, options);
    if (!entry.ok() || (*entry)->id() < 0) {
      absl::Status error = entry.ok() ? Damaged(path, "file name is not an entry id")
                                      : entry.status();
      // Renamed, not deleted: the operator can inspect it, and it is never read again.
      fs::rename(de.path(), path + ".corrupt", ec);
      if (refused != nullptr) refused->push_back(RefusedFile{path, std::move(error)});
      continue;
    }
    store->next_sequence_ = std::max(store->next_sequence_, (*entry)->sequence() + 1);
    loaded.push_back(*std::move(entry));
  }
  std::sort(loaded.begin(), loaded.end(),
            [](const auto& a, const auto& b) { return a->sequence() < b->sequence(); });
  for (auto& e : loaded) store->Add(std::move(e));
  while (store->bytes_ > store->options_.max_bytes && !store->lru_.empty()) {
    store->Evict(store->lru_.front());
  }
  return store;
}

void MapStore::Add(std::shared_ptr<const StoreEntry> entry) {
  const int64_t id = entry->id();
  bytes_ += entry->file_bytes();
  lru_.push_back(id);
  entries_[id] = Slot{std::move(entry), std::prev(lru_.end())};
}

void MapStore::Evict(int64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  std::error_code ec;
  fs::remove(it->second.entry->path(), ec);  // an open mapping stays valid after unlink
  bytes_ -= it->second.entry->file_bytes();
  lru_.erase(it->second.lru);
  entries_.erase(it);
  ++evictions_;
}

absl::StatusOr<std::shared_ptr<const StoreEntry>> MapStore::Insert(
    absl::Span<const int32_t> tokens, const MapsView& maps, std::vector<int64_t>* evicted) {
  const MapsShape& shape = maps.shape;
  if (shape.length != int(tokens.size()) || shape.layers != options_.layers ||
      shape.heads != options_.heads || tokens.empty() || uint32_t(shape.length) > kMaxTokens) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "maps [%d layers x %d heads x %d tokens] do not fit %d tokens on a %d x %d model",
        shape.layers, shape.heads, shape.length, tokens.size(), options_.layers,
        options_.heads));
  }
  const int64_t file_bytes = EntryFileBytes(shape);
  if (file_bytes > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "an entry of ", tokens.size(), " tokens takes ", file_bytes,
        " bytes, more than the attn cache bound of ", options_.max_bytes));
  }
  while (bytes_ + file_bytes > options_.max_bytes && !lru_.empty()) {
    const int64_t victim = lru_.front();
    Evict(victim);
    if (evicted != nullptr) evicted->push_back(victim);
  }

  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.header_bytes = kHeaderBytes;
  h.model_fingerprint = options_.model_fingerprint;
  h.layers = uint32_t(shape.layers);
  h.heads = uint32_t(shape.heads);
  h.tokens = uint32_t(shape.length);
  h.dtype = kDtypeFp16;
  h.sequence = next_sequence_++;
  h.tokens_offset = kHeaderBytes;
  h.maps_offset = MapsOffset(h.tokens);
  h.file_bytes = uint64_t(file_bytes);
  std::vector<unsigned char> payload(size_t(file_bytes) - kHeaderBytes, 0);
  std::memcpy(payload.data(), tokens.data(), tokens.size() * sizeof(int32_t));
  std::memcpy(payload.data() + (h.maps_offset - kHeaderBytes), maps.data, shape.bytes());
  h.payload_checksum = Checksum64(payload.data(), payload.size());
  h.header_checksum = Checksum64(&h, offsetof(FileHeader, header_checksum));

  const int64_t id = next_id_++;
  const std::string path = (fs::path(options_.dir) / EntryName(id)).string();
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", strerror(errno)));
  }
  auto write_all = [fd](const void* data, size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= size_t(w);
    }
    return true;
  };
  const bool ok = write_all(&h, sizeof(h)) && write_all(payload.data(), payload.size());
  const int write_err = errno;
  close(fd);
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(write_err)));
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", ec.message()));
  }
  // Written and checksummed just above: map it without reading it all back.
  absl::StatusOr<std::shared_ptr<const StoreEntry>> entry =
      ReadEntry(path, options_, /*verify_payload=*/false);
  if (!entry.ok()) return entry.status();
  Add(*entry);
  return entry;
}

std::shared_ptr<const StoreEntry> MapStore::Get(int64_t id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second.entry;
}

void MapStore::Touch(int64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  lru_.splice(lru_.end(), lru_, it->second.lru);
}

std::vector<std::shared_ptr<const StoreEntry>> MapStore::Entries() const {
  std::vector<std::shared_ptr<const StoreEntry>> out;
  for (int64_t id : lru_) out.push_back(entries_.at(id).entry);
  return out;
}

}  // namespace claa::attncache
