#include "server/security/model_root.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace claa::security {
namespace fs = std::filesystem;
namespace {

// Drops the empty last component a trailing separator leaves ("/models/" -> "/models").
fs::path WithoutTrailingSeparator(fs::path p) {
  if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

absl::StatusOr<fs::path> Resolve(const std::string& path, absl::string_view flag) {
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot resolve the path: ", ec.message()));
  }
  return WithoutTrailingSeparator(resolved.lexically_normal());
}

}  // namespace

bool IsWithin(const fs::path& path, const fs::path& root) {
  const fs::path p = WithoutTrailingSeparator(path);
  const fs::path r = WithoutTrailingSeparator(root);
  // Component-wise prefix: "/models2" has the component "models2", never "models".
  auto [r_end, p_end] = std::mismatch(r.begin(), r.end(), p.begin(), p.end());
  return r_end == r.end();
}

absl::StatusOr<fs::path> ConfineToRoot(const std::string& path, const std::string& root,
                                       absl::string_view flag) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--model_root ", root, ": not a directory"));
  }
  absl::StatusOr<fs::path> resolved_root = Resolve(root, "--model_root");
  if (!resolved_root.ok()) return resolved_root.status();
  absl::StatusOr<fs::path> resolved = Resolve(path, flag);
  if (!resolved.ok()) return resolved.status();
  if (!IsWithin(*resolved, *resolved_root)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, " (resolves to ", resolved->string(), ") is outside --model_root ",
        resolved_root->string()));
  }
  return *resolved;
}

absl::StatusOr<fs::path> ConfineModelDir(const std::string& dir, const std::string& root,
                                         absl::string_view flag) {
  absl::StatusOr<fs::path> resolved = ConfineToRoot(dir, root, flag);
  if (!resolved.ok()) return resolved.status();
  std::error_code ec;
  if (!fs::is_directory(*resolved, ec)) return resolved;  // the loader reports what is missing
  for (fs::directory_iterator it(*resolved, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().string();
    absl::StatusOr<fs::path> inside =
        ConfineToRoot(entry, root, absl::StrCat(flag, " entry"));
    if (!inside.ok()) return inside.status();
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", dir, ": cannot list the directory: ", ec.message()));
  }
  return resolved;
}

absl::Status ConfineModelPaths(const std::string& root, ModelPaths& paths) {
  struct Entry {
    std::string* path;
    absl::string_view flag;
    bool model_dir;
  };
  for (const Entry& e : {Entry{&paths.model_dir, "--model", true},
                         Entry{&paths.attn_cache_dir, "--attn_cache_dir", false},
                         Entry{&paths.attn_cache_projector, "--attn_cache_projector", false}}) {
    if (e.path->empty()) continue;
    absl::StatusOr<fs::path> inside = e.model_dir ? ConfineModelDir(*e.path, root, e.flag)
                                                  : ConfineToRoot(*e.path, root, e.flag);
    if (!inside.ok()) return inside.status();
    *e.path = inside->string();
  }
  return absl::OkStatus();
}

}  // namespace claa::security
