// Backend factories. The CUDA backend is a plugin (libfkb_cuda.so, kernels/) loaded on first use
// (plugin_loader.cpp); without it — FKB built without CUDA, or the plugin or its CUDA libraries missing on
// this machine — the API is the same and asking for CUDA gives a clear error.
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "plugin_loader.hpp"

namespace fkb {

bool built_with_cuda() noexcept {
#ifdef FKB_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() noexcept {
  const CudaPluginV1* t = plugin::cuda_plugin();
  return t ? t->device_count() : 0;
}

std::unique_ptr<Backend> make_cuda_backend() { return plugin::require_cuda_plugin().create_backend(); }

}  // namespace fkb
