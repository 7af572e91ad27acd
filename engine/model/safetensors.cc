#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace claa {

// The format is little-endian and we reinterpret bytes directly.
static_assert(std::endian::native == std::endian::little, "safetensors reader assumes little-endian");

namespace {

using json = nlohmann::json;

// This Abseil build's absl::string_view is not std::string_view, so StrCat needs a conversion.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A header this large is certainly corrupt (real ones are a few hundred KB at most); the
// limit keeps a garbage length from making us parse gigabytes of tensor data as JSON.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::optional<DType> ParseDType(std::string_view s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  return std::nullopt;
}

// Non-negative integer, or nullopt.
std::optional<uint64_t> NonNegative(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

// Converts `count` elements starting at `src` (possibly unaligned) to fp32.
void Convert(DType dtype, const uint8_t* src, size_t count, float* dst) {
  if (count == 0) return;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = HalfToFloat(h);
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = BFloat16ToFloat(b);
      }
      return;
  }
}

absl::StatusOr<std::string> ReadTextFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return text.str();
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

size_t DTypeSize(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in fp32.
    float mag = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -mag : mag;
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or nan keeping its payload
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float BFloat16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// One read-only mapping of a whole file, unmapped on destruction.
class SafetensorsArchive::Mapping {
 public:
  static absl::StatusOr<std::unique_ptr<Mapping>> Open(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      std::string msg = absl::StrCat(path.string(), ": cannot open: ", std::strerror(err));
      return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a regular file"));
    }
    auto m = std::unique_ptr<Mapping>(new Mapping());
    m->size_ = static_cast<size_t>(st.st_size);
    if (m->size_ > 0) {
      void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        return absl::InternalError(
            absl::StrCat(path.string(), ": mmap failed: ", std::strerror(err)));
      }
      m->data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // The mapping stays valid after the descriptor is closed.
    return m;
  }

  ~Mapping() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  Mapping() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

SafetensorsArchive::SafetensorsArchive() = default;
SafetensorsArchive::~SafetensorsArchive() = default;

absl::StatusOr<SafetensorsArchive::TensorMap> SafetensorsArchive::MapFile(
    const std::filesystem::path& path) {
  const std::string file = path.string();
  CLAA_ASSIGN_OR_RETURN(std::unique_ptr<Mapping> mapping, Mapping::Open(path));
  const uint8_t* base = mapping->data();
  const uint64_t size = mapping->size();
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
  };

  if (size < 8) {
    return bad(absl::StrCat("truncated: ", size, " bytes, less than the 8-byte header length"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeaderBytes) {
    return bad(absl::StrCat("header length ", header_len, " is absurd (limit ", kMaxHeaderBytes,
                            " bytes); not a safetensors file?"));
  }
  if (header_len > size - 8) {
    return bad(absl::StrCat("truncated: header length ", header_len, " exceeds the ", size - 8,
                            " bytes after the length prefix"));
  }
  json header = json::parse(reinterpret_cast<const char*>(base + 8),
                            reinterpret_cast<const char*>(base + 8 + header_len),
                            /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return bad("header is not a JSON object");
  }
  const uint8_t* data_section = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  TensorMap tensors;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // non-empty [begin, end), for overlap check
  std::vector<const std::string*> range_names;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    // A plain reference: clang before 16 cannot capture a structured binding in a lambda.
    const std::string& tensor_name = name;
    auto bad_tensor = [&](absl::string_view what) {
      return bad(absl::StrCat("tensor '", Av(tensor_name), "': ", what));
    };
    if (!entry.is_object()) return bad_tensor("entry is not an object");

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return bad_tensor("missing dtype");
    const std::string dtype_str = dtype_it->get<std::string>();
    std::optional<DType> dtype = ParseDType(dtype_str);
    if (!dtype) {
      return bad_tensor(
          absl::StrCat("unsupported dtype '", dtype_str, "' (supported: F32, F16, BF16)"));
    }

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) return bad_tensor("missing shape");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const json& d : *shape_it) {
      std::optional<uint64_t> dim = NonNegative(d);
      if (!dim || *dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad_tensor("shape entries must be non-negative integers");
      }
      if (__builtin_mul_overflow(numel, *dim, &numel)) return bad_tensor("shape overflows");
      shape.push_back(static_cast<int64_t>(*dim));
    }

    auto off_it = entry.find("data_offsets");
    if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) {
      return bad_tensor("data_offsets must be [begin, end]");
    }
    std::optional<uint64_t> begin = NonNegative((*off_it)[0]);
    std::optional<uint64_t> end = NonNegative((*off_it)[1]);
    if (!begin || !end) return bad_tensor("data_offsets must be non-negative integers");
    if (*end < *begin) {
      return bad_tensor(absl::StrCat("data_offsets end ", *end, " < begin ", *begin));
    }
    if (*end > data_size) {
      return bad_tensor(absl::StrCat("data_offsets [", *begin, ", ", *end,
                                     ") out of range of the ", data_size,
                                     "-byte data section (truncated file?)"));
    }
    uint64_t expected_bytes;
    if (__builtin_mul_overflow(numel, DTypeSize(*dtype), &expected_bytes) ||
        expected_bytes != *end - *begin) {
      return bad_tensor(absl::StrCat("data_offsets span ", *end - *begin, " bytes but ",
                                     dtype_str, " ", ShapeString(shape), " needs ",
                                     numel * DTypeSize(*dtype)));
    }

    TensorInfo info{name, *dtype, std::move(shape), data_section + *begin,
                    static_cast<size_t>(*end - *begin), file};
    auto [it, inserted] = tensors.emplace(name, std::move(info));
    if (*end > *begin) {
      ranges.emplace_back(*begin, *end);
      range_names.push_back(&it->first);
    }
  }

  // The format forbids overlapping tensors; overlap means a corrupt or hand-crafted header.
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (ranges[order[i]].first < ranges[order[i - 1]].second) {
      return bad(absl::StrCat("tensors '", *range_names[order[i - 1]], "' and '",
                              *range_names[order[i]], "' overlap"));
    }
  }

  mappings_.push_back(std::move(mapping));
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsArchive>> SafetensorsArchive::OpenFile(
    const std::filesystem::path& file) {
  auto archive = std::unique_ptr<SafetensorsArchive>(new SafetensorsArchive());
  archive->source_ = file.string();
  CLAA_ASSIGN_OR_RETURN(archive->tensors_, archive->MapFile(file));
  return archive;
}

absl::StatusOr<std::unique_ptr<SafetensorsArchive>> SafetensorsArchive::OpenDir(
    const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model directory ", model_dir.string(), " does not exist"));
  }
  const std::filesystem::path index_path = model_dir / "model.safetensors.index.json";
  if (!std::filesystem::exists(index_path, ec)) {
    const std::filesystem::path single = model_dir / "model.safetensors";
    if (!std::filesystem::exists(single, ec)) {
      return absl::NotFoundError(absl::StrCat("no model.safetensors or model.safetensors.index.json in ",
                                              model_dir.string()));
    }
    return OpenFile(single);
  }

  const std::string index = index_path.string();
  CLAA_ASSIGN_OR_RETURN(std::string text, ReadTextFile(index_path));
  json root = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index, ": not a JSON object"));
  }
  auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object() || map_it->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index, ": 'weight_map' must be a non-empty object"));
  }
  // Group tensor names by shard so that each shard is mapped once.
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index, ": weight_map['", name, "'] must be a file name"));
    }
    std::string shard_name = shard.get<std::string>();
    // Shards live next to the index; refuse paths that would escape the model directory.
    std::filesystem::path rel(shard_name);
    if (shard_name.empty() || rel.is_absolute() ||
        std::find(rel.begin(), rel.end(), std::filesystem::path("..")) != rel.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index, ": weight_map['", name, "'] names bad shard '", shard_name, "'"));
    }
    by_shard[shard_name].push_back(name);
  }

  auto archive = std::unique_ptr<SafetensorsArchive>(new SafetensorsArchive());
  archive->source_ = model_dir.string();
  for (const auto& [shard_name, names] : by_shard) {
    const std::filesystem::path shard_path = model_dir / shard_name;
    if (!std::filesystem::exists(shard_path, ec)) {
      return absl::NotFoundError(absl::StrCat(index, ": shard '", shard_name, "' (holding '",
                                              names.front(), "') does not exist"));
    }
    CLAA_ASSIGN_OR_RETURN(TensorMap shard_tensors, archive->MapFile(shard_path));
    for (const std::string& name : names) {
      auto it = shard_tensors.find(name);
      if (it == shard_tensors.end()) {
        return absl::NotFoundError(absl::StrCat(index, ": tensor '", name, "' is mapped to shard '",
                                                shard_name, "', which does not contain it"));
      }
      archive->tensors_.emplace(name, std::move(it->second));
    }
  }
  return archive;
}

const TensorInfo* SafetensorsArchive::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsArchive::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<const TensorInfo*> SafetensorsArchive::Lookup(
    std::string_view name, absl::Span<const int64_t> expected_shape) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat("tensor '", Av(name), "' not found in ", source_));
  }
  if (absl::Span<const int64_t>(t->shape) != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", Av(name), "' in ", t->file, ": expected shape ", ShapeString(expected_shape),
        ", got ", ShapeString(t->shape)));
  }
  return t;
}

absl::Status SafetensorsArchive::ReadF32(std::string_view name,
                                         absl::Span<const int64_t> expected_shape,
                                         std::vector<float>* out) const {
  CLAA_ASSIGN_OR_RETURN(const TensorInfo* t, Lookup(name, expected_shape));
  const size_t count = t->nbytes / DTypeSize(t->dtype);
  out->resize(count);
  Convert(t->dtype, t->data, count, out->data());
  return absl::OkStatus();
}

absl::Status SafetensorsArchive::ReadF32Rows(std::string_view name,
                                             absl::Span<const int64_t> expected_shape,
                                             int64_t row_begin, int64_t row_end,
                                             std::vector<float>* out) const {
  CLAA_ASSIGN_OR_RETURN(const TensorInfo* t, Lookup(name, expected_shape));
  if (t->shape.size() != 1 && t->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", Av(name), "': row slices need a 1-D or 2-D tensor, got shape ",
                     ShapeString(t->shape)));
  }
  if (row_begin < 0 || row_end < row_begin || row_end > t->shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", Av(name), "': rows [", row_begin, ", ",
                                                   row_end, ") out of range for shape ",
                                                   ShapeString(t->shape)));
  }
  const size_t row_elems = t->shape.size() == 2 ? static_cast<size_t>(t->shape[1]) : 1;
  const size_t esize = DTypeSize(t->dtype);
  const size_t count = static_cast<size_t>(row_end - row_begin) * row_elems;
  out->resize(count);
  Convert(t->dtype, t->data + static_cast<size_t>(row_begin) * row_elems * esize, count,
          out->data());
  return absl::OkStatus();
}

absl::Status SafetensorsArchive::ReadF32Cols(std::string_view name,
                                             absl::Span<const int64_t> expected_shape,
                                             int64_t col_begin, int64_t col_end,
                                             std::vector<float>* out) const {
  CLAA_ASSIGN_OR_RETURN(const TensorInfo* t, Lookup(name, expected_shape));
  if (t->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", Av(name), "': column slices need a 2-D tensor, got shape ",
                     ShapeString(t->shape)));
  }
  if (col_begin < 0 || col_end < col_begin || col_end > t->shape[1]) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", Av(name), "': columns [", col_begin,
                                                   ", ", col_end, ") out of range for shape ",
                                                   ShapeString(t->shape)));
  }
  const size_t rows = static_cast<size_t>(t->shape[0]);
  const size_t cols = static_cast<size_t>(t->shape[1]);
  const size_t width = static_cast<size_t>(col_end - col_begin);
  const size_t esize = DTypeSize(t->dtype);
  out->resize(rows * width);
  // Nothing to copy; and a [2^62, 0] tensor (legal, zero bytes) must not loop over its rows.
  if (width == 0) return absl::OkStatus();
  for (size_t r = 0; r < rows; ++r) {
    Convert(t->dtype, t->data + (r * cols + static_cast<size_t>(col_begin)) * esize, width,
            out->data() + r * width);
  }
  return absl::OkStatus();
}

}  // namespace claa
