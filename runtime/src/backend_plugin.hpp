// The boundary between libfkb and a backend plugin (DESIGN.md "Backends as plugins"). The CUDA backend is
// built as its own shared library, libfkb_cuda.so (kernels/), which links libfkb and the CUDA libraries;
// libfkb links no CUDA library and dlopen()s the plugin the first time a CUDA device is asked for
// (plugin_loader.cpp). The plugin exports one C symbol, fkb_cuda_plugin_v1, returning this table.
//
// Both sides are built from the same source tree with the same compiler, so the table carries C++ types;
// `abi`, `size` and `fkb_version` let libfkb refuse a plugin from another build instead of crashing in it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "ensemble_engine.hpp"
#include "fkb/backend.hpp"
#include "fkb/model.hpp"

namespace fkb {

/// Bump when the table below changes in any way (and rename the entry symbol with it).
constexpr int kCudaPluginAbi = 1;

struct CudaPluginV1 {
  int abi;                  ///< kCudaPluginAbi of the plugin's build
  std::size_t size;         ///< sizeof(CudaPluginV1) of the plugin's build
  const char* fkb_version;  ///< FKB_VERSION of the plugin's build; must equal libfkb's
  /// Usable CUDA devices (0 without a device or a driver); never throws.
  int (*device_count)() noexcept;
  std::unique_ptr<Backend> (*create_backend)();
  /// kernels/ensemble_plan.cu (see ensemble_engine.hpp, namespace cuda).
  std::unique_ptr<EnsembleEngine> (*create_batched_ensemble)(const std::vector<const Model*>& members,
                                                             const CompileOptions& options, std::string* why);
  std::unique_ptr<EnsembleEngine> (*create_per_member_ensemble)(const std::vector<const Model*>& members,
                                                                const CompileOptions& options);
  /// Device memory helpers for the GPU tests (libfkb's fkb_cuda_test_* forward to these); 0 on success.
  int (*test_malloc)(void** p, std::size_t bytes);
  int (*test_malloc_managed)(void** p, std::size_t bytes);
  int (*test_host_alloc)(void** p, std::size_t bytes);
  int (*test_free)(void* p);
  int (*test_free_host)(void* p);
  int (*test_memcpy)(void* dst, const void* src, std::size_t bytes);
};

/// File name of the CUDA plugin, looked up in FKB_BACKEND_PATH, then next to libfkb.
constexpr const char* kCudaPluginFile = "libfkb_cuda.so";
/// The one symbol the plugin exports for libfkb.
constexpr const char* kCudaPluginEntry = "fkb_cuda_plugin_v1";

}  // namespace fkb

extern "C" {
/// Defined by the plugin (kernels/plugin_entry.cpp); never by libfkb.
const fkb::CudaPluginV1* fkb_cuda_plugin_v1();
}
