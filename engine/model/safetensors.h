#ifndef CLAA_ENGINE_MODEL_SAFETENSORS_H_
#define CLAA_ENGINE_MODEL_SAFETENSORS_H_

// Read-only access to Hugging Face safetensors files (single file or sharded directory).
// Files are mmap'ed; tensors are converted to fp32 on read. Every structural problem (truncation,
// bad offsets, unknown dtypes, missing shards) is reported at open time so that a model either
// opens cleanly or not at all.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace claa {

enum class DType { kF32, kF16, kBF16 };

// "F32", "F16", "BF16".
std::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;  // Inside the archive's mapping; not necessarily aligned.
  size_t nbytes;
  std::string file;  // Path of the file holding the tensor, for error messages.
};

class SafetensorsArchive {
 public:
  // <dir>/model.safetensors.index.json (sharded: "weight_map" name -> file) if present, else
  // <dir>/model.safetensors. NotFound when the directory or both files are missing.
  static absl::StatusOr<std::unique_ptr<SafetensorsArchive>> OpenDir(
      const std::filesystem::path& model_dir);
  static absl::StatusOr<std::unique_ptr<SafetensorsArchive>> OpenFile(
      const std::filesystem::path& file);

  ~SafetensorsArchive();
  SafetensorsArchive(const SafetensorsArchive&) = delete;
  SafetensorsArchive& operator=(const SafetensorsArchive&) = delete;

  const TensorInfo* Find(std::string_view name) const;  // nullptr if absent
  std::vector<std::string> Names() const;                // sorted

  // Converts the whole tensor to fp32 after checking the shape equals expected_shape.
  absl::Status ReadF32(std::string_view name, absl::Span<const int64_t> expected_shape,
                       std::vector<float>* out) const;
  // Rows [row_begin, row_end) of a 2-D tensor, or (for 1-D) elements; for tensor-parallel slices.
  absl::Status ReadF32Rows(std::string_view name, absl::Span<const int64_t> expected_shape,
                           int64_t row_begin, int64_t row_end, std::vector<float>* out) const;
  // Columns [col_begin, col_end) of a 2-D tensor, row-major [rows, col_end - col_begin].
  absl::Status ReadF32Cols(std::string_view name, absl::Span<const int64_t> expected_shape,
                           int64_t col_begin, int64_t col_end, std::vector<float>* out) const;

 private:
  class Mapping;
  using TensorMap = std::map<std::string, TensorInfo, std::less<>>;

  SafetensorsArchive();
  // Maps `file` (kept alive in mappings_) and returns every tensor it holds, validated.
  absl::StatusOr<TensorMap> MapFile(const std::filesystem::path& file);
  absl::StatusOr<const TensorInfo*> Lookup(std::string_view name,
                                           absl::Span<const int64_t> expected_shape) const;

  std::string source_;  // File or directory opened, for error messages.
  std::vector<std::unique_ptr<Mapping>> mappings_;
  TensorMap tensors_;
};

// IEEE 754 binary16 (all cases: normal, subnormal, zero, inf, nan) and bfloat16 to fp32.
float HalfToFloat(uint16_t h);
float BFloat16ToFloat(uint16_t b);

}  // namespace claa

#endif  // CLAA_ENGINE_MODEL_SAFETENSORS_H_
