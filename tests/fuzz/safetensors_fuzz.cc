// Fuzzes the safetensors parser: header length, JSON header, dtypes, shapes, offsets, overlaps,
// then every read path the weights loader uses on whatever the parser accepted.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/safetensors.h"
#include "tests/fuzz/fuzz_targets.h"

namespace claa::fuzz {
namespace {

// An in-memory file with a path: SafetensorsArchive only opens paths (it mmaps them), and a
// memfd reached through /proc/self/fd keeps a million inputs off the disk.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("claa_fuzz_safetensors", MFD_CLOEXEC);
    if (fd_ < 0) return;
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

bool SameBits(const std::vector<float>& a, const float* b, size_t n) {
  return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * sizeof(float)) == 0);
}

}  // namespace

int FuzzSafetensors(const uint8_t* data, size_t size) {
  MemFile file(data, size);
  if (!file.ok()) return 0;  // out of memfds: nothing to learn from this input
  auto archive = SafetensorsArchive::OpenFile(file.path());
  if (!archive.ok()) {
    // Malformed input is the caller's data problem, never an internal error.
    CLAA_FUZZ_CHECK(archive.status().code() == absl::StatusCode::kInvalidArgument,
                    archive.status().ToString());
    return 0;
  }
  const std::vector<std::string> names = (*archive)->Names();
  for (const std::string& name : names) {
    const TensorInfo* t = (*archive)->Find(name);
    CLAA_FUZZ_CHECK(t != nullptr, name);
    uint64_t numel = 1;
    for (int64_t d : t->shape) {
      CLAA_FUZZ_CHECK(d >= 0, name);
      numel *= static_cast<uint64_t>(d);  // cannot overflow: the parser refused that
    }
    CLAA_FUZZ_CHECK(numel * DTypeSize(t->dtype) == t->nbytes, name, ": ", numel, " elements in ",
                    t->nbytes, " bytes");
    CLAA_FUZZ_CHECK(t->nbytes <= size, name, ": ", t->nbytes, " bytes in a ", size, "-byte file");

    std::vector<float> whole;
    absl::Status s = (*archive)->ReadF32(name, t->shape, &whole);
    CLAA_FUZZ_CHECK(s.ok(), s.ToString());
    CLAA_FUZZ_CHECK(whole.size() == numel, name);

    // A wrong expected shape is refused, never read.
    std::vector<int64_t> wrong = t->shape;
    wrong.push_back(1);
    std::vector<float> unused;
    CLAA_FUZZ_CHECK(!(*archive)->ReadF32(name, wrong, &unused).ok(), name);

    if (t->shape.size() == 1 || t->shape.size() == 2) {
      const int64_t rows = t->shape[0];
      const size_t row_elems = t->shape.size() == 2 ? static_cast<size_t>(t->shape[1]) : 1;
      std::vector<float> part;
      s = (*archive)->ReadF32Rows(name, t->shape, 0, rows, &part);
      CLAA_FUZZ_CHECK(s.ok(), s.ToString());
      CLAA_FUZZ_CHECK(SameBits(part, whole.data(), whole.size()), name, ": all rows != whole");
      if (rows >= 2) {
        // The second half of the rows, as a tensor-parallel rank would read them.
        const int64_t begin = rows / 2;
        s = (*archive)->ReadF32Rows(name, t->shape, begin, rows, &part);
        CLAA_FUZZ_CHECK(s.ok(), s.ToString());
        CLAA_FUZZ_CHECK(SameBits(part, whole.data() + static_cast<size_t>(begin) * row_elems,
                                 static_cast<size_t>(rows - begin) * row_elems),
                        name, ": row slice != whole");
      }
      if (rows < std::numeric_limits<int64_t>::max()) {
        CLAA_FUZZ_CHECK(!(*archive)->ReadF32Rows(name, t->shape, 0, rows + 1, &part).ok(), name);
      }
      CLAA_FUZZ_CHECK(!(*archive)->ReadF32Rows(name, t->shape, -1, rows, &part).ok(), name);
    }
    if (t->shape.size() == 2) {
      const int64_t rows = t->shape[0];
      const int64_t cols = t->shape[1];
      std::vector<float> part;
      s = (*archive)->ReadF32Cols(name, t->shape, 0, cols, &part);
      CLAA_FUZZ_CHECK(s.ok(), s.ToString());
      CLAA_FUZZ_CHECK(SameBits(part, whole.data(), whole.size()), name, ": all cols != whole");
      if (cols >= 2) {
        const int64_t begin = cols / 2;
        s = (*archive)->ReadF32Cols(name, t->shape, begin, cols, &part);
        CLAA_FUZZ_CHECK(s.ok(), s.ToString());
        const size_t width = static_cast<size_t>(cols - begin);
        CLAA_FUZZ_CHECK(part.size() == static_cast<size_t>(rows) * width, name);
        for (int64_t r = 0; r < rows; ++r) {
          CLAA_FUZZ_CHECK(std::memcmp(part.data() + static_cast<size_t>(r) * width,
                                      whole.data() + static_cast<size_t>(r * cols + begin),
                                      width * sizeof(float)) == 0,
                          name, ": column slice != whole at row ", r);
        }
      }
      if (cols < std::numeric_limits<int64_t>::max()) {
        CLAA_FUZZ_CHECK(!(*archive)->ReadF32Cols(name, t->shape, 0, cols + 1, &part).ok(), name);
      }
    }
  }
  return 0;
}

}  // namespace claa::fuzz
