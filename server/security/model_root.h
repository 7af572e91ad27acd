#ifndef CLAA_SERVER_SECURITY_MODEL_ROOT_H_
#define CLAA_SERVER_SECURITY_MODEL_ROOT_H_

// --model_root: every path the server opens from a flag naming model data (--model,
// --attn_cache_dir, --attn_cache_projector) must lie inside one directory tree, so that a
// mistaken or injected flag cannot make the server read (or, for the cache, write) files
// elsewhere. Paths are resolved first (std::filesystem::weakly_canonical: symlinks and ".."
// followed as far as the path exists), and containment is decided on whole path components, so
// /models2 is not inside /models.
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace claa::security {

// Whether `path` equals `root` or lies below it. Both must already be resolved (absolute,
// normalized); a trailing separator on either is ignored.
bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& root);

// The resolved `path`, when it is inside `root` (which must be an existing directory).
// InvalidArgument naming `flag`, the path, what it resolves to and the root otherwise.
absl::StatusOr<std::filesystem::path> ConfineToRoot(const std::string& path,
                                                    const std::string& root,
                                                    absl::string_view flag);

// ConfineToRoot for a model directory, plus each entry directly inside it (the loader reads
// config.json, tokenizer.json and the *.safetensors files from there): a symlinked file that
// points out of the root is refused too.
absl::StatusOr<std::filesystem::path> ConfineModelDir(const std::string& dir,
                                                      const std::string& root,
                                                      absl::string_view flag);

// The paths claa-server opens from flags that name model data.
struct ModelPaths {
  std::string model_dir{};             // --model (empty: the built-in model)
  std::string attn_cache_dir{};        // --attn_cache_dir
  std::string attn_cache_projector{};  // --attn_cache_projector
};

// Replaces each non-empty path with its resolved form (the one then opened, so a symlink in
// the path swapped after the check is not followed), or fails on the first outside `root`.
absl::Status ConfineModelPaths(const std::string& root, ModelPaths& paths);

}  // namespace claa::security

#endif  // CLAA_SERVER_SECURITY_MODEL_ROOT_H_
