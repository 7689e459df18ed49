// Loading the CUDA backend plugin (backend_plugin.hpp) on first use. Internal to libfkb.
#pragma once

#include <string>

#include "backend_plugin.hpp"

namespace fkb::plugin {

/// The CUDA plugin's table, loaded once per process (thread-safe); null when FKB was built without CUDA or
/// the plugin cannot be loaded (cuda_plugin_error() says why). Never throws.
const CudaPluginV1* cuda_plugin() noexcept;
/// Why cuda_plugin() is null: one line naming what is missing and where it was looked for; empty when loaded.
const std::string& cuda_plugin_error() noexcept;
/// The table, or a CudaError naming what is missing, where it looked, and what would work.
const CudaPluginV1& require_cuda_plugin();
/// Why device 'auto' cannot use CUDA here ("CUDA backend not loaded: ...", "no CUDA device found"); empty
/// when a CUDA device is usable or FKB was built without CUDA (the CPU is then the only device, silently).
std::string cuda_unavailable_reason();

}  // namespace fkb::plugin
