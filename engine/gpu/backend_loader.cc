#include "engine/gpu/backend_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace claa::gpu {
namespace {

// Where to look, in order, when the caller names no path.
std::vector<std::string> Candidates(const std::string& path) {
  if (!path.empty()) return {path};
  if (const char* env = std::getenv("CLAA_CUDA_BACKEND"); env != nullptr && *env != '\0') {
    return {env};
  }
  std::vector<std::string> out;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = exe.parent_path() / kCudaBackendLibraryName;
    if (std::filesystem::exists(beside, ec)) out.push_back(beside.string());
  }
  out.push_back(kCudaBackendLibraryName);  // LD_LIBRARY_PATH, RUNPATH, ld.so.cache
  return out;
}

}  // namespace

GpuBackendLibrary::~GpuBackendLibrary() = default;

absl::StatusOr<std::unique_ptr<GpuBackendLibrary>> GpuBackendLibrary::Load(
    const std::string& path, bool require_device) {
  void* handle = nullptr;
  std::string opened;
  std::vector<std::string> errors;
  for (const std::string& candidate : Candidates(path)) {
    // RTLD_LOCAL: the backend's own copies of engine code (linked in, hidden) never interpose
    // on the server's.
    handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      opened = candidate;
      break;
    }
    const char* err = dlerror();
    errors.push_back(err != nullptr ? err : candidate + ": unknown dlopen error");
  }
  if (handle == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot load the CUDA backend (", absl::StrJoin(errors, "; "),
        "). It is built only when nvcc is found (CLAA_HAVE_CUDA); put ", kCudaBackendLibraryName,
        " next to the binary or name it in CLAA_CUDA_BACKEND"));
  }
  dlerror();
  auto factory = reinterpret_cast<GpuBackendFactory>(dlsym(handle, kGpuBackendFactorySymbol));
  if (factory == nullptr) {
    const char* err = dlerror();
    return absl::FailedPreconditionError(absl::StrCat(
        opened, " has no entry point ", kGpuBackendFactorySymbol, ": ",
        err != nullptr ? err : "symbol is null", " (not a CLAA CUDA backend?)"));
  }
  const GpuBackendAbi abi;
  std::unique_ptr<GpuBackend> backend(factory(&abi));
  if (backend == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        opened, " was built from a different version of the engine (type layouts differ); "
                "rebuild it with the server"));
  }
  if (require_device && backend->DeviceCount() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the CUDA backend ", opened, " loaded, but no CUDA device is visible (",
        backend->DeviceDescription(0), ")"));
  }
  return std::unique_ptr<GpuBackendLibrary>(
      new GpuBackendLibrary(std::move(opened), std::move(backend)));
}

}  // namespace claa::gpu
