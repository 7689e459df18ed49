// Finding and loading the CUDA backend plugin (libfkb_cuda.so) at run time, so that one CUDA-enabled build
// runs on GPU and CPU-only partitions alike: libfkb links no CUDA library, and a machine without the CUDA
// libraries (or without the plugin) only loses the CUDA device. Looked for in each directory (or file) of
// FKB_BACKEND_PATH, then in the directory libfkb itself was loaded from (build/lib in the build tree,
// <prefix>/lib after `cmake --install`). Loaded once per process and never unloaded.
#include "plugin_loader.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "fkb/error.hpp"

namespace fkb::plugin {

namespace {

struct State {
  const CudaPluginV1* api = nullptr;
  std::string path;   // the file loaded
  std::string error;  // why api is null
};

[[maybe_unused]] bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

[[maybe_unused]] bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// dlerror() and exception texts on one line (the auto notice is one line).
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// The directory of the shared object this function is in: libfkb (or the executable, when the runtime's
// objects are linked statically, as in the fuzz regression driver).
[[maybe_unused]] std::string own_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || !info.dli_fname) return {};
  std::string p = info.dli_fname;
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  p = slash == 0 ? "/" : p.substr(0, slash);
  // The loader's spelling may be ".../bin/../lib" (a program's $ORIGIN/../lib RUNPATH): name it plainly.
  if (char* real = ::realpath(p.c_str(), nullptr)) {
    p = real;
    std::free(real);
  }
  return p;
}

[[maybe_unused]] std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

#ifdef FKB_WITH_CUDA
// Tries one file; returns the table or appends to `errors`.
const CudaPluginV1* try_load(const std::string& file, std::vector<std::string>& errors) {
  dlerror();
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    const std::string why = one_line(e ? e : "dlopen failed");
    errors.push_back(why.find(file) == std::string::npos ? file + ": " + why : why);  // dlerror may name it

    return nullptr;
  }
  using Entry = const CudaPluginV1* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(h, kCudaPluginEntry));
  if (!entry) {
    errors.push_back(file + ": not an FKB CUDA plugin (no symbol " + kCudaPluginEntry + ")");
    dlclose(h);
    return nullptr;
  }
  const CudaPluginV1* t = entry();
  if (!t || t->abi != kCudaPluginAbi || t->size != sizeof(CudaPluginV1) || !t->fkb_version ||
      std::strcmp(t->fkb_version, FKB_VERSION) != 0) {
    errors.push_back(file + ": built for another FKB (plugin " + (t && t->fkb_version ? t->fkb_version : "?") +
                     ", ABI " + std::to_string(t ? t->abi : 0) + "; this libfkb " + FKB_VERSION + ", ABI " +
                     std::to_string(kCudaPluginAbi) + ")");
    return nullptr;  // keep it mapped: its code may have registered atexit handlers
  }
  return t;  // the handle stays open for the life of the process
}
#endif

State load() {
  State s;
#ifndef FKB_WITH_CUDA
  s.error = "FKB was built without CUDA";
#else
  std::vector<std::string> looked;  // directories/files searched, in order
  std::vector<std::string> errors;  // candidates found but not loadable
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("FKB_BACKEND_PATH")) {
    std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t colon = list.find(':', start);
      const std::string entry = list.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!entry.empty()) {
        looked.push_back(entry + " (FKB_BACKEND_PATH)");
        candidates.push_back(is_dir(entry) || !is_file(entry) ? entry + "/" + kCudaPluginFile : entry);
      }
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  const std::string own = own_directory();
  if (!own.empty()) {
    looked.push_back(own + " (libfkb's directory)");
    candidates.push_back(own + "/" + kCudaPluginFile);
  }
  for (const auto& file : candidates) {
    if (!is_file(file)) continue;
    if (const CudaPluginV1* t = try_load(file, errors)) {
      s.api = t;
      s.path = file;
      return s;
    }
  }
  if (errors.empty())
    s.error = std::string(kCudaPluginFile) + " not found (looked in " + join(looked, ", ") + ")";
  else
    s.error = join(errors, "; ");
#endif
  return s;
}

const State& state() {
  static std::once_flag once;
  static State s;
  std::call_once(once, [] { s = load(); });
  return s;
}

}  // namespace

const CudaPluginV1* cuda_plugin() noexcept {
  try {
    return state().api;
  } catch (...) {  // std::bad_alloc while building the messages
    return nullptr;
  }
}

const std::string& cuda_plugin_error() noexcept {
  static const std::string none = "the CUDA plugin could not be looked up";
  try {
    return state().error;
  } catch (...) {
    return none;
  }
}

const CudaPluginV1& require_cuda_plugin() {
#ifndef FKB_WITH_CUDA
  throw_error(Status::CudaError, "FKB was built without CUDA (configure with FKB_ENABLE_CUDA=ON and a CUDA toolkit); "
                                 "use device 'cpu' or 'auto'");
#else
  if (const CudaPluginV1* t = cuda_plugin()) return *t;
  throw_error(Status::CudaError,
              "the CUDA backend could not be loaded: " + cuda_plugin_error() + ". Device 'cuda' needs " +
                  kCudaPluginFile + " (next to libfkb, or in a directory named by FKB_BACKEND_PATH), the CUDA " +
                  "libraries it links (libcudart, libcublas, libcublasLt) and an NVIDIA driver; on a machine " +
                  "without them use device 'cpu' or 'auto' (which falls back to the CPU)");
#endif
}

std::string cuda_unavailable_reason() {
#ifndef FKB_WITH_CUDA
  return {};
#else
  const CudaPluginV1* t = cuda_plugin();
  if (!t) return "CUDA backend not loaded: " + cuda_plugin_error();
  if (t->device_count() <= 0) return "no CUDA device found";
  return {};
#endif
}

}  // namespace fkb::plugin

#ifdef FKB_WITH_CUDA
// Device memory helpers of the GPU tests (tests/backend, tests/unit), which link libfkb only and find these
// through weak references (null in a build without CUDA). They forward to the plugin; 1 when it is absent.
extern "C" {
int fkb_cuda_test_malloc(void** p, size_t bytes) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_malloc(p, bytes) : 1;
}
int fkb_cuda_test_malloc_managed(void** p, size_t bytes) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_malloc_managed(p, bytes) : 1;
}
int fkb_cuda_test_host_alloc(void** p, size_t bytes) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_host_alloc(p, bytes) : 1;
}
int fkb_cuda_test_free(void* p) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_free(p) : 1;
}
int fkb_cuda_test_free_host(void* p) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_free_host(p) : 1;
}
int fkb_cuda_test_memcpy(void* dst, const void* src, size_t bytes) {
  const auto* t = fkb::plugin::cuda_plugin();
  return t ? t->test_memcpy(dst, src, bytes) : 1;
}
}
#endif
